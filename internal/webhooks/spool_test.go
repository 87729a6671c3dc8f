package webhooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
)

// outageService is a service over a private redis-server that the test stops and restarts, with
// its spool in dir.
func outageService(t *testing.T, rs *redistest.Server, dir string, mod func(*Config)) *testService {
	t.Helper()
	opts, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return newTestService(t, rdb, true, func(c *Config) {
		c.SpoolDir = dir
		c.SpoolRetry = 50 * time.Millisecond
		if mod != nil {
			mod(c)
		}
	})
}

// spoolFiles lists the deliveries waiting in dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "*"+spoolSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return matches
}

// TestSpoolKeepsDeliveriesWhileRedisIsDown: with Redis stopped, authentic deliveries are answered
// (spooled, on disk, private) instead of failing; when Redis restarts they are handed to it in
// arrival order and forwarded, and the spool empties. Deliveries that arrive while some wait join
// the queue behind them.
func TestSpoolKeepsDeliveriesWhileRedisIsDown(t *testing.T) {
	rs := redistest.Start(t)
	dir := filepath.Join(t.TempDir(), "spool")
	sink := newCRMSink(t)
	ts := outageService(t, rs, dir, sink.forwardTo)
	ctx := context.Background()
	if _, err := ts.Receive(ctx, signed(messageBody("abc_123", "M000"))); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 3*time.Second, "the first message forwarded", func() bool { return len(sink.received()) == 1 })

	rs.Stop()
	for i := 1; i <= 3; i++ {
		rec, err := ts.Receive(ctx, signed(messageBody("abc_123", fmt.Sprintf("M%03d", i))))
		if err != nil || !rec.Spooled || !ValidEventID(rec.EventID) || rec.SessionID != "abc_123" {
			t.Fatalf("delivery %d with Redis down: %+v %v", i, rec, err)
		}
	}
	ts.statuses.set("abc_123", "disconnected")
	if rec, err := ts.Receive(ctx, signed(sessionBody("session.disconnected", "abc_123"))); err != nil || !rec.Spooled || !rec.Hint {
		t.Fatalf("session event with Redis down: %+v %v", rec, err)
	}
	files := spoolFiles(t, dir)
	if len(files) != 4 {
		t.Fatalf("%d files in the spool, want 4", len(files))
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool directory mode %v %v, want 0700", fi.Mode().Perm(), err)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v %v, want 0600", f, fi.Mode().Perm(), err)
		}
	}
	if got := ts.counter("webhooks_received_total", map[string]string{"result": "spooled"}); got != 4 {
		t.Errorf("spooled deliveries counted %v, want 4", got)
	}

	rs.Restart(t)
	// While the spool drains, a new delivery queues behind the waiting ones (or, once they are
	// gone, goes straight to Redis): either way it is forwarded after them.
	if _, err := ts.Receive(ctx, signed(messageBody("abc_123", "M004"))); err != nil {
		t.Fatal(err)
	}
	wait.UntilShowing(t, 20*time.Second, "six events forwarded", func() bool { return len(sink.received()) == 6 },
		func() string {
			return fmt.Sprintf("%d events forwarded (%+v), %d deliveries left in the spool",
				len(sink.received()), sink.received(), len(spoolFiles(t, dir)))
		})
	wait.Until(t, 3*time.Second, "the session event confirmed", func() bool {
		st, _ := ts.rdb.Get(ctx, ts.k.status("abc_123")).Result()
		return st == StatusDisconnected
	})
	var ids []string
	for _, ev := range sink.received() {
		if ev.Type == TypeMessageReceived {
			ids = append(ids, ev.Data.Message.ID)
		}
	}
	if want := []string{"M000", "M001", "M002", "M003", "M004"}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("messages forwarded %v, want %v", ids, want)
	}
	if n := len(spoolFiles(t, dir)); n != 0 {
		t.Errorf("%d deliveries left in the spool", n)
	}
}

// TestSpoolSurvivesARestart: deliveries spooled by a replica that then stops are handed to Redis
// by the next replica that opens the directory.
func TestSpoolSurvivesARestart(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	sink := newCRMSink(t)
	first := outageService(t, rs, dir, nil)
	rs.Stop()
	if rec, err := first.Receive(context.Background(), signed(messageBody("abc_123", "3EB0CRASH"))); err != nil || !rec.Spooled {
		t.Fatalf("%+v %v", rec, err)
	}
	first.Shutdown()
	rs.Restart(t)
	second := outageService(t, rs, dir, sink.forwardTo)
	wait.Until(t, 5*time.Second, "the spooled message forwarded", func() bool { return len(sink.received()) == 1 })
	if ev := sink.received()[0]; ev.Data.Message == nil || ev.Data.Message.ID != "3EB0CRASH" {
		t.Fatalf("%+v", ev)
	}
	wait.Until(t, time.Second, "the spool emptied", func() bool { return len(spoolFiles(t, dir)) == 0 })
	_ = second
}

// TestSpoolIsBounded: a full spool refuses the delivery (ErrSpoolFull: 503) instead of
// acknowledging what it cannot keep.
func TestSpoolIsBounded(t *testing.T) {
	rs := redistest.Start(t)
	ts := outageService(t, rs, t.TempDir(), func(c *Config) { c.SpoolMaxBytes = 2048 })
	rs.Stop()
	kept := 0
	for i := range 20 {
		_, err := ts.Receive(context.Background(), signed(messageBody("abc_123", fmt.Sprintf("FULL%02d", i))))
		if errors.Is(err, ErrSpoolFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kept++
	}
	if kept == 0 || kept == 20 {
		t.Fatalf("%d deliveries kept before the spool was full", kept)
	}
	if got := ts.counter("webhooks_received_total", map[string]string{"result": "spool_full"}); got != 1 {
		t.Errorf("spool_full counted %v", got)
	}
}

// TestSpoolRefusesForgedFiles: a file another local user drops in the spool directory is not
// replayed unless it carries a valid signature of its body under the webhook secret.
func TestSpoolRefusesForgedFiles(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	body := []byte(messageBody("abc_123", "3EB0FORGED"))
	forged := fmt.Sprintf(`{"sentAt": %d, "signature": %q, "body": %q}`, time.Now().UnixMilli(),
		signBody("not-the-secret", body), body)
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x%s", 7, spoolSuffix)), []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := newCRMSink(t)
	ts := outageService(t, rs, dir, sink.forwardTo)
	wait.Until(t, 3*time.Second, "the forged file dropped", func() bool { return len(spoolFiles(t, dir)) == 0 })
	if _, err := ts.Receive(context.Background(), signed(messageBody("abc_123", "3EB0REAL"))); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 3*time.Second, "the real message forwarded", func() bool { return len(sink.received()) == 1 })
	if id := sink.received()[0].Data.Message.ID; id != "3EB0REAL" {
		t.Fatalf("forwarded %s", id)
	}
}
