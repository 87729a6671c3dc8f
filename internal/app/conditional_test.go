package app_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/cache"
	"github.com/inboxhub-gateway/gateway/internal/sim"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
)

var (
	strongETag   = regexp.MustCompile(`^"[A-Za-z0-9_-]{16,64}"$`)
	cacheControl = regexp.MustCompile(`^private, max-age=([0-9]+)$`)
)

// checkValidators asserts that a cached answer carries a strong ETag and a Cache-Control whose
// max-age is within the route's freshness, and returns the ETag.
func checkValidators(t *testing.T, what string, a answer, fresh time.Duration) string {
	t.Helper()
	tag := a.header.Get("ETag")
	if !strongETag.MatchString(tag) {
		t.Fatalf("%s: ETag %q, want a strong tag (%d %s)", what, tag, a.status, a.body)
	}
	m := cacheControl.FindStringSubmatch(a.header.Get("Cache-Control"))
	if m == nil {
		t.Fatalf("%s: Cache-Control %q", what, a.header.Get("Cache-Control"))
	}
	if age, _ := strconv.Atoi(m[1]); time.Duration(age)*time.Second > fresh {
		t.Errorf("%s: max-age %d s beyond the freshness %s", what, age, fresh)
	}
	return tag
}

// TestConditionalGetOfCachedReads: every cached read answers with a strong ETag and
// Cache-Control; If-None-Match with that tag (alone, in a list, weak, or "*") gets 304 with no
// body and the same validators, without an upstream call; a tag that does not match, or a
// header that is not a list of tags, gets the full answer.
func TestConditionalGetOfCachedReads(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	g := startGateway(t, simURL, creds, redistest.URL(t), nil)
	pol := cache.DefaultPolicies()

	for _, route := range []struct {
		path, upstream string
		fresh          time.Duration
	}{
		{"/v1/sessions", "GET /api/sessions", pol.Sessions.Fresh},
		{"/v1/sessions/demo_session", "GET /api/sessions/{id}/status", pol.Status.Fresh},
		{"/v1/sessions/demo_session/contacts?limit=5", "GET /api/contacts/{sessionId}", pol.Contacts.Fresh},
		{"/v1/sessions/demo_session/chats?limit=5", "GET /api/chats/{sessionId}", pol.Chats.Fresh},
	} {
		full := g.get(t, route.path)
		if full.status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", route.path, full.status, full.body)
		}
		tag := checkValidators(t, route.path, full, route.fresh)
		calls := s.Counters().Requests[route.upstream]

		for _, inm := range []string{tag, "*", `"other", ` + tag, `W/` + tag, `"a",W/"b",  ` + tag + ` `} {
			a := g.request(t, http.MethodGet, route.path, nil, map[string]string{"If-None-Match": inm})
			if a.status != http.StatusNotModified || a.body != "" {
				t.Errorf("GET %s, If-None-Match %s = %d with %d bytes, want 304 and no body", route.path, inm, a.status, len(a.body))
				continue
			}
			if got := checkValidators(t, route.path+" (304)", a, route.fresh); got != tag {
				t.Errorf("GET %s: 304 with ETag %s, the 200 had %s", route.path, got, tag)
			}
		}
		if n := s.Counters().Requests[route.upstream]; n != calls {
			t.Errorf("GET %s: the 304s made %d upstream calls", route.path, n-calls)
		}

		for _, inm := range []string{`"other"`, "garbage", `W/"x", "y"`, strings.Trim(tag, `"`), `"` + tag + `"`, `W/`, `,`, strings.Repeat(`"x",`, 500)} {
			a := g.request(t, http.MethodGet, route.path, nil, map[string]string{"If-None-Match": inm})
			if a.status != http.StatusOK || stripMeta(t, a.body) != stripMeta(t, full.body) || a.header.Get("ETag") != tag {
				t.Errorf("GET %s, If-None-Match %.40q = %d (ETag %s), want the full answer", route.path, inm, a.status, a.header.Get("ETag"))
			}
		}
	}
}

// TestConditionalGetSeesChanges: after the data changes (a connect drops the session's cached
// reads), the old ETag no longer matches: 200 with the new data and a new ETag, which then
// gives 304 in turn.
func TestConditionalGetSeesChanges(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	g := startGateway(t, simURL, creds, redistest.URL(t), nil)
	const path = "/v1/sessions/demo_session"
	first := g.get(t, path)
	old := checkValidators(t, "first", first, time.Minute)

	if err := s.SetSessionStatus("demo_session", "DISCONNECTED"); err != nil {
		t.Fatal(err)
	}
	if a := g.post(t, "/v1/sessions/demo_session/connect", "", nil); a.status != http.StatusAccepted {
		t.Fatalf("connect = %d %s", a.status, a.body)
	}
	changed := g.request(t, http.MethodGet, path, nil, map[string]string{"If-None-Match": old})
	if changed.status != http.StatusOK || stripMeta(t, changed.body) == stripMeta(t, first.body) {
		t.Fatalf("after a change, If-None-Match with the old tag = %d %s, want 200 with the new data", changed.status, changed.body)
	}
	tag := checkValidators(t, "changed", changed, time.Minute)
	if tag == old {
		t.Fatalf("the data changed but the ETag stayed %s", tag)
	}
	if a := g.request(t, http.MethodGet, path, nil, map[string]string{"If-None-Match": tag}); a.status != http.StatusNotModified {
		t.Errorf("If-None-Match with the new tag = %d, want 304", a.status)
	}
}

// TestNoValidatorsOnErrors: problem answers (upstream down with nothing cached, unknown session,
// bad input) carry no ETag and no max-age, and If-None-Match: * does not turn one into 304.
func TestNoValidatorsOnErrors(t *testing.T) {
	t.Parallel()
	creds := newCreds()
	s, simURL := startSim(t, creds, sim.Options{})
	pol := cache.DefaultPolicies()
	g := startGateway(t, simURL, creds, redistest.URL(t), nil, app.WithCachePolicies(pol))

	s.SetFaults(sim.Faults{AllStatus: http.StatusServiceUnavailable})
	for _, path := range []string{
		"/v1/sessions", "/v1/sessions/demo_session", "/v1/sessions/no_such_session",
		"/v1/sessions/demo_session/contacts?limit=5", "/v1/sessions/bad%20id", "/v1/sessions/demo_session/contacts?nope=1",
	} {
		for _, inm := range []string{"", "*"} {
			a := g.request(t, http.MethodGet, path, nil, map[string]string{"If-None-Match": inm})
			if a.status < 400 {
				t.Fatalf("GET %s with the upstream down = %d, want an error", path, a.status)
			}
			if a.header.Get("ETag") != "" || strings.Contains(a.header.Get("Cache-Control"), "max-age") {
				t.Errorf("GET %s = %d with ETag %q, Cache-Control %q", path, a.status, a.header.Get("ETag"), a.header.Get("Cache-Control"))
			}
		}
	}
}
