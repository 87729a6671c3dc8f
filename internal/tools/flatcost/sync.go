package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/syncjob"
)

// todayScale is the data of today's scale run (TestSyncAtScale at SYNC_SCALE=1).
var todayScale = simData{contacts: 25_000, chats: 2_000, perChat: 30}

// syncResult is one sync case: the gateway's resident memory before the job and at its peak.
type syncResult struct {
	scale            float64
	idleRSS, peakRSS int64 // VmRSS before the job, VmHWM after it
	maxRSS           int64 // getrusage ru_maxrss of the ended process
	took             time.Duration
	items            map[string]int64
	state            string
}

// measureSync runs a full sync of 1x and of scaleBig x today's scale run, each in a gateway
// process of its own (so peak RSS is the job's), against a simulator process holding the data,
// to the counting CRM sink.
func measureSync(ctx context.Context, h *harness, o options) error {
	var results []syncResult
	for _, f := range []float64{1, o.scaleBig} {
		r, err := syncCase(ctx, h, f)
		if err != nil {
			return fmt.Errorf("%gx: %w", f, err)
		}
		results = append(results, r)
	}
	small, big := results[0], results[1]
	fmt.Printf("\nsync, full, %s, %s\n", stamp(), loadavg())
	fmt.Printf("%-6s %-12s %-12s %-12s %-10s %-10s %s\n", "scale", "idle RSS", "peak VmHWM", "ru_maxrss", "took", "state", "items at the sink")
	for _, r := range results {
		fmt.Printf("%-6s %-12s %-12s %-12s %-10s %-10s %v\n", fmt.Sprintf("%gx", r.scale), mib(r.idleRSS), mib(r.peakRSS),
			mib(r.maxRSS), r.took.Round(time.Millisecond), r.state, r.items)
	}
	fmt.Printf("peak RSS ratio %gx / 1x: %.2f (goal < 1.3)\n\n", o.scaleBig, float64(big.maxRSS)/float64(small.maxRSS))
	return nil
}

func syncCase(ctx context.Context, h *harness, f float64) (syncResult, error) {
	res := syncResult{scale: f}
	d := simData{contacts: int(float64(todayScale.contacts) * f), chats: int(float64(todayScale.chats) * f), perChat: todayScale.perChat}
	name := fmt.Sprintf("sync-%gx", f)
	if err := h.flushRedis(ctx); err != nil {
		return res, err
	}
	h.crm.reset()
	h.logf("%s: starting the simulator with %d contacts, %d chats, %d messages", name, d.contacts, d.chats, d.chats*d.perChat)
	sim, simURL, err := h.startSim(ctx, name, d)
	if err != nil {
		return res, err
	}
	defer sim.Stop(10 * time.Second)
	keyFile, keys, err := h.writeKeys(name, 1, "sync", "sessions:read")
	if err != nil {
		return res, err
	}
	gw, gwURL, err := h.startGateway(ctx, name, simURL, keyFile, "GATEWAY_SYNC_WORKERS=1", "GATEWAY_WEBHOOK_WORKERS=0")
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			gw.Stop(30 * time.Second)
		}
	}()
	res.idleRSS = gw.Status("VmRSS")
	c := &http.Client{Timeout: 30 * time.Second}
	var started struct{ Data syncjob.Job }
	status, err := call(ctx, c, http.MethodPost, gwURL+"/v1/sessions/demo_session/sync", keys[0].key, []byte(`{}`), &started)
	if err != nil || status/100 != 2 {
		return res, fmt.Errorf("starting the job: %d %v", status, err)
	}
	t0 := time.Now()
	job, err := followJob(ctx, c, gwURL, keys[0].key, started.Data.ID)
	if err != nil {
		return res, err
	}
	res.took, res.state = time.Since(t0), job.State
	res.peakRSS = gw.Status("VmHWM")
	gw.Stop(30 * time.Second)
	stopped = true
	res.maxRSS = gw.MaxRSS()
	res.items = h.crm.itemCounts()
	h.logf("%s: %s in %s, peak RSS %s (idle %s), sink %v, bad signatures %d", name, res.state,
		res.took.Round(time.Millisecond), mib(res.maxRSS), mib(res.idleRSS), res.items, h.crm.badSig.Load())
	return res, nil
}

// followJob polls the job until it ends.
func followJob(ctx context.Context, c *http.Client, gwURL, key, id string) (syncjob.Job, error) {
	for {
		var got struct{ Data syncjob.Job }
		status, err := call(ctx, c, http.MethodGet, gwURL+"/v1/sync-jobs/"+id, key, nil, &got)
		if err != nil || status != http.StatusOK {
			return got.Data, fmt.Errorf("job %s: %d %v", id, status, err)
		}
		if syncjob.Final(got.Data.State) {
			return got.Data, nil
		}
		select {
		case <-ctx.Done():
			return got.Data, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
