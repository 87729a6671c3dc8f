package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RawRequest is a request relayed as is to the upstream, for the drop-in /api passthrough.
type RawRequest struct {
	Method string
	// Path is the upstream path, starting with /api/, unescaped (as the caller's router decoded
	// it); dot segments are refused.
	Path  string
	Query url.Values
	// ContentType is sent with a Body; empty means application/json.
	ContentType string
	Body        []byte
	// Category is the quota category; empty means derived from the path: auth for /api/auth/*,
	// send for POST /api/messages/:sessionId/send*, read for the rest.
	Category Category
	// Route is the route pattern for metrics and errors (for example the caller's router
	// pattern); empty means matched against the upstream's known routes, "/api/*" when none fits.
	// It must never be the real path: metrics would carry session ids and phone numbers.
	Route string
}

// RawResponse is the upstream's answer, verbatim: status, headers (hop-by-hop headers and cookies
// are the relaying handler's to filter) and body.
type RawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

var rawMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// Do relays a request and returns the upstream's answer faithfully, whatever its status, with
// err nil. It still injects the credentials, applies the quota, the breaker, the retries of
// idempotent methods and the 401 handling. The exceptions, returned as errors like every other
// method's: a 401 that survives a fresh token (it is about the gateway's credentials, not the
// caller's: ErrUnauthorized or ErrAuthFailed), an answer larger than the body limit
// (ErrBadResponse), and no answer at all (quota, open breaker, connection failure, timeout,
// cancellation).
func (c *Client) Do(ctx context.Context, req RawRequest) (*RawResponse, error) {
	method := strings.ToUpper(req.Method)
	if !rawMethods[method] {
		return nil, errors.New("upstream: raw request: method not allowed")
	}
	segs, ok := rawSegments(req.Path)
	if !ok {
		return nil, errors.New("upstream: raw request: the path must start with /api/ and have no dot or empty segments")
	}
	escaped := make([]string, len(segs))
	for i, s := range segs {
		escaped[i] = url.PathEscape(s)
	}
	route := req.Route
	if route == "" {
		route = matchRoute(segs)
	}
	cat := req.Category
	if cat == "" {
		cat = rawCategory(method, segs)
	}
	isAuth := len(segs) > 1 && segs[1] == "auth"
	cl := &call{
		method: method, route: route, path: "/" + strings.Join(escaped, "/"), query: req.Query,
		body: req.Body, contentType: req.ContentType, category: cat, raw: true,
		bearer: !(isAuth && (segs[len(segs)-1] == "login" || segs[len(segs)-1] == "refresh-token")),
	}
	ans, err := c.exec(ctx, cl)
	if err != nil {
		return nil, err
	}
	return &RawResponse{Status: ans.status, Header: ans.header, Body: ans.body}, nil
}

// rawSegments splits /api/a/b into [api a b], refusing anything but a clean path under /api/.
func rawSegments(p string) ([]string, bool) {
	if !strings.HasPrefix(p, "/api/") {
		return nil, false
	}
	segs := strings.Split(strings.TrimSuffix(p[1:], "/"), "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return nil, false
		}
	}
	return segs, len(segs) > 1
}

func rawCategory(method string, segs []string) Category {
	switch {
	case segs[1] == "auth":
		return CategoryAuth
	case method == http.MethodPost && segs[1] == "messages" && len(segs) == 4 && strings.HasPrefix(segs[3], "send"):
		return CategorySend
	}
	return CategoryRead
}

// knownRoutes are the upstream's route patterns (docs/upstream.md), literal segments before
// parameters.
var knownRoutes = [][]string{
	split("/api/auth/login"), split("/api/auth/refresh-token"), split("/api/auth/profile"), split("/api/auth/logout"),
	split("/api/sessions"), split("/api/sessions/:id"), split("/api/sessions/:id/status"),
	split("/api/sessions/:id/connect"), split("/api/sessions/:id/qr"), split("/api/sessions/:id/disconnect"),
	split("/api/sessions/:id/webhook"),
	split("/api/contacts/:sessionId"), split("/api/contacts/:sessionId/info/:contactId"),
	split("/api/messages/:sessionId"), split("/api/messages/:sessionId/chats"), split("/api/messages/:sessionId/send"),
	split("/api/messages/:sessionId/:chatId"), split("/api/messages/:sessionId/:chatId/read"),
}

func split(p string) []string { return strings.Split(p[1:], "/") }

// matchRoute names a raw path by its route pattern, so that metrics stay bounded and free of ids.
func matchRoute(segs []string) string {
	for _, pat := range knownRoutes {
		if len(pat) != len(segs) {
			continue
		}
		ok := true
		for i, s := range pat {
			if !strings.HasPrefix(s, ":") && s != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return "/" + strings.Join(pat, "/")
		}
	}
	return "/api/*"
}

// AsError is the error a raw answer stands for when a relay does not pass it on as it is: the
// *Error the typed methods return for the same answer, named by method and route pattern, so that
// errors.Is maps it to its sentinel (a 5xx to ErrUnavailable, a 404 to ErrNotFound, ...) and a
// 429 or 503 carries its Retry-After. Only the text of a JSON error envelope is kept, cleaned and
// cut; nothing else of the body is.
func (r *RawResponse) AsError(method, route string) *Error {
	return answerError(&call{method: method, route: route}, r.Status, r.Header, r.Body, time.Now())
}
