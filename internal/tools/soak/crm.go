package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// crm stands in for the CRM's two ingest endpoints: /sink takes the sync batches, /events the
// forwarded events. Each request must carry a valid X-Gateway-Signature ("sha256=" + hex
// HMAC-SHA256 of timestamp + "." + body) and an X-Gateway-Timestamp at most 5 minutes old, as
// the CRM kit checks them; anything else is refused with 401 and counted.
type crm struct {
	url    string
	secret string
	srv    *http.Server

	mu         sync.Mutex
	badSig     int
	stale      int
	malformed  int
	jobs       map[string]*jobItems       // by job id
	deliveries map[string]int             // X-Gateway-Delivery of sync batches -> times received
	events     map[string][]receivedEvent // by session, in arrival order
	nEvents    int
	nBatches   int
}

// jobItems is what the CRM got of one sync job.
type jobItems struct {
	session string
	ids     map[string]map[string]bool // resource -> item ids
	items   map[string]int             // resource -> items received, repeats included
}

// receivedEvent is one forwarded event, as the CRM saw it.
type receivedEvent struct {
	at        time.Time
	id        string // the event id (X-Gateway-Delivery)
	typ       string
	source    string
	messageID string // data.message.id, when the event is about a message
}

func startCRM(secret string) (*crm, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &crm{url: "http://" + ln.Addr().String(), secret: secret, jobs: map[string]*jobItems{},
		deliveries: map[string]int{}, events: map[string][]receivedEvent{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sink", c.verified(c.sink))
	mux.HandleFunc("POST /events", c.verified(c.event))
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

func (c *crm) close() { _ = c.srv.Close() }

// signature is the X-Gateway-Signature of body signed at timestamp ts under secret.
func signature(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// verified reads the body and checks its signature and timestamp before handing it to h.
func (c *crm) verified(h func(r *http.Request, body []byte) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		ts := r.Header.Get("X-Gateway-Timestamp")
		sig := r.Header.Get("X-Gateway-Signature")
		if !hmac.Equal([]byte(signature(c.secret, ts, body)), []byte(sig)) {
			c.mu.Lock()
			c.badSig++
			c.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
			c.mu.Lock()
			c.stale++
			c.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(h(r, body))
	}
}

// sink records a sync batch: {"jobId", "sessionId", "resource", "offset", "items": [{"id": ...}]}.
func (c *crm) sink(r *http.Request, body []byte) int {
	var b struct {
		JobID     string `json:"jobId"`
		SessionID string `json:"sessionId"`
		Resource  string `json:"resource"`
		Items     []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.JobID == "" {
		c.mu.Lock()
		c.malformed++
		c.mu.Unlock()
		return http.StatusBadRequest
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nBatches++
	c.deliveries[r.Header.Get("X-Gateway-Delivery")]++
	j := c.jobs[b.JobID]
	if j == nil {
		j = &jobItems{session: b.SessionID, ids: map[string]map[string]bool{}, items: map[string]int{}}
		c.jobs[b.JobID] = j
	}
	if j.ids[b.Resource] == nil {
		j.ids[b.Resource] = map[string]bool{}
	}
	for _, it := range b.Items {
		j.ids[b.Resource][it.ID] = true
	}
	j.items[b.Resource] += len(b.Items)
	return http.StatusNoContent
}

// event records a forwarded event in its session's arrival order.
func (c *crm) event(r *http.Request, body []byte) int {
	var e struct {
		ID        string `json:"id"`
		Type      string `json:"type"`
		SessionID string `json:"sessionId"`
		Source    string `json:"source"`
		Data      struct {
			Message *struct {
				ID string `json:"id"`
			} `json:"message"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.ID == "" || e.ID != r.Header.Get("X-Gateway-Delivery") {
		c.mu.Lock()
		c.malformed++
		c.mu.Unlock()
		return http.StatusBadRequest
	}
	ev := receivedEvent{at: time.Now(), id: e.ID, typ: e.Type, source: e.Source}
	if e.Data.Message != nil {
		ev.messageID = e.Data.Message.ID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nEvents++
	c.events[e.SessionID] = append(c.events[e.SessionID], ev)
	return http.StatusNoContent
}

func (c *crm) counts() (events, batches int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nEvents, c.nBatches
}

// messageEvents is how many distinct message events (by event id) the CRM got.
func (c *crm) messageEvents() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, evs := range c.events {
		for _, e := range evs {
			if e.messageID != "" {
				seen[e.id] = true
			}
		}
	}
	return len(seen)
}
