package auth

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// FuzzAuthenticate sends random X-API-Key and Authorization headers (each present or not). No
// input may panic, and none but the one valid key may pass: every refusal is a 401 problem answer
// that does not repeat the credential.
func FuzzAuthenticate(f *testing.F) {
	fx := newFixture(f)
	a, err := New(fx.hsOptions())
	if err != nil {
		f.Fatal(err)
	}
	r := router(&syncBuffer{}, nil, a.Middleware())
	valid := fx.hs(f, claims())
	parts := strings.Split(valid, ".")
	seeds := []struct {
		key, authz         string
		sendKey, sendAuthz bool
	}{
		{"", "", false, false},
		{"", "", true, false},
		{"", "", false, true},
		{"crm_0123456789abcdef0123456789abcdef", "", true, false},
		{"k\x00ey", "", true, false},
		{strings.Repeat("k", 257), "", true, false},
		{"", "Bearer", false, true},
		{"", "Bearer " + parts[0] + "." + parts[1] + ".", false, true},
		{"", "Bearer " + parts[0] + "." + parts[1] + ".AAAA", false, true},
		{"", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", false, true},
		{"", "Basic Zm9vOmJhcg==", false, true},
		{"", "Bearer a.b.c", false, true},
		{"x", "Bearer a.b.c", true, true},
		{"", "bEaReR \t" + parts[1], false, true},
	}
	for _, s := range seeds {
		f.Add(s.key, s.authz, s.sendKey, s.sendAuthz)
	}
	f.Fuzz(func(t *testing.T, key, authz string, sendKey, sendAuthz bool) {
		h := map[string][]string{"X-Request-Id": {"fuzz"}}
		if sendKey {
			h["X-Api-Key"] = []string{key}
		}
		if sendAuthz {
			h["Authorization"] = []string{authz}
		}
		ans := do(r, http.MethodGet, "/v1/whoami", h)
		if sendKey && !sendAuthz && key == fx.readKey {
			return // the one valid credential a fuzzer could send
		}
		if ans.status != http.StatusUnauthorized {
			t.Fatalf("key %q (sent %v), Authorization %q (sent %v): status %d, want 401", key, sendKey, authz, sendAuthz, ans.status)
		}
		var d problem.Details
		if err := json.Unmarshal([]byte(ans.body), &d); err != nil || d.Code != problem.CodeUnauthenticated ||
			ans.header.Get("Content-Type") != problem.ContentType {
			t.Fatalf("answer %q is no UNAUTHENTICATED problem", ans.body)
		}
		for _, secret := range []string{key, authz, strings.TrimPrefix(authz, "Bearer ")} {
			if len(secret) >= 20 && strings.Contains(ans.body, secret) {
				t.Fatalf("the answer repeats the credential %q", secret)
			}
		}
	})
}
