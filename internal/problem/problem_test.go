package problem

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

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
		{Invalid("bad", Field("limit", "too big")), 400, CodeInvalidRequest, 0},
		{fmt.Errorf("wrapped: %w", New(404, CodeJobNotFound, "no job")), 404, CodeJobNotFound, 0},
		{&http.MaxBytesError{Limit: 10}, 413, CodePayloadTooLarge, 0},
		{fmt.Errorf("x: %w", upstream.ErrAuthFailed), 502, CodeUpstreamAuthFailed, 0},
		{upstream.ErrUnauthorized, 502, CodeUpstreamAuthFailed, 0},
		{&upstream.RateLimitError{RetryAfter: 7 * time.Second, Source: "upstream"}, 429, CodeRateLimited, 7 * time.Second},
		{upstream.ErrRateLimited, 429, CodeRateLimited, time.Second},
		{upstream.ErrSessionNotFound, 404, CodeSessionNotFound, 0},
		{upstream.ErrSessionNotConnected, 409, CodeSessionNotConnected, 0},
		{upstream.ErrNotFound, 404, CodeNotFound, 0},
		{upstream.ErrConflict, 409, CodeConflict, 0},
		{upstream.ErrUnavailable, 503, CodeUpstreamUnavailable, 5 * time.Second},
		{upstream.ErrTimeout, 504, CodeUpstreamTimeout, 0},
		{context.DeadlineExceeded, 504, CodeUpstreamTimeout, 0},
		{&upstream.Error{Status: 422, Code: "VALIDATION_ERROR"}, 502, CodeUpstreamError, 0},
		{&upstream.Error{Status: 503, RetryAfter: 9 * time.Second}, 503, CodeUpstreamUnavailable, 9 * time.Second},
		{fmt.Errorf("decode: %w", upstream.ErrBadResponse), 502, CodeUpstreamError, 0},
		{fmt.Errorf("x: %w", tokens.ErrStoreUnavailable), 503, CodeUpstreamUnavailable, 5 * time.Second},
		{tokens.ErrWaitTimeout, 504, CodeUpstreamTimeout, 0},
		{errors.New("something internal"), 500, CodeInternal, 0},
	}
	for _, tc := range cases {
		p := From(tc.err)
		if p.Status != tc.status || p.Code != tc.code || p.RetryAfter != tc.retryAfter {
			t.Errorf("From(%v) = %d %s %v, want %d %s %v", tc.err, p.Status, p.Code, p.RetryAfter, tc.status, tc.code, tc.retryAfter)
		}
		if titles[p.Code] == "" {
			t.Errorf("code %s has no title", p.Code)
		}
	}
	if d := From(upstream.ErrSessionNotConnected).Body("r1"); d.Detail != SessionNotConnectedDetail {
		t.Errorf("SESSION_NOT_CONNECTED detail does not say how to reconnect: %q", d.Detail)
	}
	if d := From(errors.New("secret internals")).Body("r1"); d.Detail == "" || d.Type != "urn:inboxhub-gateway:problem:internal" {
		t.Errorf("500 body = %+v", d)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, 1500 * time.Millisecond: 2, 30 * time.Second: 30} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}
