package passthrough

import (
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/inboxhub-gateway/gateway/internal/cache"
)

// Caller scopes the routes need (the same scopes as the /v1 routes).
const (
	ScopeSessionsRead  = "sessions:read"
	ScopeSessionsWrite = "sessions:write"
	ScopeMessagesRead  = "messages:read"
	ScopeMessagesSend  = "messages:send"
	ScopeAdmin         = "admin"
)

// Route is one upstream route the gateway relays: method, pattern (":name" segments are
// parameters) and the scope a caller needs for it.
type Route struct {
	Method  string
	Pattern string
	Scope   string
	// NoStale: a cached answer of this route is never served past its freshness (a QR code
	// that has expired cannot be scanned).
	NoStale bool
	// WebhookFields: the body may carry the session's webhook settings (webhookUrl,
	// webhookSecret, webhookEvents). Where a session's events go is an admin decision: a caller
	// without the admin scope gets the gateway's own target instead (see WithWebhookTarget).
	WebhookFields bool

	segs []string
}

// routes is the allow-list: every upstream route (docs/upstream.md) except /api/auth/*, which the
// gateway refuses because it holds the upstream login and tokens itself. Anything not listed
// here is answered 404 without reaching the upstream. Where two patterns match a path, the
// first listed wins (literal segments are listed before parameters).
var routes = []Route{
	{Method: http.MethodGet, Pattern: "/api/sessions", Scope: ScopeSessionsRead},
	{Method: http.MethodPost, Pattern: "/api/sessions", Scope: ScopeSessionsWrite, WebhookFields: true},
	{Method: http.MethodGet, Pattern: "/api/sessions/:id", Scope: ScopeSessionsRead},
	{Method: http.MethodDelete, Pattern: "/api/sessions/:id", Scope: ScopeSessionsWrite},
	{Method: http.MethodGet, Pattern: "/api/sessions/:id/status", Scope: ScopeSessionsRead},
	{Method: http.MethodGet, Pattern: "/api/sessions/:id/qr", Scope: ScopeSessionsRead, NoStale: true},
	{Method: http.MethodPost, Pattern: "/api/sessions/:id/connect", Scope: ScopeSessionsWrite},
	{Method: http.MethodPost, Pattern: "/api/sessions/:id/disconnect", Scope: ScopeSessionsWrite},
	// Pointing a session's events somewhere is an admin decision: whoever holds the target
	// receives every customer message.
	{Method: http.MethodPut, Pattern: "/api/sessions/:id/webhook", Scope: ScopeAdmin},

	{Method: http.MethodGet, Pattern: "/api/contacts/:sessionId", Scope: ScopeMessagesRead},
	{Method: http.MethodGet, Pattern: "/api/contacts/:sessionId/info/:contactId", Scope: ScopeMessagesRead},

	{Method: http.MethodGet, Pattern: "/api/messages/:sessionId/chats", Scope: ScopeMessagesRead},
	{Method: http.MethodPost, Pattern: "/api/messages/:sessionId/send", Scope: ScopeMessagesSend},
	{Method: http.MethodGet, Pattern: "/api/messages/:sessionId", Scope: ScopeMessagesRead},
	{Method: http.MethodGet, Pattern: "/api/messages/:sessionId/:chatId", Scope: ScopeMessagesRead},
	{Method: http.MethodPut, Pattern: "/api/messages/:sessionId/:chatId/read", Scope: ScopeMessagesSend},
}

func init() {
	for i := range routes {
		routes[i].segs = strings.Split(routes[i].Pattern[1:], "/")
	}
}

// AllowList returns the routes the passthrough relays, for documentation and tests.
func AllowList() []Route { return slices.Clone(routes) }

// match finds the route of a method and a clean path split into segments, with its parameters.
func match(method string, segs []string) (*Route, map[string]string) {
	for i := range routes {
		r := &routes[i]
		if r.Method != method || len(r.segs) != len(segs) {
			continue
		}
		params := map[string]string{}
		ok := true
		for j, s := range r.segs {
			switch {
			case strings.HasPrefix(s, ":"):
				params[s[1:]] = segs[j]
			case s != segs[j]:
				ok = false
			}
			if !ok {
				break
			}
		}
		if ok {
			return r, params
		}
	}
	return nil, nil
}

var (
	// sessionIDPattern is a session's string sessionId or its numeric id.
	sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)
	numericID        = regexp.MustCompile(`^[0-9]{1,18}$`)
	// jidPattern is a WhatsApp JID (34600000000@s.whatsapp.net, 34600000000:71@s.whatsapp.net,
	// 1203630...-16...@g.us, ...@lid, status@broadcast); phonePattern a bare number, which some
	// callers send for contacts.
	jidPattern   = regexp.MustCompile(`^[A-Za-z0-9._:+-]{1,100}@[A-Za-z0-9.-]{1,64}$`)
	phonePattern = regexp.MustCompile(`^\+?[0-9]{5,20}$`)
)

// paramProblem says what is wrong with a path parameter, or "" when it is fine.
func paramProblem(name, value string) string {
	switch name {
	case "id", "sessionId":
		if !sessionIDPattern.MatchString(value) {
			return "must be a session id: 1 to 100 characters of A-Z, a-z, 0-9, _ and -, or the numeric id"
		}
	case "chatId", "contactId":
		// ".." is refused inside a JID too: no JID has it, and a path segment holding it
		// ("..@..") is one rewrite away from a traversal in whatever parses the path next.
		if (!jidPattern.MatchString(value) || strings.Contains(value, "..")) && !phonePattern.MatchString(value) {
			return "must be a WhatsApp JID such as 34600000000@s.whatsapp.net"
		}
	}
	return ""
}

// scopes are the cache scopes a route touches: a session's own scope when the path names it by
// its string id, and the session list for everything under /api/sessions (where a numeric id
// cannot be mapped to its string id here, the list scope stands in for it).
func scopes(r *Route, params map[string]string) []string {
	var out []string
	if strings.HasPrefix(r.Pattern, "/api/sessions") {
		out = append(out, cache.ScopeSessions)
	}
	id := params["sessionId"]
	if id == "" && !numericID.MatchString(params["id"]) {
		id = params["id"]
	}
	if id != "" {
		out = append(out, cache.SessionScope(id))
	}
	return out
}
