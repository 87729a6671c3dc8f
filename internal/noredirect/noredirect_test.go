package noredirect

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestClientReturnsTheRedirect: a POST answered 307 comes back as the 307, the target of the
// redirect receives nothing, and the base client given is left as it was (it still follows).
func TestClientReturnsTheRedirect(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(first.Close)

	base := &http.Client{Timeout: 5 * time.Second}
	for name, c := range map[string]*http.Client{"nil base": Client(nil), "given base": Client(base)} {
		resp, err := c.Post(first.URL, "application/json", nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusTemporaryRedirect || elsewhere.Load() != 0 {
			t.Fatalf("%s: status %d, the redirect target got %d requests", name, resp.StatusCode, elsewhere.Load())
		}
	}
	if base.CheckRedirect != nil || Client(base).Timeout != base.Timeout {
		t.Error("Client changed the base client or lost its settings")
	}
}
