package upstream

import (
	"context"
	"fmt"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// Category names an upstream rate-limit bucket; the quota is kept per category.
type Category string

// The upstream's rate-limit categories (docs/upstream.md, "Rate limits").
const (
	CategoryAuth Category = "auth"
	CategoryRead Category = "read"
	CategorySend Category = "send"
)

// Limiter hands out the shared upstream quota. Wait blocks until the call may go out, or returns
// an error that is errors.Is(err, ErrRateLimited) (a *RateLimitError carrying RetryAfter) when no
// quota will be available in time. Whether the caller is interactive or background work is carried
// by ctx (see the quota package).
type Limiter interface {
	Wait(ctx context.Context, c Category) error
}

// AccessToken is a bearer token together with the generation it belongs to; the generation lets a
// 401 invalidate exactly the token that was rejected and not a newer one.
type AccessToken struct {
	Value      string
	Generation int64
}

// TokenSource supplies the bearer token of authenticated requests, as golang.org/x/oauth2's
// TokenSource does, and is told when the upstream rejected one (the one invalidation the client
// needs), so that it can drop that token (compare-and-swap on the generation) and get a new one.
// It is defined here, by its user: the implementation (package tokens) imports upstream to log in,
// and upstream never imports it.
type TokenSource interface {
	Token(ctx context.Context) (AccessToken, error)
	Rejected(ctx context.Context, t AccessToken)
}

// TokenSet is what login and refresh answer. RefreshToken and ExpiresIn may be empty after a
// refresh (the upstream does not document that shape).
type TokenSet struct {
	AccessToken  string
	RefreshToken string
	ExpiresIn    string
}

// Sentinel errors; every error the client returns matches at most one of them with errors.Is.
// Each carries the problem.Kind it is answered as (problem.Sentinel), so that package problem
// maps them without importing this one.
var (
	ErrUnauthorized        = problem.Sentinel("upstream: unauthorized", problem.KindUpstreamAuthFailed)
	ErrAuthFailed          = problem.Sentinel("upstream: credentials rejected", problem.KindUpstreamAuthFailed)
	ErrRateLimited         = problem.Sentinel("upstream: rate limited", problem.KindRateLimited)
	ErrSessionNotFound     = problem.Sentinel("upstream: session not found", problem.KindSessionNotFound)
	ErrSessionNotConnected = problem.Sentinel("upstream: session not connected", problem.KindSessionNotConnected)
	ErrNotFound            = problem.Sentinel("upstream: not found", problem.KindNotFound)
	ErrConflict            = problem.Sentinel("upstream: conflict", problem.KindConflict)
	ErrUnavailable         = problem.Sentinel("upstream: unavailable", problem.KindUpstreamUnavailable)
	ErrTimeout             = problem.Sentinel("upstream: timeout", problem.KindTimeout)
	// ErrBadResponse is an answer the client could not use: larger than the body limit, or a
	// success status whose body is not the documented JSON. Callers report it as an upstream error.
	ErrBadResponse = problem.Sentinel("upstream: bad response", problem.KindUpstreamError)
)

// RateLimitError says a call may not go out before RetryAfter. Source is "upstream" when the
// upstream answered 429 and "gateway" when the shared quota refused it before it was sent.
type RateLimitError struct {
	RetryAfter time.Duration
	Source     string
}

// Error says who refused the call and for how long; it carries no request data.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited by %s, retry after %s", e.Source, e.RetryAfter.Round(time.Millisecond))
}

// Is makes a *RateLimitError match ErrRateLimited.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// ProblemKind answers a *RateLimitError as a rate limit (problem.Classified).
func (e *RateLimitError) ProblemKind() problem.Kind { return problem.KindRateLimited }

// ProblemRetryAfter is the wait the answer gives (problem.Waiting).
func (e *RateLimitError) ProblemRetryAfter() time.Duration { return e.RetryAfter }
