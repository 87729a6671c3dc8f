package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// ClaimSession is the JWT claim that binds a token to one WhatsApp session: the Frappe kit mints
// its browser tokens with it. Its name is the gateway's own ("sid" would clash with OpenID
// Connect's login-session id, which CRMs may already put in their tokens).
const ClaimSession = "session_id"

// MaxSessionClaimBytes is the longest session claim accepted (session ids are at most 100).
const MaxSessionClaimBytes = 100

// sessionFree are the routes without a session in their path that a session-bound token may
// still reach: following a sync job it started (the job id, a random UUID, is the capability).
var sessionFree = []string{"/v1/sync-jobs/"}

// checkSession lets a session-bound caller reach only its session's routes: the route's
// :sessionId, or the session segment of a passthrough path, must equal the claim. Other routes
// that name no session (lists of every session, the admin routes) are refused too, but for those
// in sessionFree. It answers 403 FORBIDDEN and returns false when the request goes elsewhere.
func checkSession(c *gin.Context, caller Caller) bool {
	if caller.Session == "" {
		return true
	}
	session, named := sessionOfRequest(c)
	switch {
	case named && session == caller.Session:
		return true
	case !named && hasAnyPrefix(c.FullPath(), sessionFree):
		return true
	}
	middleware.Fail(c, problem.New(http.StatusForbidden, problem.CodeForbidden,
		fmt.Sprintf("The caller %q holds a token bound to one WhatsApp session; this route is not that session's.", caller.Name)))
	return false
}

// sessionOfRequest is the session a request's path names: the :sessionId of a /v1 route, or the
// session segment of a passthrough path (/api/sessions/{id}/..., /api/contacts/{sessionId}/...,
// /api/messages/{sessionId}/...). named is false for a path that names none.
func sessionOfRequest(c *gin.Context) (session string, named bool) {
	if id := c.Param("sessionId"); id != "" {
		return id, true
	}
	if !strings.HasPrefix(c.FullPath(), "/api/") {
		return "", false
	}
	segs := strings.Split(strings.Trim(c.Param("path"), "/"), "/")
	if len(segs) >= 2 && segs[1] != "" {
		switch segs[0] {
		case "sessions", "contacts", "messages":
			return segs[1], true
		}
	}
	return "", false
}

// sessionClaim is the ClaimSession claim: present tells a claim given (even as null or "", which
// are invalid) from one left out.
type sessionClaim struct {
	present bool
	value   string
}

// UnmarshalJSON reads a JSON string; null reads as present and empty; any other type fails the
// token's decoding (a malformed token).
func (s *sessionClaim) UnmarshalJSON(b []byte) error {
	s.present = true
	if string(b) == "null" {
		return nil
	}
	return json.Unmarshal(b, &s.value)
}

// validSessionClaim reports whether v has the shape of a session id, as the routes accept them.
func validSessionClaim(v string) bool {
	if v == "" || len(v) > MaxSessionClaimBytes {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch ch := v[i]; {
		case ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9', ch == '_', ch == '-':
		default:
			return false
		}
	}
	return true
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
