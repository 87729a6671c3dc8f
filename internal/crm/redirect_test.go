package crm_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/crm"
)

// TestSinkNeverFollowsRedirects: the CRM answers every batch with a redirect to another server
// (307, which would resend the signed POST, and 302, which would carry the signature headers).
// That server receives nothing, with the default client and with a caller's client that follows
// redirects; each answer is a failed attempt, retried, and the error does not quote the Location.
func TestSinkNeverFollowsRedirects(t *testing.T) {
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusFound} {
		for _, client := range []string{"default", "caller's"} {
			t.Run(strconv.Itoa(code)+" "+client, func(t *testing.T) {
				var elsewhere atomic.Int64
				other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					elsewhere.Add(1)
				}))
				t.Cleanup(other.Close)
				var asked atomic.Int64
				ingest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					asked.Add(1)
					http.Redirect(w, r, other.URL+"/stolen-location-marker", code)
				}))
				t.Cleanup(ingest.Close)
				cfg := crm.SinkConfig{URL: ingest.URL + "/ingest", Secret: "sink-secret-for-tests", Attempts: 3,
					Backoff: time.Millisecond, MaxWait: 5 * time.Millisecond}
				if client == "caller's" {
					cfg.Client = &http.Client{Timeout: 5 * time.Second} // follows redirects by itself
				}
				s, err := crm.NewSink(cfg)
				if err != nil {
					t.Fatal(err)
				}
				err = s.Deliver(context.Background(), crm.Batch{JobID: "job_1", Resource: "contacts",
					Items: []json.RawMessage{json.RawMessage(`{"id":"c1"}`)}})
				if n := elsewhere.Load(); n != 0 {
					t.Fatalf("the redirect target received %d requests", n)
				}
				if err == nil || asked.Load() != 3 || !strings.Contains(err.Error(), strconv.Itoa(code)) {
					t.Fatalf("Deliver = %v after %d requests; want a failure with %d after 3 attempts", err, asked.Load(), code)
				}
				if strings.Contains(err.Error(), "stolen-location-marker") || strings.Contains(err.Error(), other.URL) {
					t.Errorf("the error quotes the redirect's Location: %v", err)
				}
			})
		}
	}
}
