package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrSpoolFull: Redis is unreachable and the local spool holds SpoolMaxBytes already; the delivery
// is refused (503) rather than acknowledged and lost.
var ErrSpoolFull = errors.New("webhooks: Redis is unreachable and the webhook spool is full")

// spooled is one authentic delivery as kept on disk: what Parse needs again, and the signature,
// which is checked again before it is replayed (a file put there by another local user is refused).
type spooled struct {
	Event     string `json:"event,omitempty"`
	Session   string `json:"session,omitempty"`
	SentAt    int64  `json:"sentAt"` // Unix milliseconds
	Signature string `json:"signature"`
	Body      []byte `json:"body"`
}

// spoolSuffix ends the name of every spooled delivery; the name before it is a hex sequence
// number, so that names sort in arrival order.
const spoolSuffix = ".delivery"

// spool is a directory of deliveries waiting for Redis, one file each, bounded in bytes.
//
// put writes a delivery to a temporary file, fsyncs it, renames it into place and fsyncs the
// directory: when put returns, the delivery survives a crash of the process (and of the machine,
// when the directory is on persistent storage). Files are readable by the gateway's user only.
type spool struct {
	dir string
	max int64

	mu    sync.Mutex
	size  int64 // bytes of the deliveries held
	count int
	next  uint64 // sequence number of the next delivery
}

// openSpool opens (creating it, private) the spool directory and takes stock of what a previous
// run left in it; unfinished temporary files are removed.
func openSpool(dir string, maxBytes int64) (*spool, []string, error) {
	sp := &spool{dir: dir, max: maxBytes}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("webhooks: spool directory: %w", err)
	}
	var warnings []string
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			warnings = append(warnings, "the spool directory is open to other users and cannot be made private: "+err.Error())
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("webhooks: spool directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		seq, ok := spoolSeq(name)
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		sp.size += info.Size()
		sp.count++
		sp.next = max(sp.next, seq+1)
	}
	return sp, warnings, nil
}

// spoolSeq reads the sequence number of a spooled delivery's file name.
func spoolSeq(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, spoolSuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(hex, 16, 64)
	return n, err == nil
}

// empty reports whether no delivery waits.
func (sp *spool) empty() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.count == 0
}

// put keeps a delivery durably, or answers ErrSpoolFull.
func (sp *spool) put(d spooled) error {
	raw, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("webhooks: spool: encode: %w", err)
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.size+int64(len(raw)) > sp.max {
		return ErrSpoolFull
	}
	name := fmt.Sprintf("%016x%s", sp.next, spoolSuffix)
	if err := writeDurably(sp.dir, name, raw); err != nil {
		return fmt.Errorf("webhooks: spool: %w", err)
	}
	sp.next++
	sp.size += int64(len(raw))
	sp.count++
	return nil
}

// writeDurably writes name in dir through a temporary file, fsyncing the file and the directory.
func writeDurably(dir, name string, data []byte) (err error) {
	tmp := filepath.Join(dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// list returns the names of the waiting deliveries, oldest first.
func (sp *spool) list() ([]string, error) {
	entries, err := os.ReadDir(sp.dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if _, ok := spoolSeq(e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// read returns a waiting delivery.
func (sp *spool) read(name string) (spooled, error) {
	var d spooled
	raw, err := os.ReadFile(filepath.Join(sp.dir, name))
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("unreadable: %w", err)
	}
	return d, nil
}

// remove drops a delivery that was handed to Redis (or refused for good).
func (sp *spool) remove(name string) error {
	path := filepath.Join(sp.dir, name)
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	sp.mu.Lock()
	sp.size = max(sp.size-info.Size(), 0)
	sp.count = max(sp.count-1, 0)
	sp.mu.Unlock()
	return nil
}

// sentAtOf is a spooled delivery's X-Webhook-Timestamp.
func (d spooled) sentAtOf() time.Time { return time.UnixMilli(d.SentAt) }

// openSpool opens the service's spool and starts its replay, which runs until Shutdown.
func (s *Service) openSpool() error {
	sp, warnings, err := openSpool(s.cfg.SpoolDir, s.cfg.SpoolMaxBytes)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		s.log.Warn("webhook spool: " + w)
	}
	if !sp.empty() {
		s.log.Info("webhook spool: deliveries left by a previous run will be handed to Redis", "count", sp.count)
	}
	ctx, stop := context.WithCancel(context.Background())
	s.spool, s.spoolKick, s.spoolStop, s.spoolEnded = sp, make(chan struct{}, 1), stop, make(chan struct{})
	if s.cfg.Registerer != nil {
		waiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "webhook_spool_deliveries",
			Help: "Webhook deliveries kept on this replica's disk, waiting for Redis.",
		}, func() float64 {
			sp.mu.Lock()
			defer sp.mu.Unlock()
			return float64(sp.count)
		})
		if err := s.cfg.Registerer.Register(waiting); err != nil {
			stop()
			return fmt.Errorf("webhooks: metrics: %w", err)
		}
	}
	go func() {
		defer close(s.spoolEnded)
		s.replaySpool(ctx)
	}()
	return nil
}

// kickSpool asks the replay to look at the spool now.
func (s *Service) kickSpool() {
	select {
	case s.spoolKick <- struct{}{}:
	default:
	}
}

// replaySpool hands the spooled deliveries to Redis, oldest first, when kicked and every SpoolRetry
// while any wait, until ctx ends.
func (s *Service) replaySpool(ctx context.Context) {
	t := time.NewTicker(s.cfg.SpoolRetry)
	defer t.Stop()
	failing := false
	for {
		if !s.spool.empty() {
			err := s.drainSpool(ctx)
			switch {
			case err != nil && !failing && ctx.Err() == nil:
				s.log.Warn("webhook spool: Redis is unreachable; deliveries wait on disk", "error", err.Error())
			case err == nil && failing:
				s.log.Info("webhook spool: Redis is back; the waiting deliveries were handed to it")
			}
			failing = err != nil
		}
		select {
		case <-ctx.Done():
			return
		case <-s.spoolKick:
		case <-t.C:
		}
	}
}

// drainSpool replays the waiting deliveries in order until the spool is empty or Redis fails (the
// error). A delivery that cannot be replayed (unreadable, its signature no longer matching, no
// longer valid) is dropped with a warning.
func (s *Service) drainSpool(ctx context.Context) error {
	for ctx.Err() == nil {
		names, err := s.spool.list()
		if err != nil {
			return fmt.Errorf("list the spool: %w", err)
		}
		if len(names) == 0 {
			return nil
		}
		for _, name := range names {
			if err := s.replayOne(ctx, name); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// replayOne hands one spooled delivery to Redis and removes it; the error is Redis's.
func (s *Service) replayOne(ctx context.Context, name string) error {
	d, err := s.spool.read(name)
	if err == nil && !VerifySignature(s.cfg.Secret, d.Body, d.Signature) {
		err = errors.New("its signature does not match its body under the current secret")
	}
	if err == nil {
		var p Parsed
		if p, err = Parse(d.Event, d.Session, d.sentAtOf(), d.Body); err == nil && !p.Ignored {
			s.noteTrouble() // the drainers hold while spooled deliveries take their places
			if _, _, err = s.ingest(ctx, p); err != nil && !errors.Is(err, ErrInvalid) {
				return err
			}
		}
	}
	if err != nil {
		s.log.Warn("webhook spool: a delivery is dropped", "file", name, "error", err.Error())
	}
	if rerr := s.spool.remove(name); rerr != nil {
		return fmt.Errorf("remove a replayed delivery: %w", rerr)
	}
	return nil
}
