package problem

import (
	"context"
	"errors"
	"time"
)

// Kind is a kind of failure of the packages below the HTTP layer (the upstream client, the token
// source). They give it to their errors, and From answers each kind in one way whichever package
// reported it; so problem needs none of them. When an error's tree holds several kinds, the first
// in this order decides (a rate limit on a login is answered as the refused credentials).
type Kind uint8

// The kinds, in the order in which they decide.
const (
	kindNone                  Kind = iota
	KindUpstreamAuthFailed         // Inbox Hub refused the gateway's credentials: 502 UPSTREAM_AUTH_FAILED
	KindRateLimited                // an upstream quota is used up: 429 RATE_LIMITED
	KindSessionNotFound            // 404 SESSION_NOT_FOUND
	KindSessionNotConnected        // 409 SESSION_NOT_CONNECTED
	KindNotFound                   // 404 NOT_FOUND
	KindConflict                   // 409 CONFLICT
	KindUpstreamUnavailable        // 503 UPSTREAM_UNAVAILABLE
	KindTokenStoreUnavailable      // 503 UPSTREAM_UNAVAILABLE: the token store (Redis), not Inbox Hub
	KindStoreUnavailable           // 503 UPSTREAM_UNAVAILABLE: the gateway's store (Redis) is unreachable for now
	KindTimeout                    // 504 UPSTREAM_TIMEOUT; so is context.DeadlineExceeded
	KindUpstreamError              // 502 UPSTREAM_ERROR: a failure of Inbox Hub the gateway cannot pass on
)

// Classified is an error that says its Kind. From finds it anywhere in an error's tree (wrapped
// with %w or joined), as errors.Is would.
type Classified interface {
	error
	ProblemKind() Kind
}

// Waiting is an error that says how long the caller should wait before trying again (0: it does
// not know): the answer's Retry-After. From answers the wait of the first Waiting error of kind
// KindRateLimited in the tree, else of the first Waiting error, else the kind's default.
type Waiting interface {
	error
	ProblemRetryAfter() time.Duration
}

// Sentinel returns an error with the given text and kind, to be compared with errors.Is: errors.New
// for the packages whose sentinel errors From must answer.
func Sentinel(text string, k Kind) error { return &sentinel{text: text, kind: k} }

type sentinel struct {
	text string
	kind Kind
}

func (s *sentinel) Error() string { return s.text }

// ProblemKind returns the sentinel's kind.
func (s *sentinel) ProblemKind() Kind { return s.kind }

// kindOf is the deciding Kind in err's tree (kindNone when there is none); context.DeadlineExceeded
// counts as KindTimeout.
func kindOf(err error) Kind {
	k := kindNone
	walk(err, func(e error) bool {
		if c, ok := e.(Classified); ok {
			if ck := c.ProblemKind(); ck != kindNone && (k == kindNone || ck < k) {
				k = ck
			}
		}
		return false
	})
	if (k == kindNone || k > KindTimeout) && errors.Is(err, context.DeadlineExceeded) {
		k = KindTimeout
	}
	return k
}

// walk visits err's tree in the order of errors.Is and errors.As (depth first, the error before
// what it wraps) until visit returns true.
func walk(err error, visit func(error) bool) bool {
	for err != nil {
		if visit(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, visit) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
