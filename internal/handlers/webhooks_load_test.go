package handlers

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/webhooks"
)

// TestWebhookLoad sends WEBHOOK_LOAD_RATE deliveries per second (default 2000) for
// WEBHOOK_LOAD_SECONDS (default 10) through the webhook route, over 20 sessions each sending in
// order, one in twenty repeated, and checks that the CRM receives every event once, in order per
// session; it logs the acknowledgement latency. It runs only with WEBHOOK_LOAD=1 (it needs the
// machine to itself): WEBHOOK_LOAD=1 go test -run TestWebhookLoad -v ./internal/handlers/
func TestWebhookLoad(t *testing.T) {
	if os.Getenv("WEBHOOK_LOAD") != "1" {
		t.Skip("set WEBHOOK_LOAD=1 to run the load test")
	}
	rate, seconds := envInt("WEBHOOK_LOAD_RATE", 2000), envInt("WEBHOOK_LOAD_SECONDS", 10)
	const sessions = 20

	var mu sync.Mutex
	got := map[string][]string{} // session -> message ids in delivery order
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev webhooks.Event
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &ev) == nil && ev.Data.Message != nil {
			mu.Lock()
			got[ev.SessionID] = append(got[ev.SessionID], ev.Data.Message.ID)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer crm.Close()
	reg := prometheus.NewRegistry()
	svc, err := webhooks.New(webhooks.Config{Redis: redistest.New(t), Secret: hookSecret, Workers: 16,
		EventsURL: crm.URL, SigningSecret: "load-signing-secret", Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	logger := slog.New(slog.DiscardHandler)
	r.Use(middleware.RequestID(), middleware.Recovery(logger), middleware.AccessLog(logger, nil),
		middleware.NewHTTPMetrics(reg).Middleware(), middleware.Errors(logger), middleware.BodyLimit(1<<20))
	registerWebhooks(r, svc)
	srv := httptest.NewServer(r)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: sessions * 2}}

	perSession := rate * seconds / sessions
	interval := time.Second * time.Duration(sessions) / time.Duration(rate)
	latencies := make([][]time.Duration, sessions)
	failures := make([]int, sessions)
	start := time.Now()
	var wg sync.WaitGroup
	for s := range sessions {
		wg.Go(func() {
			sid := fmt.Sprintf("load_%02d", s)
			send := func(i int) {
				body := fmt.Sprintf(`{"event": "message.received", "data": {"sessionId": %q, "message": {"whatsappMessageId": "M%06d", "content": "load", "chatId": "34600111222@s.whatsapp.net"}}}`, sid, i)
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/inbox-hub", strings.NewReader(body))
				for k, v := range hookHeaders(hookSecret, body, time.Now()) {
					req.Header.Set(k, v)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				latencies[s] = append(latencies[s], time.Since(t0))
				if err != nil {
					failures[s]++
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					failures[s]++
				}
			}
			next := start
			for i := range perSession {
				if i%20 == 19 {
					send(i - 1) // a repeated delivery
				} else {
					send(i)
				}
				next = next.Add(interval)
				time.Sleep(time.Until(next)) // paces the sender at the rate asked for
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	var all []time.Duration
	nFail := 0
	for s := range sessions {
		all = append(all, latencies[s]...)
		nFail += failures[s]
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(float64(len(all))*p))] }
	t.Logf("%d deliveries in %s (%.0f/s): ack p50 %s, p99 %s, p99.9 %s, max %s; %d failed", len(all), took.Round(time.Millisecond),
		float64(len(all))/took.Seconds(), pct(0.5), pct(0.99), pct(0.999), all[len(all)-1], nFail)
	if nFail > 0 {
		t.Errorf("%d deliveries failed", nFail)
	}

	unique := perSession - perSession/20
	forwarded := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, ids := range got {
			n += len(ids)
		}
		return n
	}
	wait.UntilShowing(t, 2*time.Minute, "every event forwarded", func() bool { return forwarded() >= unique*sessions },
		func() string { return fmt.Sprintf("%d of %d events forwarded", forwarded(), unique*sessions) })
	t.Logf("every event forwarded %s after the last delivery", time.Since(start.Add(took)).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // room for a wrong extra (duplicated) event to show
	mu.Lock()
	defer mu.Unlock()
	for s := range sessions {
		sid := fmt.Sprintf("load_%02d", s)
		ids := got[sid]
		var want []string
		for i := range perSession {
			if i%20 != 19 {
				want = append(want, fmt.Sprintf("M%06d", i))
			}
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s: %d events, want %d in order (lost, duplicated or reordered)", sid, len(ids), len(want))
		}
	}
}

func envInt(name string, def int) int {
	var n int
	if _, err := fmt.Sscan(os.Getenv(name), &n); err != nil || n <= 0 {
		return def
	}
	return n
}
