// Package webhooks is "webhooks in, events out" (docs/design.md): it receives Inbox Hub's
// webhooks, keeps the gateway's view of each session current, forwards a normalised event stream
// to the CRM, and polls session status so that a lost webhook costs at most one interval.
//
// In: Receive verifies a delivery (X-Webhook-Signature, an HMAC-SHA256 of the raw body under
// INBOXHUB_WEBHOOK_SECRET, compared in constant time; X-Webhook-Timestamp within MaxAge in the past
// and MaxFuture in the future), and parses either payload shape into an Event (see Parse: nothing
// the signature does not cover decides anything). A message, contact or conversation event is
// accepted once: one Redis script claims the event's dedupe key (SET NX with DedupeTTL; the key is
// the event id, derived from signed content only: whatsappMessageId for messages, else a hash of
// the body) and appends the event to its session's outbox; a job queue task (internal/jobs, queue DefaultQueue)
// then drops the session's cached lists. The webhook is answered within milliseconds.
//
// Session events are hints. Their signed body carries no id and no time, so a captured delivery
// re-sent later cannot be told from a genuine repeat (a session that connects again). The hint is
// kept (the latest per session), and the confirmer reads the session's status from the upstream
// (Statuses, at most ConfirmRate per session fleet-wide, within the upstream quota as background
// work); only when that status differs from the last one known does the gateway act: it records
// it, drops the session's cached reads, forwards the session event, and queues the automatic sync
// when the session connected. A replayed hint thus costs at most a rate-limited read and changes
// nothing.
//
// Out: when EventsURL is set, every replica that runs workers forwards outboxes. One drainer per
// session at a time, fleet-wide (a lock in Redis with a lease renewed while it works), delivers the
// session's events one by one in outbox order, signed like the sync batches (crm.Sign), each
// retried with exponential backoff and full jitter and moved to the dead letters after Attempts
// tries (at once when the CRM refuses it with a 4xx other than 408, 425 and 429). A drainer that
// dies leaves its lock to expire; every replica sweeps the sessions with waiting events every
// SweepInterval, so another one resumes. An event whose answer was lost may be delivered twice:
// its id is stable, for the CRM to ignore repeats. Dead letters are listed and replayed by the
// admin routes; a replayed event goes to the tail of its session's outbox.
//
// Confirmer: every replica that runs the workers confirms the hints it receives at once, and
// sweeps every SweepInterval for hints left over (received by a replica that does not run them, or
// refused by the rate).
//
// Poller: one replica at a time (a leader lease in Redis, renewed while held and released on
// shutdown) lists every session each PollInterval with a background-priority context and, for
// every status that differs from the last one known (kept per session in Redis, written by
// webhooks too), emits the session event through the same pipeline.
//
// It must not act on a delivery that is not authentic (signature and timestamp are checked before
// the body is parsed), do slow work before answering the upstream, read session state from the
// cache (the poller reads the upstream live, at background priority), or drop an event the CRM has
// not accepted: it is delivered, or kept as a dead letter.
//
// Redis layout (prefix DefaultKeyPrefix). A session's keys carry its hash tag, so that every
// script touches one Redis Cluster slot while sessions spread over the cluster; the fleet-wide
// keys are indexes of session ids, the bounded dead letters and the poller's lease:
//
//	{s:<sid>}:seen:<eventId>  string with a TTL: the event was accepted (dedupe)
//	{s:<sid>}:status          string: the session's last known status (connected, qr_pending, ...)
//	{s:<sid>}:hint            string: its latest unconfirmed session event (JSON)
//	{s:<sid>}:outbox          list of entries, by the upstream's timestamp: the session's events not yet delivered,
//	                          each with its receipt's time and trace context (see newEntry)
//	{s:<sid>}:outbox:lock     string with a lease: the drainer of the session's outbox
//	confirm:{s:<sid>}         GCRA state of the session's confirming reads (package quota)
//	outbox-pending            set of session ids whose outbox may hold events
//	hinted                    set of session ids that may hold a hint
//	{dead}:records            hash: event id -> dead letter record (JSON)
//	{dead}:index              sorted set of event ids by the time they failed
//	{dead}:replaying:<id>     string with a TTL: a replay holds the dead letter
//	poller-leader             string with a lease: the replica that polls
package webhooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/jobs"
	"github.com/inboxhub-gateway/gateway/internal/noredirect"
	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// CacheInvalidator drops a session's cached reads fleet-wide (*cache.CachedUpstream): Invalidate
// when the session's status changed (its reads and the session list), InvalidateContent when only
// its contents did (a message, contact or conversation event: the session list stays).
type CacheInvalidator interface {
	Invalidate(ctx context.Context, sessionID string) error
	InvalidateContent(ctx context.Context, sessionID string) error
}

// AutoSync queues the automatic sync of a session that just connected; it returns the id of the
// session's job and whether it queued a new one (false: the session's queued or running job).
// internal/app wires the sync engine in.
type AutoSync interface {
	EnqueueAuto(ctx context.Context, sessionID string) (jobID string, created bool, err error)
}

// StatusReader reads one session's status live from the upstream (*upstream.Client, not the
// cache: a confirmation must see the state after the webhook, not one cached before it).
type StatusReader interface {
	SessionStatus(ctx context.Context, sessionID string) (upstream.SessionStatus, error)
}

// SessionLister lists every session live from the upstream (*upstream.Client, not the cache).
type SessionLister interface {
	AllSessions(ctx context.Context, limit int) iter.Seq2[upstream.Session, error]
}

// Defaults of Config.
const (
	DefaultQueue          = "gateway-webhooks"
	DefaultWorkers        = 8
	DefaultMaxBodyBytes   = 256 << 10
	DefaultMaxAge         = 5 * time.Minute
	DefaultMaxFuture      = time.Minute
	DefaultDedupeTTL      = 24 * time.Hour
	DefaultAttempts       = 8
	DefaultBackoff        = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultDeliverTimeout = 10 * time.Second
	DefaultDrainLease     = 30 * time.Second
	DefaultSweepInterval  = time.Second
	DefaultMaxDrainers    = 64
	DefaultMaxDeadLetters = 10000
	DefaultPollInterval   = 30 * time.Second
	DefaultLeaderLease    = 15 * time.Second
	DefaultTaskCheck      = 200 * time.Millisecond
	DefaultTaskRetries    = 5
	DefaultMaxConfirmers  = 16
	DefaultSpoolMaxBytes  = 64 << 20
	DefaultSpoolRetry     = time.Second
	DefaultSpoolHold      = 3 * time.Second
)

// Config configures a Service. Redis is required.
type Config struct {
	Redis redis.UniversalClient
	// Secret is INBOXHUB_WEBHOOK_SECRET; empty refuses every delivery (ErrNotConfigured).
	Secret string
	// Cache has a session's cached reads dropped when an event changes them; nil: none.
	Cache CacheInvalidator
	// Sync, with SyncOnConnect, queues a sync when a session connects (GATEWAY_SYNC_ON_CONNECT).
	Sync          AutoSync
	SyncOnConnect bool
	// Sessions is the live session list the poller reads; nil: no poller.
	Sessions SessionLister
	// Statuses confirms session events (hints) with the upstream; nil: session events are
	// acknowledged and ignored (session state then follows the poller only).
	Statuses StatusReader
	// ConfirmRate bounds the confirming reads of one session, fleet-wide (default
	// DefaultConfirmRate): however many session events arrive, replayed or not, a session costs at
	// most that many upstream reads. A hint refused by the rate waits for its turn; the latest hint
	// of a session replaces the earlier ones. MaxConfirmers bounds the reads this replica makes at
	// once (default 16).
	ConfirmRate   quota.Rate
	MaxConfirmers int

	// EventsURL (CRM_EVENTS_URL) receives the events, signed with SigningSecret
	// (CRM_SIGNING_SECRET); empty: events are not forwarded.
	EventsURL     string
	SigningSecret string
	// Client posts the events (default: an http.Client with a DeliverTimeout timeout); a copy of it
	// that never follows redirects is used (a 3xx is a failed delivery).
	Client         *http.Client
	DeliverTimeout time.Duration
	// Attempts is how many times an event is tried before it becomes a dead letter (default 8);
	// waits grow from Backoff (default 1s) by doubling, with full jitter, each at most MaxBackoff
	// (default 1m). A Retry-After answer is honoured up to MaxBackoff.
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// MaxDeadLetters is how many dead letters are kept, the oldest dropped (default 10000).
	MaxDeadLetters int

	// Workers is how many event tasks this replica runs at once (default 8). Start is not called
	// on a replica that must not process events, forward them or poll.
	Workers int
	// Queue is the job queue of event tasks (default DefaultQueue).
	Queue string
	// TaskCheck bounds how long an idle worker waits for new tasks before it looks for retries
	// that are due and for abandoned tasks (default 200ms).
	TaskCheck time.Duration

	// MaxBodyBytes bounds a delivery's body (default 256 KiB).
	MaxBodyBytes int64
	// MaxAge and MaxFuture bound X-Webhook-Timestamp against this replica's clock (defaults 5m
	// and 1m): older or later deliveries are refused as replays.
	MaxAge    time.Duration
	MaxFuture time.Duration
	// DedupeTTL is how long an accepted event's identity is remembered (default 24h).
	DedupeTTL time.Duration

	// DrainLease is the lease of a drainer on its session's outbox, renewed at a third of it
	// (default 30s); SweepInterval is how often each replica looks for outboxes nobody drains
	// (default 1s); MaxDrainers bounds the outboxes one replica drains at once (default 64).
	DrainLease    time.Duration
	SweepInterval time.Duration
	MaxDrainers   int

	// PollInterval is how often the leader lists the sessions (default 30s); LeaderLease is its
	// lease, renewed at a third of it (default 15s, shorter for intervals under 5s: three
	// intervals, at least 1s). A standby takes over within a third of the lease after the leader
	// shuts down, and within the lease plus a third after it dies.
	PollInterval time.Duration
	LeaderLease  time.Duration

	// SpoolDir keeps authentic deliveries on this replica's disk while Redis is unreachable
	// (GATEWAY_WEBHOOK_SPOOL_DIR), so that they are answered 202 and not lost (the upstream never
	// retries); they are handed to Redis, in arrival order, when it returns. Empty: no spool (such
	// a delivery is answered 500 and lost). SpoolMaxBytes bounds the spool (default 64 MiB): a
	// delivery that finds it full is answered 503 (ErrSpoolFull). SpoolRetry is how often a
	// non-empty spool tries Redis (default 1s).
	SpoolDir      string
	SpoolMaxBytes int64
	SpoolRetry    time.Duration
	// SpoolHold is how long this replica's drainers wait after it last saw Redis fail (a delivery
	// spooled or handed over from the spool, a forwarder command failed) before they deliver again
	// (default 3s, and at least twice SpoolRetry): the spools of the fleet hand their deliveries
	// over meanwhile, and each takes its place in its session's outbox by the upstream's timestamp
	// (see ingestScript), so that the CRM still gets a session's events in the order they were sent.
	SpoolHold time.Duration

	// KeyPrefix is the prefix of the Redis keys (default DefaultKeyPrefix).
	KeyPrefix string
	// Registerer receives the metrics; nil: not registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Clock is the time source (default time.Now).
	Clock func() time.Time
}

func (c *Config) defaults() error {
	if c.Redis == nil {
		return errors.New("webhooks: Config.Redis is required")
	}
	if c.EventsURL != "" {
		u, err := url.Parse(c.EventsURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("webhooks: the events URL must be an absolute http(s) URL")
		}
		if c.SigningSecret == "" {
			return errors.New("webhooks: forwarding events needs a signing secret (CRM_SIGNING_SECRET)")
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	def(&c.DeliverTimeout, DefaultDeliverTimeout)
	if c.Client == nil {
		c.Client = &http.Client{Timeout: c.DeliverTimeout}
	}
	c.Client = noredirect.Client(c.Client) // a redirect must not carry the signed event elsewhere
	defInt(&c.Attempts, DefaultAttempts)
	def(&c.Backoff, DefaultBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	defInt(&c.MaxDeadLetters, DefaultMaxDeadLetters)
	defInt(&c.Workers, DefaultWorkers)
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	def(&c.TaskCheck, DefaultTaskCheck)
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	def(&c.MaxAge, DefaultMaxAge)
	def(&c.MaxFuture, DefaultMaxFuture)
	def(&c.DedupeTTL, DefaultDedupeTTL)
	def(&c.DrainLease, DefaultDrainLease)
	def(&c.SweepInterval, DefaultSweepInterval)
	defInt(&c.MaxDrainers, DefaultMaxDrainers)
	def(&c.PollInterval, DefaultPollInterval)
	if c.ConfirmRate == (quota.Rate{}) {
		c.ConfirmRate = DefaultConfirmRate
	}
	if err := c.ConfirmRate.Validate(); err != nil {
		return fmt.Errorf("webhooks: confirm rate: %w", err)
	}
	defInt(&c.MaxConfirmers, DefaultMaxConfirmers)
	if c.SpoolMaxBytes <= 0 {
		c.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	def(&c.SpoolRetry, DefaultSpoolRetry)
	def(&c.SpoolHold, max(DefaultSpoolHold, 2*c.SpoolRetry))
	// A short interval (tests, demos) gets a short lease, so that a standby takes over quickly.
	def(&c.LeaderLease, min(DefaultLeaderLease, max(time.Second, 3*c.PollInterval)))
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		return errors.New("webhooks: KeyPrefix must not hold braces (the keys carry their own hash tags)")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// Service receives webhooks, forwards events and polls session status. Every replica builds one
// over the shared Redis; Start runs its background work. It is safe for concurrent use.
type Service struct {
	cfg   Config
	k     keys
	log   *slog.Logger
	m     *metrics
	queue *jobs.Queue

	mu      sync.Mutex
	stop    context.CancelFunc
	workers *jobs.Workers
	wg      sync.WaitGroup
	started bool
	fwd     atomic.Pointer[forwarder]
	poll    atomic.Pointer[poller]
	conf    atomic.Pointer[confirmer]
	limit   *quota.Keyed // confirming reads per session

	spool      *spool       // nil: none
	troubleAt  atomic.Int64 // Unix ms of the last Redis failure that holds the drainers (see SpoolHold)
	spoolKick  chan struct{}
	spoolStop  context.CancelFunc
	spoolEnded chan struct{}
}

// New builds a service; it starts only the replay of its spool, when it has one (the rest is
// Start's). Without a secret every delivery is refused, which New logs as a warning, once.
func New(cfg Config) (*Service, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	limit, err := quota.NewKeyed(cfg.Redis, cfg.ConfirmRate, keys{prefix: cfg.KeyPrefix}.confirmPrefix())
	if err != nil {
		return nil, fmt.Errorf("webhooks: confirm rate: %w", err)
	}
	s := &Service{cfg: cfg, k: keys{prefix: cfg.KeyPrefix}, log: cfg.Logger, m: m, limit: limit,
		queue: jobs.NewQueue(cfg.Redis, cfg.Queue, 0)}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(outboxDepth{s}); err != nil {
			return nil, fmt.Errorf("webhooks: metrics: %w", err)
		}
	}
	if cfg.Secret == "" {
		s.log.Warn("INBOXHUB_WEBHOOK_SECRET is not set: POST /webhooks/inbox-hub refuses every delivery with 503 " +
			"(session state then follows the status poller only)")
	}
	if cfg.Secret != "" && cfg.Statuses == nil {
		s.log.Warn("no session status reader: session webhooks are acknowledged and ignored " +
			"(session state then follows the status poller only)")
	}
	if cfg.EventsURL == "" {
		s.log.Info("CRM_EVENTS_URL is not set: events are not forwarded")
	}
	if cfg.SpoolDir != "" {
		if err := s.openSpool(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Forwarding reports whether events are forwarded to the CRM.
func (s *Service) Forwarding() bool { return s.cfg.EventsURL != "" }

// Start runs this replica's share of the work until Shutdown: the event task workers, the
// forwarder (when events are forwarded) and the poller's bid for leadership (when it has a
// session lister).
func (s *Service) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("webhooks: already started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.workers = s.queue.Start(ctx, s.processTask, jobs.Options{Concurrency: s.cfg.Workers, Block: s.cfg.TaskCheck,
		Logger: s.log.With("component", "jobs"),
		// A task stopped by this replica's shutdown is retried without counting as a failure.
		IsFailure: func(err error) bool { return !errors.Is(err, context.Canceled) }})
	s.stop, s.started = cancel, true
	if s.Forwarding() {
		f := newForwarder(s)
		s.fwd.Store(f)
		s.wg.Go(func() { f.run(ctx) })
	}
	if s.cfg.Statuses != nil {
		c := newConfirmer(s)
		s.conf.Store(c)
		s.wg.Go(func() { c.run(ctx) })
	}
	if s.cfg.Sessions != nil {
		p := newPoller(s)
		s.poll.Store(p)
		s.wg.Go(func() { p.run(ctx) })
	}
	return nil
}

// Shutdown stops the background work: the poller gives up its leadership, drainers give up their
// outboxes (the event in flight stays at the head, for the next drainer), running tasks get a few
// seconds. The Redis client must stay open until it returns.
func (s *Service) Shutdown() {
	s.mu.Lock()
	workers, stop := s.workers, s.stop
	s.workers, s.stop = nil, nil
	s.mu.Unlock()
	if stop != nil {
		stop()
		workers.Stop(0) // running tasks are short; an interrupted one is handed back to the queue
		s.wg.Wait()
		if f := s.fwd.Load(); f != nil {
			f.wait()
		}
		if c := s.conf.Load(); c != nil {
			c.wait()
		}
	}
	if s.spoolStop != nil {
		s.spoolStop()
		<-s.spoolEnded
	}
}

// IsLeader reports whether this replica's poller holds the leadership now.
func (s *Service) IsLeader() bool {
	p := s.poll.Load()
	return p != nil && p.isLeader()
}

// Errors of Receive; the handler answers each with its status.
var (
	// ErrNotConfigured: no webhook secret is configured, so no delivery can be verified (503).
	ErrNotConfigured = errors.New("webhooks: INBOXHUB_WEBHOOK_SECRET is not configured")
	// ErrUnauthenticated: the signature or the timestamp is missing, wrong or out of the window
	// (401); the *AuthError says which.
	ErrUnauthenticated = errors.New("webhooks: delivery not authenticated")
	// ErrForwardingDisabled: a replay was asked while no events URL is configured.
	ErrForwardingDisabled = errors.New("webhooks: events are not forwarded (CRM_EVENTS_URL is not set)")
	// ErrDeadLetterNotFound: no dead letter has that id.
	ErrDeadLetterNotFound = errors.New("webhooks: dead letter not found")
)

// TooLargeError is returned for a body over the limit (413).
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return "webhooks: the body is larger than " + strconv.FormatInt(e.Limit, 10) + " bytes"
}

// Delivery is one webhook POST as received: its headers and raw body.
type Delivery struct {
	Event     string    // X-Webhook-Event
	Session   string    // X-Webhook-Session
	Timestamp string    // X-Webhook-Timestamp, Unix milliseconds
	Signature string    // X-Webhook-Signature, "sha256=<hex>"
	Body      io.Reader // read up to MaxBodyBytes
}

// Receipt says what became of an authentic delivery.
type Receipt struct {
	// EventID is the event's id ("" when ignored).
	EventID string `json:"eventId,omitempty" example:"evt_3f0c2b7e8a11d5a3f2b1c431d5a3f2b1"`
	// Type is the normalised event type ("" when ignored).
	Type string `json:"type,omitempty" example:"message.received"`
	// SessionID is the session the event is about.
	SessionID string `json:"sessionId,omitempty" example:"demo_session"`
	// Duplicate: the event had been received before; nothing was done again.
	Duplicate bool `json:"duplicate" example:"false"`
	// Ignored: the event name is not one the gateway handles.
	Ignored bool `json:"ignored" example:"false"`
	// Hint: a session event. Nothing is done with it until the session's status, read from Inbox
	// Hub, confirms a change; the event then forwarded has its own id.
	Hint bool `json:"hint" example:"false"`
	// Spooled: the gateway's store was unreachable; the delivery is kept on this replica's disk
	// and handled when the store returns.
	Spooled bool `json:"spooled" example:"false"`
}

// Receive verifies, parses and accepts one delivery; the work it implies runs later. The errors
// are ErrNotConfigured, *TooLargeError, ErrUnauthenticated (wrapped), ErrInvalid (an
// *InvalidError), or a Redis failure.
func (s *Service) Receive(ctx context.Context, d Delivery) (Receipt, error) {
	if s.cfg.Secret == "" {
		s.m.received.WithLabelValues(labelUnverified, "disabled").Inc()
		return Receipt{}, ErrNotConfigured
	}
	body, err := io.ReadAll(io.LimitReader(d.Body, s.cfg.MaxBodyBytes+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe): // a smaller limit of the server's
		s.m.received.WithLabelValues(labelUnverified, "too_large").Inc()
		return Receipt{}, &TooLargeError{Limit: mbe.Limit}
	case int64(len(body)) > s.cfg.MaxBodyBytes:
		s.m.received.WithLabelValues(labelUnverified, "too_large").Inc()
		return Receipt{}, &TooLargeError{Limit: s.cfg.MaxBodyBytes}
	}
	if err != nil {
		s.m.received.WithLabelValues(labelUnverified, "invalid").Inc()
		return Receipt{}, invalid("body", "could not be read")
	}
	if err := s.authenticate(d, body); err != nil {
		s.m.received.WithLabelValues(labelUnverified, "unauthenticated").Inc()
		return Receipt{}, err
	}
	sentAt, _ := parseTimestamp(d.Timestamp) // checked by authenticate
	p, err := Parse(d.Event, d.Session, sentAt, body)
	if err != nil {
		s.m.received.WithLabelValues(labelUnknown, "invalid").Inc()
		return Receipt{}, err
	}
	if p.Ignored {
		s.m.received.WithLabelValues(labelUnknown, "ignored").Inc()
		s.log.Info("webhook event ignored: unknown event name", "event", p.RawEvent)
		return Receipt{Ignored: true}, nil
	}
	return s.deliver(ctx, p, spooled{Event: d.Event, Session: d.Session, SentAt: sentAt.UnixMilli(),
		Signature: d.Signature, Body: body})
}

// deliver hands an authentic, parsed delivery to Redis or, while Redis is unreachable, to the local
// spool (and there too while earlier deliveries wait in it, so that they keep their order). It
// answers only once the delivery is durable in one of them.
func (s *Service) deliver(ctx context.Context, p Parsed, d spooled) (Receipt, error) {
	ev := p.Event
	var redisErr error
	if s.spool == nil || s.spool.empty() {
		rec, result, err := s.ingest(ctx, p)
		if err == nil || errors.Is(err, ErrInvalid) || s.spool == nil {
			s.m.received.WithLabelValues(ev.Type, result).Inc()
			return rec, err
		}
		redisErr = err
	}
	err := s.spool.put(d)
	if err == nil {
		s.noteTrouble()
		s.m.received.WithLabelValues(ev.Type, "spooled").Inc()
		s.kickSpool()
		rec := Receipt{Type: ev.Type, SessionID: ev.SessionID, Hint: isSessionType(ev.Type), Spooled: true}
		if !rec.Hint {
			rec.EventID = ev.ID
		}
		return rec, nil
	}
	if redisErr == nil {
		// Deliveries wait in the spool, but this one cannot join them: Redis may be back, try it.
		rec, result, ierr := s.ingest(ctx, p)
		if ierr == nil || errors.Is(ierr, ErrInvalid) {
			s.m.received.WithLabelValues(ev.Type, result).Inc()
			return rec, ierr
		}
		redisErr = ierr
	}
	switch {
	case errors.Is(err, ErrSpoolFull):
		s.m.received.WithLabelValues(ev.Type, "spool_full").Inc()
		s.log.Warn("webhook refused: Redis is unreachable and the spool is full", "type", ev.Type,
			"sessionId", ev.SessionID, "error", redisErr.Error())
		return Receipt{}, ErrSpoolFull
	}
	s.m.received.WithLabelValues(ev.Type, "error").Inc()
	return Receipt{}, errors.Join(redisErr, err)
}

// ingest hands an authentic, parsed event to Redis: a session event is kept as a hint, any other
// is accepted once. It returns the result for webhooks_received_total.
func (s *Service) ingest(ctx context.Context, p Parsed) (Receipt, string, error) {
	ev := p.Event
	if isSessionType(ev.Type) {
		return s.receiveHint(ctx, p)
	}
	accepted, err := s.accept(ctx, ev, "*")
	if err != nil {
		return Receipt{}, "error", err
	}
	if !accepted {
		return Receipt{EventID: ev.ID, Type: ev.Type, SessionID: ev.SessionID, Duplicate: true}, "duplicate", nil
	}
	return Receipt{EventID: ev.ID, Type: ev.Type, SessionID: ev.SessionID}, "accepted", nil
}

// Metric labels of deliveries refused before their event was known.
const (
	labelUnverified = "unverified"
	labelUnknown    = "unknown"
)

// AuthError is why a delivery is not authenticated; errors.Is(err, ErrUnauthenticated) holds.
type AuthError struct{ Reason string }

func (e *AuthError) Error() string { return "webhooks: delivery not authenticated: " + e.Reason }

// Is makes errors.Is(err, ErrUnauthenticated) true.
func (e *AuthError) Is(target error) bool { return target == ErrUnauthenticated }

// authenticate checks the signature (constant time), then the timestamp window.
func (s *Service) authenticate(d Delivery, body []byte) error {
	sig := strings.TrimSpace(d.Signature)
	if sig == "" {
		return &AuthError{"X-Webhook-Signature is missing"}
	}
	if !VerifySignature(s.cfg.Secret, body, sig) {
		return &AuthError{"X-Webhook-Signature does not match the body"}
	}
	sentAt, ok := parseTimestamp(d.Timestamp)
	if !ok {
		return &AuthError{"X-Webhook-Timestamp is missing or not Unix milliseconds"}
	}
	now := s.cfg.Clock()
	if now.Sub(sentAt) > s.cfg.MaxAge {
		return &AuthError{"X-Webhook-Timestamp is more than " + s.cfg.MaxAge.String() + " old (a replay?)"}
	}
	if sentAt.Sub(now) > s.cfg.MaxFuture {
		return &AuthError{"X-Webhook-Timestamp is more than " + s.cfg.MaxFuture.String() + " in the future"}
	}
	return nil
}

// VerifySignature reports whether signature ("sha256=<hex>", the prefix optional) is the
// HMAC-SHA256 of body under secret, comparing in constant time.
func VerifySignature(secret string, body []byte, signature string) bool {
	hexSig := strings.TrimSpace(signature)
	if len(hexSig) > 7 && strings.EqualFold(hexSig[:7], "sha256=") {
		hexSig = hexSig[7:]
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(mac.Sum(nil), got)
}

// parseTimestamp reads X-Webhook-Timestamp: Unix milliseconds (seconds are accepted too, when the
// value is too small to be milliseconds).
func parseTimestamp(v string) (time.Time, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 || n > 1e15 {
		return time.Time{}, false
	}
	if n < 1e11 {
		return time.Unix(n, 0), true
	}
	return time.UnixMilli(n), true
}

// accept runs an event through the pipeline once: the ingest script (dedupe, last known status,
// outbox), then at once the session's cached reads for a session event, then a task for the rest.
// prevStatus is "*" for webhooks; the poller passes the status it compared with, and its event is
// dropped (false) when a webhook changed the status meanwhile.
func (s *Service) accept(ctx context.Context, ev Event, prevStatus string) (bool, error) {
	raw, err := encodeEvent(ev)
	if err != nil {
		return false, fmt.Errorf("webhooks: encode event: %w", err)
	}
	status := ""
	if ev.Data.Session != nil {
		status = ev.Data.Session.Status
	}
	forward := ""
	if s.Forwarding() {
		forward = newEntry(ctx, raw, ev.OccurredAt, s.cfg.Clock())
	}
	if forward != "" {
		// Indexed before the append too: a drainer that empties the index meanwhile still finds
		// the event (see releaseIfEmptyScript), and one that dies after the append left a mark.
		if err := s.cfg.Redis.SAdd(ctx, s.k.pending(), ev.SessionID).Err(); err != nil {
			return false, fmt.Errorf("webhooks: accept event: %w", err)
		}
	}
	res, err := ingestScript.Run(ctx, s.cfg.Redis,
		[]string{s.k.dedupe(ev.SessionID, ev.ID), s.k.status(ev.SessionID), s.k.outbox(ev.SessionID), s.k.outboxTaken(ev.SessionID)},
		s.cfg.DedupeTTL.Milliseconds(), status, prevStatus, forward, ev.OccurredAt.UnixMilli(), ingestLookBack).Int()
	if err != nil {
		return false, fmt.Errorf("webhooks: accept event: %w", err)
	}
	if res == ingestAccepted && forward != "" {
		if err := s.cfg.Redis.SAdd(ctx, s.k.pending(), ev.SessionID).Err(); err != nil {
			s.log.Warn("could not index a session's outbox; its drainer or the next event finds it", "sessionId", ev.SessionID, "error", err.Error())
		}
	}
	if res != ingestAccepted {
		return false, nil
	}
	if isSessionType(ev.Type) {
		s.invalidate(ctx, ev.SessionID)
	}
	err = s.queue.Enqueue(ctx, ev.ID, raw, jobs.EnqueueOptions{MaxRetry: DefaultTaskRetries, Timeout: time.Minute})
	if err != nil && !errors.Is(err, jobs.ErrDuplicate) {
		// The event is accepted and in its outbox; do its work here rather than lose it.
		s.log.Warn("webhook event task could not be queued; processing it inline", "eventId", ev.ID, "error", err.Error())
		if perr := s.process(context.WithoutCancel(ctx), ev); perr != nil {
			s.log.Warn("webhook event processing failed", "eventId", ev.ID, "type", ev.Type, "error", perr.Error())
		}
	}
	if f := s.fwd.Load(); f != nil {
		f.nudge(ev.SessionID)
	}
	return true, nil
}

// noteTrouble records that Redis failed (or a spool is being handed over) now: the drainers hold
// for SpoolHold from here.
func (s *Service) noteTrouble() { s.troubleAt.Store(s.cfg.Clock().UnixMilli()) }

// holding says whether the drainers hold: Redis failed less than SpoolHold ago, and spooled
// deliveries of the fleet may still be on their way to their outboxes.
func (s *Service) holding() bool {
	at := s.troubleAt.Load()
	return at != 0 && s.cfg.Clock().Before(time.UnixMilli(at).Add(s.cfg.SpoolHold))
}

// invalidate drops a session's cached reads; a failure is logged (they expire on their own).
func (s *Service) invalidate(ctx context.Context, sessionID string) {
	if s.cfg.Cache == nil {
		return
	}
	if err := s.cfg.Cache.Invalidate(ctx, sessionID); err != nil {
		s.log.Warn("could not drop a session's cached reads", "sessionId", sessionID, "error", err.Error())
	}
}

// processTask is the queue's handler of event tasks.
func (s *Service) processTask(ctx context.Context, t jobs.Task) error {
	var ev Event
	if err := json.Unmarshal(t.Payload, &ev); err != nil || ev.SessionID == "" {
		return fmt.Errorf("webhooks: unreadable task payload: %w", jobs.ErrSkipRetry)
	}
	if err := s.process(ctx, ev); err != nil {
		return err
	}
	if f := s.fwd.Load(); f != nil {
		f.nudge(ev.SessionID)
	}
	return nil
}

// process does an accepted event's work: the session's cached contents are dropped (a message,
// contact or conversation changes its lists, not the session list; session events dropped the
// session and the list on arrival), and a session that connected gets its automatic sync.
func (s *Service) process(ctx context.Context, ev Event) error {
	if !isSessionType(ev.Type) && s.cfg.Cache != nil {
		if err := s.cfg.Cache.InvalidateContent(ctx, ev.SessionID); err != nil {
			return fmt.Errorf("invalidate cached reads: %w", err)
		}
	}
	if ev.Type == TypeSessionConnected && s.cfg.SyncOnConnect && s.cfg.Sync != nil {
		jobID, created, err := s.cfg.Sync.EnqueueAuto(ctx, ev.SessionID)
		if err != nil {
			return fmt.Errorf("queue the automatic sync: %w", err)
		}
		s.log.Info("session connected: automatic sync", "sessionId", ev.SessionID, "jobId", jobID, "created", created,
			"source", ev.Source)
	}
	return nil
}

// encodeEvent is an event's JSON as forwarded: the CRM's canonical JSON (no HTML escaping, no
// trailing newline).
func encodeEvent(ev Event) ([]byte, error) { return crm.CanonicalJSON(ev) }

// metrics of the package.
type metrics struct {
	received  *prometheus.CounterVec
	forwarded *prometheus.CounterVec
	dead      prometheus.Counter
	lag       prometheus.Histogram
	leader    prometheus.Gauge
	checks    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "webhooks_received_total",
			Help: "Inbox Hub webhook deliveries, by event type (unverified and unknown before it is known) and result " +
				"(accepted, duplicate, hint: a session event to confirm, ignored, invalid, unauthenticated, too_large, disabled, " +
				"spooled: kept on local disk while Redis is unreachable, spool_full, error).",
		}, []string{"event", "result"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "events_forwarded_total",
			Help: "Attempts to deliver an event to CRM_EVENTS_URL, by result (delivered, failed: retried or given up, rejected: a 4xx).",
		}, []string{"result"}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "events_dead_lettered_total", Help: "Events moved to the dead letters after their last attempt.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "webhook_forward_lag_seconds",
			Help:    "Time from an event's receipt (webhook accepted, or change seen by the poller) to the CRM accepting it.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "poller_leader", Help: "1 while this replica holds the status poller's leadership.",
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "webhook_session_checks_total",
			Help: "Upstream reads confirming session webhooks, by result (changed, unchanged, not_found, error).",
		}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.received, m.forwarded, m.dead, m.lag, m.leader, m.checks} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("webhooks: metrics: %w", err)
			}
		}
	}
	return m, nil
}
