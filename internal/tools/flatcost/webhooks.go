package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/sim"
)

// hookSessions is how many sessions the webhooks come from (round robin).
const hookSessions = 20

// hookResult is one webhook case: the gateway's CPU over the run, and per accepted delivery.
type hookResult struct {
	rate               int
	sent, accepted     int64
	forwarded          int64
	sendFor, window    time.Duration // sending time; from the first send until every event reached the CRM
	cpu, idlePerSecond time.Duration
	ackP50, ackP99     time.Duration
}

// perEvent is the gateway's CPU per accepted delivery, all of it and without the idle rate.
func (r hookResult) perEvent() (all, net time.Duration) {
	if r.accepted == 0 {
		return 0, 0
	}
	idle := time.Duration(float64(r.idlePerSecond) * r.window.Seconds())
	return r.cpu / time.Duration(r.accepted), max(0, r.cpu-idle) / time.Duration(r.accepted)
}

// measureWebhooks sends signed webhooks to a fresh gateway at the low and at the high rate for the
// same time, and compares the gateway's CPU time per accepted delivery (receiving, queueing in
// Redis, processing and forwarding each event to the CRM stand-in).
func measureWebhooks(ctx context.Context, h *harness, o options) error {
	var results []hookResult
	for _, rate := range []int{o.lowRate, o.highRate} {
		r, err := hookCase(ctx, h, o, rate)
		if err != nil {
			return fmt.Errorf("%d/s: %w", rate, err)
		}
		results = append(results, r)
	}
	fmt.Printf("\nwebhooks, %d s of sending each, %s, %s\n", o.hookSeconds, stamp(), loadavg())
	fmt.Printf("%-8s %-9s %-9s %-9s %-9s %-10s %-11s %-13s %-13s %s\n", "rate", "sent", "accepted", "to CRM", "window",
		"CPU", "idle CPU/s", "CPU/event", "minus idle", "ack p50 / p99")
	for _, r := range results {
		all, net := r.perEvent()
		fmt.Printf("%-8s %-9d %-9d %-9d %-9s %-10s %-11s %-13s %-13s %s / %s\n", fmt.Sprintf("%d/s", r.rate), r.sent, r.accepted,
			r.forwarded, r.window.Round(10*time.Millisecond), r.cpu, r.idlePerSecond.Round(time.Millisecond),
			all.Round(time.Microsecond), net.Round(time.Microsecond), r.ackP50.Round(10*time.Microsecond), r.ackP99.Round(10*time.Microsecond))
	}
	lowAll, lowNet := results[0].perEvent()
	highAll, highNet := results[1].perEvent()
	fmt.Printf("CPU per event ratio %d/s / %d/s: %.2f (%.2f without the idle rate) (goal: flat, near 1)\n\n",
		o.highRate, o.lowRate, float64(highAll)/float64(lowAll), float64(highNet)/float64(lowNet))
	return nil
}

func hookCase(ctx context.Context, h *harness, o options, rate int) (hookResult, error) {
	res := hookResult{rate: rate}
	name := fmt.Sprintf("webhooks-%d", rate)
	if err := h.flushRedis(ctx); err != nil {
		return res, err
	}
	h.crm.reset()
	simP, simURL, err := h.startSim(ctx, name, simData{contacts: 10, chats: 5, perChat: 5})
	if err != nil {
		return res, err
	}
	defer simP.Stop(10 * time.Second)
	keyFile, _, err := h.writeKeys(name, 1, "sessions:read")
	if err != nil {
		return res, err
	}
	gw, gwURL, err := h.startGateway(ctx, name, simURL, keyFile, "GATEWAY_SYNC_WORKERS=0")
	if err != nil {
		return res, err
	}
	defer gw.Stop(30 * time.Second)

	// The gateway's own rate when idle (pollers, leases), to set apart from the events' cost.
	const idleFor = 5 * time.Second
	time.Sleep(2 * time.Second) // let startup work end
	c0 := gw.CPU()
	time.Sleep(idleFor)
	res.idlePerSecond = time.Duration(float64(gw.CPU()-c0) / idleFor.Seconds())

	n := rate * o.hookSeconds
	c0, t0 := gw.CPU(), time.Now()
	acks := sendHooks(ctx, gwURL, h.whSecret, rate, n, &res)
	res.sendFor = time.Since(t0)
	// Every accepted event must reach the CRM; wait for it (bounded).
	deadline := time.Now().Add(2 * time.Minute)
	for h.crm.events.Load() < res.accepted && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	res.window, res.cpu = time.Since(t0), gw.CPU()-c0
	res.forwarded = h.crm.events.Load()
	slices.Sort(acks)
	if len(acks) > 0 {
		res.ackP50, res.ackP99 = acks[len(acks)/2], acks[min(len(acks)-1, len(acks)*99/100)]
	}
	h.logf("%s: %d sent in %s, %d accepted, %d reached the CRM in %s; gateway CPU %s (idle %s/s); bad signatures %d",
		name, res.sent, res.sendFor.Round(time.Millisecond), res.accepted, res.forwarded, res.window.Round(time.Millisecond),
		res.cpu, res.idlePerSecond, h.crm.badSig.Load())
	return res, nil
}

// sendHooks sends n signed message webhooks at rate per second (open loop: on schedule, however
// long the answers take, with up to 256 in flight) and returns the acknowledgement times.
func sendHooks(ctx context.Context, gwURL, secret string, rate, n int, res *hookResult) []time.Duration {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	work := make(chan int, 256)
	var (
		mu       sync.Mutex
		acks     = make([]time.Duration, 0, n)
		sent     atomic.Int64
		accepted atomic.Int64
		wg       sync.WaitGroup
	)
	for range 256 {
		wg.Go(func() {
			for i := range work {
				d, ok := sendHook(ctx, client, gwURL, secret, i)
				sent.Add(1)
				if ok {
					accepted.Add(1)
				}
				mu.Lock()
				acks = append(acks, d)
				mu.Unlock()
			}
		})
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		work <- i
	}
	close(work)
	wg.Wait()
	res.sent, res.accepted = sent.Load(), accepted.Load()
	return acks
}

// sendHook posts delivery i (a new message, its own id) and says whether it was accepted (202).
func sendHook(ctx context.Context, c *http.Client, gwURL, secret string, i int) (time.Duration, bool) {
	sid := fmt.Sprintf("flat_%02d", i%hookSessions)
	body := fmt.Sprintf(`{"event": "message.received", "data": {"sessionId": %q, "message": {"whatsappMessageId": "3EB0F%09d", `+
		`"content": "flat load", "chatId": "34600111222@s.whatsapp.net", "from": "34600111222@s.whatsapp.net", "type": "text"}}}`, sid, i)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gwURL+"/webhooks/inbox-hub", strings.NewReader(body))
	if err != nil {
		return 0, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Webhook-Signature", sim.Sign(secret, []byte(body)))
	req.Header.Set("X-Webhook-Timestamp", strconv.FormatInt(time.Now().UnixMilli(), 10))
	t0 := time.Now()
	resp, err := c.Do(req)
	d := time.Since(t0)
	if err != nil {
		return d, false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return d, resp.StatusCode == http.StatusAccepted
}
