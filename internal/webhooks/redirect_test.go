package webhooks

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// lockedBuffer is a log destination the workers write to while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestForwarderNeverFollowsRedirects: the CRM answers every event with a redirect to another
// server (307, which would resend the signed POST, and 302, which would carry the signature
// headers). That server receives nothing, with the default client and with a caller's client that
// follows redirects; each answer is a failed attempt, retried and then dead-lettered, and neither
// the dead letter nor the log quotes the Location.
func TestForwarderNeverFollowsRedirects(t *testing.T) {
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusFound} {
		for _, client := range []string{"default", "caller's"} {
			t.Run(strconv.Itoa(code)+" "+client, func(t *testing.T) {
				var elsewhere atomic.Int64
				other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					elsewhere.Add(1)
				}))
				t.Cleanup(other.Close)
				location := other.URL + "/stolen-location-marker"
				var asked atomic.Int64
				crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					asked.Add(1)
					http.Redirect(w, r, location, code)
				}))
				t.Cleanup(crm.Close)
				logs := &lockedBuffer{}
				ts := newTestService(t, nil, true, func(c *Config) {
					c.EventsURL, c.SigningSecret, c.Attempts = crm.URL+"/events", testSigning, 3
					c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
					if client == "caller's" {
						c.Client = &http.Client{Timeout: 5 * time.Second} // follows redirects by itself
					}
				})
				ctx := context.Background()
				if _, err := ts.Receive(ctx, signed(messageBody("abc_123", "3EB0REDIR"))); err != nil {
					t.Fatal(err)
				}
				wait.Until(t, 5*time.Second, "the event dead-lettered or sent elsewhere", func() bool {
					p, err := ts.DeadLetters(ctx, 1, 10)
					return elsewhere.Load() > 0 || (err == nil && p.Total == 1)
				})
				if n := elsewhere.Load(); n != 0 {
					t.Fatalf("the redirect target received %d requests", n)
				}
				p, _ := ts.DeadLetters(ctx, 1, 10)
				d := p.Items[0]
				if d.Attempts != 3 || asked.Load() != 3 || !strings.Contains(d.LastError, strconv.Itoa(code)) {
					t.Errorf("dead letter after %d attempts (%d asked), last error %q; want 3 attempts failed with %d", d.Attempts, asked.Load(), d.LastError, code)
				}
				wait.Until(t, time.Second, "the dead letter logged", func() bool { return strings.Contains(logs.String(), "event dead-lettered") })
				for what, text := range map[string]string{"dead letter": d.LastError, "log": logs.String()} {
					if strings.Contains(text, "stolen-location-marker") || strings.Contains(text, other.URL) {
						t.Errorf("the %s quotes the redirect's Location: %s", what, text)
					}
				}
			})
		}
	}
}
