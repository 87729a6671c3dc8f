package problem_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/tokens"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

func TestFrom(t *testing.T) {
	cases := []struct {
		err        error
		status     int
		code       string
		retryAfter time.Duration
	}{
		{problem.Invalid("bad", problem.Field("limit", "too big")), 400, problem.CodeInvalidRequest, 0},
		{fmt.Errorf("wrapped: %w", problem.New(404, problem.CodeJobNotFound, "no job")), 404, problem.CodeJobNotFound, 0},
		{&http.MaxBytesError{Limit: 10}, 413, problem.CodePayloadTooLarge, 0},
		{fmt.Errorf("x: %w", upstream.ErrAuthFailed), 502, problem.CodeUpstreamAuthFailed, 0},
		{upstream.ErrUnauthorized, 502, problem.CodeUpstreamAuthFailed, 0},
		{&upstream.RateLimitError{RetryAfter: 7 * time.Second, Source: "upstream"}, 429, problem.CodeRateLimited, 7 * time.Second},
		{upstream.ErrRateLimited, 429, problem.CodeRateLimited, time.Second},
		{upstream.ErrSessionNotFound, 404, problem.CodeSessionNotFound, 0},
		{upstream.ErrSessionNotConnected, 409, problem.CodeSessionNotConnected, 0},
		{upstream.ErrNotFound, 404, problem.CodeNotFound, 0},
		{upstream.ErrConflict, 409, problem.CodeConflict, 0},
		{upstream.ErrUnavailable, 503, problem.CodeUpstreamUnavailable, 5 * time.Second},
		{upstream.ErrTimeout, 504, problem.CodeUpstreamTimeout, 0},
		{context.DeadlineExceeded, 504, problem.CodeUpstreamTimeout, 0},
		{&upstream.Error{Status: 422, Code: "VALIDATION_ERROR"}, 502, problem.CodeUpstreamError, 0},
		{&upstream.Error{Status: 503, RetryAfter: 9 * time.Second}, 503, problem.CodeUpstreamUnavailable, 9 * time.Second},
		{fmt.Errorf("decode: %w", upstream.ErrBadResponse), 502, problem.CodeUpstreamError, 0},
		{fmt.Errorf("x: %w", tokens.ErrStoreUnavailable), 503, problem.CodeUpstreamUnavailable, 5 * time.Second},
		{tokens.ErrWaitTimeout, 504, problem.CodeUpstreamTimeout, 0},
		{errors.New("something internal"), 500, problem.CodeInternal, 0},
	}
	for _, tc := range cases {
		p := problem.From(tc.err)
		if p.Status != tc.status || p.Code != tc.code || p.RetryAfter != tc.retryAfter {
			t.Errorf("problem.From(%v) = %d %s %v, want %d %s %v", tc.err, p.Status, p.Code, p.RetryAfter, tc.status, tc.code, tc.retryAfter)
		}
		if p.Body("").Title == http.StatusText(http.StatusInternalServerError) {
			t.Errorf("code %s has no title", p.Code)
		}
	}
	if d := problem.From(upstream.ErrSessionNotConnected).Body("r1"); d.Detail != problem.SessionNotConnectedDetail {
		t.Errorf("SESSION_NOT_CONNECTED detail does not say how to reconnect: %q", d.Detail)
	}
	if d := problem.From(errors.New("secret internals")).Body("r1"); d.Detail == "" || d.Type != "urn:inboxhub-gateway:problem:internal" {
		t.Errorf("500 body = %+v", d)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, 1500 * time.Millisecond: 2, 30 * time.Second: 30} {
		if got := problem.RetryAfterSeconds(d); got != want {
			t.Errorf("problem.RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}
