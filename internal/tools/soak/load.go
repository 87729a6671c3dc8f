package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/tools/childproc"
)

// Request kinds, as the verdict groups them.
const (
	kindCached      = "cached read"
	kindPassthrough = "passthrough read"
	kindSend        = "send"
	kindWebhook     = "webhook"
	kindSync        = "sync"
)

// sample is one request the load made.
type sample struct {
	at      time.Time
	dur     time.Duration
	kind    string
	replica int
	status  int    // 0: no answer (connection refused or cut)
	code    string // the problem's code of a non-2xx answer; for no answer, what happened
}

// recorder keeps every sample until the load ends.
type recorder struct {
	mu      sync.Mutex
	samples []sample
	closed  bool
}

func newRecorder() *recorder { return &recorder{samples: make([]sample, 0, 1<<18)} }

func (r *recorder) add(s sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.samples = append(r.samples, s)
	}
}

// close stops recording (the drain after the load is not measured) and returns the samples.
func (r *recorder) close() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return r.samples
}

func (r *recorder) counts() (n, non2xx int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.samples {
		if s.status/100 != 2 {
			non2xx++
		}
	}
	return len(r.samples), non2xx
}

// load drives the fleet; it also remembers what it did, for the verdict.
type load struct {
	f      *fleet
	rec    *recorder
	o      options
	logf   func(string, ...any)
	client *http.Client
	rr     atomic.Uint64

	chatIDs []string // chats of readSession, for the messages reads

	syncNext atomic.Int64
	syncWG   sync.WaitGroup
	jobsMu   sync.Mutex
	jobs     []*jobRun

	sendsMu sync.Mutex
	sends   []*sendKey
	sendWG  sync.WaitGroup

	whMu     sync.Mutex
	webhooks map[string]*whSession // by session
}

// jobRun is one sync job the soak started and followed.
type jobRun struct {
	session  string
	id       string
	state    string
	attempts int
	started  time.Time
	ended    time.Time
	progress map[string]struct {
		Phase     string `json:"phase"`
		Fetched   int    `json:"fetched"`
		Delivered int    `json:"delivered"`
		Failed    int    `json:"failed"`
	}
	err string
}

// sendKey is one Idempotency-Key and what each use of it was answered.
type sendKey struct {
	key      string
	text     string
	statuses []int
}

// whSession is the webhook stream of one session: seq n is the n-th message event sent.
type whSession struct {
	index    int
	accepted map[int]time.Time // seq -> first 2xx
	spooled  map[int]bool
	by       map[int]string // seq -> which replica accepted it, and the answer's X-Request-ID
	gaveUp   []int
	rejected []int // 4xx answers (a bug: these are authentic)
	sent     int
}

func newLoad(f *fleet, rec *recorder, o options, logf func(string, ...any)) *load {
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 128, IdleConnTimeout: 30 * time.Second}
	return &load{f: f, rec: rec, o: o, logf: logf, client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		webhooks: map[string]*whSession{}}
}

// pick returns the next replica in rotation that is up, other than not (-1: any).
func (l *load) pick(not int) *replica {
	for {
		n := uint64(len(l.f.replicas))
		for range n {
			r := l.f.replicas[l.rr.Add(1)%n]
			if r.i != not && r.isUp() {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answer is a request's outcome.
type answer struct {
	status  int
	body    []byte
	replica int
	header  http.Header
}

// do sends one request to replica r (nil: the next in rotation) and records it under kind.
func (l *load) do(ctx context.Context, kind string, r *replica, method, path string, body []byte, header map[string]string) answer {
	if r == nil {
		r = l.pick(-1)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+r.addr+path, bytes.NewReader(body))
	if err != nil {
		panic(err) // the soak's own paths are valid
	}
	if kind != kindWebhook {
		req.Header.Set("X-API-Key", l.f.apiKey)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := l.client.Do(req)
	a := answer{replica: r.i}
	if err == nil {
		a.status, a.header = resp.StatusCode, resp.Header
		a.body, err = io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if err != nil {
			a.status = 0 // cut mid-answer
		}
	}
	if ctx.Err() != nil && a.status == 0 {
		return a // the soak stopped it: not the gateway's doing
	}
	s := sample{at: start, dur: time.Since(start), kind: kind, replica: r.i, status: a.status}
	if a.status == 0 {
		s.code = transportError(err)
	}
	if a.status/100 != 2 && a.status != 0 {
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(a.body, &p)
		s.code = p.Code
	}
	l.rec.add(s)
	return a
}

// run starts the load; the returned channel closes when every generator but the sync jobs
// stopped (ctx ended). Sync jobs started before are followed to their end by drain.
func (l *load) run(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	l.findChats(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { l.paced(ctx, 40, 32, l.cachedRead) })
	wg.Go(func() { l.paced(ctx, 10, 16, l.passthroughRead) })
	wg.Go(func() { l.paced(ctx, 1, 8, l.send) })
	for i, sid := range l.f.whSessions {
		ws := &whSession{index: i, accepted: map[int]time.Time{}, spooled: map[int]bool{}, by: map[int]string{}}
		l.webhooks[sid] = ws
		wg.Go(func() { l.webhookStream(ctx, sid, ws, float64(l.o.webhookRate)/float64(len(l.f.whSessions))) })
	}
	for range 2 {
		l.syncWG.Go(func() { l.syncSlot(ctx) })
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// findChats reads a few chat ids of readSession (through the gateway) for the messages reads.
func (l *load) findChats(ctx context.Context) {
	for try := 0; try < 20 && len(l.chatIDs) == 0; try++ {
		a := l.do(ctx, kindCached, nil, http.MethodGet, "/v1/sessions/"+readSession+"/chats?page=1&limit=5", nil, nil)
		var out struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if a.status == http.StatusOK && json.Unmarshal(a.body, &out) == nil {
			for _, c := range out.Data {
				l.chatIDs = append(l.chatIDs, c.ID)
			}
		}
		if len(l.chatIDs) == 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// paced calls fn perSecond times a second, at most inFlight at once (a tick that finds them all
// busy is skipped: the load is open-loop, a slow gateway is not given a rest).
func (l *load) paced(ctx context.Context, perSecond, inFlight int, fn func(ctx context.Context, n int)) {
	sem := make(chan struct{}, inFlight)
	t := time.NewTicker(time.Second / time.Duration(perSecond))
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case sem <- struct{}{}:
			wg.Go(func() {
				defer func() { <-sem }()
				fn(ctx, n)
			})
		default:
		}
	}
}

func (l *load) cachedRead(ctx context.Context, n int) {
	paths := []string{
		"/v1/sessions",
		"/v1/sessions/" + readSession,
		"/v1/sessions/" + readSession + "/contacts?page=1&limit=50",
		"/v1/sessions/" + readSession + "/contacts?page=2&limit=50",
		"/v1/sessions/" + readSession + "/chats?page=1&limit=20",
	}
	for _, c := range l.chatIDs {
		paths = append(paths, "/v1/sessions/"+readSession+"/chats/"+c+"/messages?limit=20")
	}
	l.do(ctx, kindCached, nil, http.MethodGet, paths[n%len(paths)], nil, nil)
}

func (l *load) passthroughRead(ctx context.Context, n int) {
	paths := []string{
		"/api/sessions",
		"/api/sessions/" + readSession,
		"/api/contacts/" + readSession + "?page=1&limit=20",
		"/api/messages/" + readSession + "/chats?page=1&limit=20",
	}
	l.do(ctx, kindPassthrough, nil, http.MethodGet, paths[n%len(paths)], nil, nil)
}

// sendLateUse is when a key is used for the third time: after the idempotency lease (2 min) of
// a use whose replica died has lapsed, so a duplicate would show.
const sendLateUse = 130 * time.Second

// send uses a new Idempotency-Key twice at once on two replicas, and once more sendLateUse later
// when the run lasts that long.
func (l *load) send(ctx context.Context, n int) {
	k := &sendKey{key: fmt.Sprintf("soak-%d-%s", n, childproc.Fake("")[:8]), text: fmt.Sprintf("soak send %d", n)}
	l.sendsMu.Lock()
	l.sends = append(l.sends, k)
	l.sendsMu.Unlock()
	body, _ := json.Marshal(map[string]string{"to": "+" + sendTo, "text": k.text})
	hdr := map[string]string{"Idempotency-Key": k.key}
	use := func(ctx context.Context, r *replica) {
		a := l.do(ctx, kindSend, r, http.MethodPost, "/v1/sessions/"+sendSession+"/messages", body, hdr)
		l.sendsMu.Lock()
		k.statuses = append(k.statuses, a.status)
		l.sendsMu.Unlock()
	}
	first := l.pick(-1)
	second := l.pick(first.i)
	var wg sync.WaitGroup
	wg.Go(func() { use(ctx, first) })
	wg.Go(func() { use(ctx, second) })
	wg.Wait()
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) < sendLateUse+5*time.Second {
		return
	}
	l.sendWG.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(sendLateUse):
		}
		use(ctx, nil)
	})
}

// webhookStream sends message events of one session at perSecond, one in flight, each retried on
// another replica until a 2xx (as a careful upstream would; Inbox Hub itself does not retry), so
// the order in which the gateway accepted them is the order of seq.
func (l *load) webhookStream(ctx context.Context, sid string, ws *whSession, perSecond float64) {
	interval := time.Duration(float64(time.Second) / perSecond)
	next := time.Now()
	for seq := 1; ; seq++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		} else if d < -time.Second {
			next = time.Now() // too far behind: do not burst to catch up
		}
		next = next.Add(interval)
		l.whMu.Lock()
		ws.sent = seq
		l.whMu.Unlock()
		l.deliverWebhook(sid, ws, seq)
	}
}

// messageID is the whatsappMessageId of a session's seq-th event (hex, as WhatsApp's look).
func messageID(session, seq int) string { return fmt.Sprintf("3EB0%04X%010X", session, seq) }

// parseMessageID is messageID's inverse.
func parseMessageID(id string) (session, seq int, ok bool) {
	if len(id) != 18 || id[:4] != "3EB0" {
		return 0, 0, false
	}
	a, err1 := strconv.ParseInt(id[4:8], 16, 32)
	b, err2 := strconv.ParseInt(id[8:], 16, 64)
	return int(a), int(b), err1 == nil && err2 == nil
}

// deliverWebhook posts one signed message.received until a replica accepts it (for at most two
// minutes, even past the end of the load: a delivery is never left half-done).
func (l *load) deliverWebhook(sid string, ws *whSession, seq int) {
	chat := fmt.Sprintf("3460%07d@s.whatsapp.net", 1000+ws.index)
	body, _ := json.Marshal(map[string]any{"event": "message.received", "data": map[string]any{
		"sessionId": sid, "message": map[string]any{"whatsappMessageId": messageID(ws.index, seq), "chatId": chat,
			"from": chat, "to": sid, "content": "soak webhook", "timestamp": time.Now().Unix(), "type": "text",
			"has_attachment": false, "media": nil}}})
	mac := hmac.New(sha256.New, []byte(l.f.whSecret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	last := -1
	for ctx.Err() == nil {
		r := l.pick(last)
		a := l.do(ctx, kindWebhook, r, http.MethodPost, "/webhooks/inbox-hub", body, map[string]string{
			"X-Webhook-Event": "message.received", "X-Webhook-Session": sid,
			"X-Webhook-Timestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "X-Webhook-Signature": sig})
		switch {
		case a.status/100 == 2:
			var rc struct {
				Data struct {
					Spooled bool `json:"spooled"`
				} `json:"data"`
			}
			_ = json.Unmarshal(a.body, &rc)
			l.whMu.Lock()
			if _, seen := ws.accepted[seq]; !seen {
				ws.accepted[seq] = time.Now()
				ws.by[seq] = fmt.Sprintf("replica %d, request %s", a.replica, a.header.Get("X-Request-ID"))
			}
			if rc.Data.Spooled {
				ws.spooled[seq] = true
			}
			l.whMu.Unlock()
			return
		case a.status/100 == 4 && a.status != http.StatusTooManyRequests && a.status != http.StatusRequestTimeout:
			l.whMu.Lock()
			ws.rejected = append(ws.rejected, seq)
			l.whMu.Unlock()
			return
		}
		last = r.i
		time.Sleep(50 * time.Millisecond)
	}
	l.whMu.Lock()
	ws.gaveUp = append(ws.gaveUp, seq)
	l.whMu.Unlock()
}

// followAfterLoad bounds how long a job still running when the load ends is followed.
const followAfterLoad = 10 * time.Minute

// syncSlot starts a sync on a fresh session, follows it to its end, and starts the next, while
// ctx lasts; the job running when ctx ends is followed to its end (at most followAfterLoad more).
func (l *load) syncSlot(ctx context.Context) {
	for ctx.Err() == nil {
		i := int(l.syncNext.Add(1)) - 1
		if i >= len(l.f.syncSessions) {
			l.logf("every prepared session has been synced; this slot stops")
			return
		}
		j := &jobRun{session: l.f.syncSessions[i], started: time.Now()}
		l.jobsMu.Lock()
		l.jobs = append(l.jobs, j)
		l.jobsMu.Unlock()
		if !l.startJob(ctx, j) {
			return
		}
		limit := time.Now().Add(time.Hour)
		if end, ok := ctx.Deadline(); ok {
			limit = end.Add(followAfterLoad)
		}
		follow, cancel := context.WithDeadline(context.Background(), limit)
		l.followJob(follow, j)
		cancel()
	}
}

// startJob asks for the sync until a replica answers 2xx with the job.
func (l *load) startJob(ctx context.Context, j *jobRun) bool {
	for ctx.Err() == nil {
		a := l.do(ctx, kindSync, nil, http.MethodPost, "/v1/sessions/"+j.session+"/sync", []byte(`{}`), nil)
		var out struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if a.status/100 == 2 && json.Unmarshal(a.body, &out) == nil && out.Data.ID != "" {
			l.jobsMu.Lock()
			j.id = out.Data.ID
			l.jobsMu.Unlock()
			return true
		}
		time.Sleep(time.Second)
	}
	l.jobsMu.Lock()
	j.err = "not started before the load ended"
	l.jobsMu.Unlock()
	return false
}

// followJob reads the job every second until it ends.
func (l *load) followJob(ctx context.Context, j *jobRun) {
	for ctx.Err() == nil {
		a := l.do(ctx, kindSync, nil, http.MethodGet, "/v1/sync-jobs/"+j.id, nil, nil)
		var out struct {
			Data struct {
				State    string          `json:"state"`
				Attempts int             `json:"attempts"`
				Progress json.RawMessage `json:"progress"`
			} `json:"data"`
		}
		if a.status == http.StatusOK && json.Unmarshal(a.body, &out) == nil {
			l.jobsMu.Lock()
			j.state, j.attempts = out.Data.State, out.Data.Attempts
			_ = json.Unmarshal(out.Data.Progress, &j.progress)
			final := j.state == "succeeded" || j.state == "partial" || j.state == "failed" || j.state == "canceled"
			if final {
				j.ended = time.Now()
			}
			l.jobsMu.Unlock()
			if final {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	l.jobsMu.Lock()
	j.err = "still running " + followAfterLoad.String() + " after the load ended"
	l.jobsMu.Unlock()
}

// drain waits, after the load, for the sync jobs to end, the late sends to be made and every
// accepted webhook to reach the CRM (or for the CRM to get nothing new for a minute).
func (l *load) drain(ctx context.Context) error {
	l.syncWG.Wait()
	l.sendWG.Wait()
	want := 0
	l.whMu.Lock()
	for _, ws := range l.webhooks {
		want += len(ws.accepted)
	}
	l.whMu.Unlock()
	last, lastChange := -1, time.Now()
	for {
		got := l.f.crm.messageEvents()
		if got >= want {
			return nil
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		if time.Since(lastChange) > time.Minute {
			l.logf("the CRM got nothing new for a minute: %d of %d accepted message events", got, want)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// transportError names what went wrong with a request that got no answer.
func transportError(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "answer cut"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "transport error"
}
