// Package syncjob is the gateway's "sync now" (docs/design.md): a fleet-wide, resumable,
// incremental import of a session's contacts, chats and messages for the CRM.
//
// A job is a task of the gateway's job queue (internal/jobs: Redis Streams, heartbeats, retries,
// takeover of a dead worker's task after ClaimIdle); the workers run inside the gateway. One job per
// session at a time, fleet-wide: the session's "active job" key is taken with an atomic script
// (SET-if-no-live-job) and the task id is the job id, so a repeated request returns the job
// already queued or running. A job that ended in any way, or that the queue gave up on, frees its
// session.
//
// A run pages through every contact and chat at the largest page size (upstream.MaxLimit), then
// through the messages of every chat whose message count or last message time changed since the
// chat was last synced (every chat when the job is full), with a background-priority context so
// that it only uses the non-reserved share of the upstream quota. Each item is normalised (see
// crm.Contact, crm.Chat and crm.Message) and hashed (SHA-256 of its canonical JSON); against the session's
// hashes in Redis it is new, changed or unchanged. New and changed items are appended to the job's
// item lists in Redis (kept ItemTTL, served by Items) and, with a sink configured, pushed to it in
// signed batches; the session's hashes move forward only for delivered items. Only one page is
// held in memory at a time.
//
// Every page ends with one fenced write (a script that runs only while the runner still owns the
// job): the page's items, progress, hashes (without a sink) and the checkpoint (resource, page,
// chat). A runner that stops (shutdown, crash, lost lease) leaves the job to the queue, whose retry or
// takeover resumes from the checkpoint; at most the sink batch in flight is delivered twice, and
// items carry stable ids so that the CRM can upsert.
//
// What the CRM receives (the item schema, their canonical JSON and digest) and how it is signed and
// delivered (crm.Sink) belong to internal/crm; this package decides what to send and when.
//
// It must not read through the read cache (a sync reads the upstream live), take the interactive
// share of the upstream quota, hold more than one page of a list in memory, or move a session's
// hashes forward for items the CRM has not acknowledged.
//
// Redis layout (prefix DefaultKeyPrefix). Every key of a session, its jobs' included, carries the
// session's hash tag, so that a job's fenced write (its items, cursor and the session's hashes at
// once) stays in one Redis Cluster slot while sessions spread over the cluster:
//
//	{s:<sid>}:job:<id>                 hash: meta, state, attempts, error, times, cancel, rev,
//	                                   checkpoint, progress:<resource>, sink:<resource>, itemsExpireAt
//	{s:<sid>}:job:<id>:items:<res>     list of "digest\x1fkey\x1fitem JSON" records: the job's new and changed items
//	{s:<sid>}:job:<id>:chats           list of "chatId\x1fstate": chats whose messages the job reads
//	{s:<sid>}:job:<id>:marks           list of "end\x1fchatId\x1fstate": chats read but not yet delivered
//	{s:<sid>}:job:<id>:owner           string with a lease: the runner that owns the job
//	{s:<sid>}:active                   string: the session's queued or running job
//	{s:<sid>}:jobs                     sorted set of job ids by creation time (the newest kept)
//	{s:<sid>}:hashes:<res>             hash: item key -> SHA-256 of the item last delivered
//	{s:<sid>}:chatstate                hash: chat id -> "messageCount|lastMessageUnixNano" last synced
//	{j:<id>}:session                   string: the job's session, for the routes that name only the job
package syncjob

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/jobs"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// Upstream is what a sync reads from Inbox Hub.
type Upstream interface {
	SessionStatus(ctx context.Context, sessionID string) (upstream.SessionStatus, error)
	Contacts(ctx context.Context, sessionID string, p upstream.ListParams) (upstream.Page[upstream.Contact], error)
	Chats(ctx context.Context, sessionID string, p upstream.ListParams) (upstream.Page[upstream.Chat], error)
	ChatMessages(ctx context.Context, sessionID, chatID string, p upstream.ListParams) (upstream.Page[upstream.Message], error)
}

// Defaults of Config.
const (
	DefaultQueue         = "gateway-sync"
	DefaultWorkers       = 2
	DefaultItemTTL       = 24 * time.Hour
	DefaultJobTTL        = 7 * 24 * time.Hour
	DefaultJobTimeout    = 12 * time.Hour
	DefaultMaxRetry      = 10
	DefaultSinkBatch     = 500
	DefaultSinkAttempts  = crm.DefaultSinkAttempts
	DefaultSinkBackoff   = crm.DefaultSinkBackoff
	DefaultSinkMaxWait   = crm.DefaultSinkMaxWait
	DefaultSinkTimeout   = crm.DefaultSinkTimeout
	DefaultOwnerLease    = 30 * time.Second
	DefaultPageRetries   = 2
	DefaultPageBackoff   = 2 * time.Second
	DefaultJobsKept      = 50
	DefaultStaleAfter    = 30 * time.Second
	DefaultShutdownGrace = 8 * time.Second
	DefaultClaimIdle     = 15 * time.Second
	DefaultRedisRetry    = time.Minute
)

// Config configures an Engine. Redis and Upstream are required.
type Config struct {
	// Redis holds the jobs, the session hashes and the job queue.
	Redis redis.UniversalClient
	// Upstream is read with a background-priority context.
	Upstream Upstream
	// Workers is how many jobs this replica runs at once (default 2); Start is not called on an
	// API-only replica.
	Workers int
	// Queue is the job queue of sync jobs (default DefaultQueue).
	Queue string
	// ItemTTL is how long a job's new and changed items are kept for the CRM to pull (default 24h).
	ItemTTL time.Duration
	// JobTTL is how long a job's record is kept after it was created or ended (default 7 days).
	JobTTL time.Duration
	// JobTimeout bounds one attempt of a job (default 12h; the upstream's 30 reads per minute make a
	// big first sync long).
	JobTimeout time.Duration
	// MaxRetry is how many times the queue retries a job whose run failed on an error of the gateway's
	// own (Redis), not counting takeovers after a shutdown (default 10).
	MaxRetry int
	// PageLimit is the page size asked of the upstream (default and maximum upstream.MaxLimit).
	PageLimit int
	// PageRetries and PageBackoff: a page that failed with a transient upstream error (5xx,
	// timeout, unreachable) is asked again up to PageRetries times, after PageBackoff, 2*PageBackoff,
	// ... (defaults 2, 2s). Rate limits are waited out separately.
	PageRetries int
	PageBackoff time.Duration

	// SinkURL, when set, receives the new and changed items in batches of SinkBatch (default 500),
	// signed with SigningSecret (see Sink).
	SinkURL       string
	SigningSecret string
	SinkBatch     int
	// SinkAttempts, SinkBackoff and SinkMaxWait bound the retries of one batch: exponential backoff
	// with full jitter from SinkBackoff, each wait at most SinkMaxWait (defaults 8, 1s, 30s).
	SinkAttempts int
	SinkBackoff  time.Duration
	SinkMaxWait  time.Duration
	// SinkClient sends the batches (default: an http.Client with a DefaultSinkTimeout timeout); a
	// copy of it that never follows redirects is used (a 3xx is a failed push).
	SinkClient *http.Client

	// OwnerLease is the lease of a runner on its job, renewed at a third of it (default 30s).
	OwnerLease time.Duration
	// StaleAfter: a job not ended, without a live runner, older than this and whose queue task is
	// gone or archived is declared failed, freeing its session (default 30s).
	StaleAfter time.Duration
	// JobsKept is how many jobs per session GET .../sync-jobs can list (default 50).
	JobsKept int
	// KeyPrefix is the prefix of the engine's Redis keys (default DefaultKeyPrefix).
	KeyPrefix string

	// PollInterval bounds how long a worker waits for new jobs before it looks for retries that
	// are due and for abandoned jobs (default 1s; it is at most ClaimIdle/3).
	PollInterval time.Duration
	// ClaimIdle is how long a job's task may go without a heartbeat from its worker before another
	// replica takes it over (default 15s): a job interrupted by a crash resumes within about that.
	ClaimIdle time.Duration
	// RedisRetry is how long a running job keeps trying a Redis call that fails (with backoff)
	// before the attempt gives up (default 1 min).
	RedisRetry time.Duration
	// ShutdownGrace: Shutdown logs a warning when running jobs take longer than this to
	// checkpoint (default 8s); it waits for them all the same.
	ShutdownGrace time.Duration

	Logger *slog.Logger
	// Registerer receives the engine's metrics (sync_jobs_total, sync_items_total,
	// sync_pages_total, sync_job_duration_seconds); nil: none.
	Registerer prometheus.Registerer
	// Clock is the time source (default time.Now).
	Clock func() time.Time
}

func (c *Config) defaults() error {
	if err := c.required(); err != nil {
		return err
	}
	c.jobDefaults()
	c.pageDefaults()
	c.sinkDefaults()
	if err := c.storeDefaults(); err != nil {
		return err
	}
	c.workerDefaults()
	return nil
}

// required reports every missing dependency at once.
func (c *Config) required() error {
	var errs []error
	if c.Redis == nil {
		errs = append(errs, errors.New("syncjob: Config.Redis is required"))
	}
	if c.Upstream == nil {
		errs = append(errs, errors.New("syncjob: Config.Upstream is required"))
	}
	if c.SinkURL != "" && c.SigningSecret == "" {
		errs = append(errs, errors.New("syncjob: a sink URL needs a signing secret (CRM_SIGNING_SECRET)"))
	}
	return errors.Join(errs...)
}

// orDefault sets *p to v when it is zero or negative.
func orDefault[T int | time.Duration](p *T, v T) {
	if *p <= 0 {
		*p = v
	}
}

// jobDefaults fills the jobs' queue, lifetimes and retries.
func (c *Config) jobDefaults() {
	orDefault(&c.Workers, DefaultWorkers)
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	orDefault(&c.ItemTTL, DefaultItemTTL)
	orDefault(&c.JobTTL, DefaultJobTTL)
	c.JobTTL = max(c.JobTTL, c.ItemTTL)
	orDefault(&c.JobTimeout, DefaultJobTimeout)
	orDefault(&c.MaxRetry, DefaultMaxRetry)
}

// pageDefaults fills the upstream pages' size and retries.
func (c *Config) pageDefaults() {
	if c.PageLimit <= 0 || c.PageLimit > upstream.MaxLimit {
		c.PageLimit = upstream.MaxLimit
	}
	if c.PageRetries < 0 {
		c.PageRetries = 0
	} else if c.PageRetries == 0 {
		c.PageRetries = DefaultPageRetries
	}
	orDefault(&c.PageBackoff, DefaultPageBackoff)
}

// sinkDefaults fills the sink's batches, retries and client.
func (c *Config) sinkDefaults() {
	orDefault(&c.SinkBatch, DefaultSinkBatch)
	orDefault(&c.SinkAttempts, DefaultSinkAttempts)
	orDefault(&c.SinkBackoff, DefaultSinkBackoff)
	orDefault(&c.SinkMaxWait, DefaultSinkMaxWait)
	if c.SinkClient == nil {
		c.SinkClient = &http.Client{Timeout: DefaultSinkTimeout}
	}
}

// storeDefaults fills the runners' leases, the jobs kept and the key prefix, which must hold no
// braces.
func (c *Config) storeDefaults() error {
	orDefault(&c.OwnerLease, DefaultOwnerLease)
	orDefault(&c.StaleAfter, DefaultStaleAfter)
	orDefault(&c.JobsKept, DefaultJobsKept)
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		return errors.New("syncjob: KeyPrefix must not hold braces (the keys carry their own hash tags)")
	}
	return nil
}

// workerDefaults fills the workers' polling, takeover, Redis retries and shutdown, the logger and
// the clock.
func (c *Config) workerDefaults() {
	orDefault(&c.PollInterval, time.Second)
	orDefault(&c.ClaimIdle, DefaultClaimIdle)
	orDefault(&c.RedisRetry, DefaultRedisRetry)
	orDefault(&c.ShutdownGrace, DefaultShutdownGrace)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Engine queues, runs and reports sync jobs. Every replica builds one over the shared Redis; Start
// runs its workers. It is safe for concurrent use.
type Engine struct {
	cfg     Config
	st      *store
	log     *slog.Logger
	queue   *jobs.Queue
	sink    *crm.Sink
	metrics *metrics

	mu      sync.Mutex
	workers *jobs.Workers // nil: not started
}

// New builds an engine; it does not start workers (see Start).
func New(cfg Config) (*Engine, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:     cfg,
		st:      &store{rdb: cfg.Redis, k: keys{prefix: cfg.KeyPrefix}, jobTTL: cfg.JobTTL, retryFor: cfg.RedisRetry},
		log:     cfg.Logger,
		queue:   jobs.NewQueue(cfg.Redis, cfg.Queue, cfg.JobTTL),
		metrics: newMetrics(cfg.Registerer, cfg.Logger),
	}
	if cfg.SinkURL != "" {
		s, err := crm.NewSink(crm.SinkConfig{URL: cfg.SinkURL, Secret: cfg.SigningSecret, Client: cfg.SinkClient,
			Attempts: cfg.SinkAttempts, Backoff: cfg.SinkBackoff, MaxWait: cfg.SinkMaxWait, Clock: cfg.Clock})
		if err != nil {
			return nil, err
		}
		e.sink = s
	}
	return e, nil
}

// Start runs this replica's workers (Config.Workers jobs at once) until Shutdown.
func (e *Engine) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.workers != nil {
		return errors.New("syncjob: workers already started")
	}
	e.workers = e.queue.Start(context.Background(), e.processTask, jobs.Options{
		Concurrency: e.cfg.Workers,
		ClaimIdle:   e.cfg.ClaimIdle,
		Block:       e.cfg.PollInterval,
		RetryDelay:  e.retryDelay,
		IsFailure:   isFailure,
		OnArchived:  e.onArchived,
		Logger:      e.log.With("component", "jobs"),
	})
	return nil
}

// Shutdown stops the workers: running jobs stop at their next page (their last checkpoint stands)
// and the queue hands them to another replica (or to this one after a restart). It returns when
// the workers have stopped and handed their tasks back; the Redis client (the caller's) must stay
// open until then.
func (e *Engine) Shutdown() {
	e.mu.Lock()
	w := e.workers
	e.workers = nil
	e.mu.Unlock()
	if w != nil {
		w.Stop(e.cfg.ShutdownGrace)
	}
}

// Sync is "sync now": it checks on the live status route that the session is connected (else an
// error matching upstream.ErrSessionNotConnected), then queues a job as Enqueue does. created is
// false when the session's queued or running job is returned instead.
func (e *Engine) Sync(ctx context.Context, sessionID string, req Request) (job Job, created bool, err error) {
	if req, err = req.normalize(); err != nil {
		return Job{}, false, err
	}
	st, err := e.cfg.Upstream.SessionStatus(ctx, sessionID)
	if err != nil {
		return Job{}, false, err
	}
	if !connected(st) {
		return Job{}, false, fmt.Errorf("syncjob: session is %s: %w", upstream.NormalizeStatus(st.Status), upstream.ErrSessionNotConnected)
	}
	return e.Enqueue(ctx, sessionID, req)
}

func connected(st upstream.SessionStatus) bool {
	if strings.TrimSpace(st.Status) == "" {
		return st.IsConnected
	}
	return upstream.NormalizeStatus(st.Status) == upstream.StatusConnected
}

// EnqueueAuto queues the automatic sync of a session that just connected (Enqueue with
// TriggerAuto) and returns the job's id: the new job's, or the one already queued or running for
// the session, with created false. It is what internal/webhooks calls through its AutoSync.
func (e *Engine) EnqueueAuto(ctx context.Context, sessionID string) (jobID string, created bool, err error) {
	job, created, err := e.Enqueue(ctx, sessionID, Request{Trigger: TriggerAuto})
	return job.ID, created, err
}

// Enqueue queues a sync of a session without checking its status (for callers that just saw it
// connect, such as the webhook handler and the status poller: use Request{Trigger: TriggerAuto}).
// It goes through the same fleet-wide dedupe as Sync: when the session already has a queued or
// running job, that job is returned with created false.
func (e *Engine) Enqueue(ctx context.Context, sessionID string, req Request) (job Job, created bool, err error) {
	if req, err = req.normalize(); err != nil {
		return Job{}, false, err
	}
	if sessionID == "" {
		return Job{}, false, fmt.Errorf("%w: empty session id", ErrInvalidRequest)
	}
	for range 3 {
		id, err := uuid.NewV7()
		if err != nil {
			return Job{}, false, fmt.Errorf("syncjob: job id: %w", err)
		}
		m := jobMeta{ID: id.String(), SessionID: sessionID, Resources: req.Resources, Full: req.Full,
			Trigger: req.Trigger, CreatedAt: e.cfg.Clock().UTC()}
		cur, created, err := e.st.create(ctx, m, e.cfg.JobTimeout+time.Hour, e.cfg.JobsKept)
		if err != nil {
			return Job{}, false, err
		}
		if !created {
			j, err := e.sessionJob(ctx, sessionID, cur)
			if errors.Is(err, ErrJobNotFound) {
				continue
			}
			if err != nil {
				return Job{}, false, err
			}
			if !Final(j.State) {
				return j, false, nil
			}
			continue // it ended meanwhile, or was found stale: try again
		}
		payload, _ := json.Marshal(taskPayload{JobID: m.ID, SessionID: sessionID})
		err = e.queue.Enqueue(ctx, m.ID, payload, jobs.EnqueueOptions{MaxRetry: e.cfg.MaxRetry, Timeout: e.cfg.JobTimeout})
		if err != nil && !errors.Is(err, jobs.ErrDuplicate) {
			_, _ = e.st.finish(context.WithoutCancel(ctx), m, "", StateFailed, e.cfg.Clock(),
				fError, "the job could not be queued")
			return Job{}, false, fmt.Errorf("syncjob: queue job: %w", err)
		}
		e.log.Info("sync job queued", "jobId", m.ID, "sessionId", sessionID, "resources", req.Resources,
			"full", req.Full, "trigger", req.Trigger)
		j, err := e.sessionJob(ctx, sessionID, m.ID)
		return j, true, err
	}
	return Job{}, false, errors.New("syncjob: the session's active job kept changing")
}

// Job returns a job by id (ErrJobNotFound when there is none). A job that the queue gave up on without
// it ending is marked failed first, so that it never shows running forever.
func (e *Engine) Job(ctx context.Context, id string) (Job, error) {
	j, _, err := e.st.load(ctx, id)
	if err != nil {
		return Job{}, err
	}
	return e.reconcile(ctx, j)
}

// sessionJob is Job for a job of a known session.
func (e *Engine) sessionJob(ctx context.Context, sessionID, id string) (Job, error) {
	j, _, err := e.st.loadIn(ctx, sessionID, id)
	if err != nil {
		return Job{}, err
	}
	return e.reconcile(ctx, j)
}

// reconcile ends a job that is not final, has no live runner and whose queue task is gone,
// archived (retries exhausted) or completed.
func (e *Engine) reconcile(ctx context.Context, j Job) (Job, error) {
	now := e.cfg.Clock()
	if Final(j.State) || now.Sub(j.UpdatedAt) < e.cfg.StaleAfter || now.Sub(j.CreatedAt) < e.cfg.StaleAfter {
		return j, nil
	}
	if alive, err := e.st.ownerAlive(ctx, j); err != nil || alive {
		return j, nil
	}
	info, err := e.queue.Info(ctx, j.ID)
	var reason string
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		reason = "the job's task is gone from the job queue"
	case err != nil:
		return j, nil
	case info.State == jobs.StateArchived:
		reason = "the job engine gave up on the job after its retries"
		if info.LastError != "" {
			reason += ": " + clip.Bytes(info.LastError, 200, clip.Ellipsis)
		}
	case info.State == jobs.StateCompleted:
		reason = "the job's task completed without ending the job"
	default:
		return j, nil
	}
	m := jobMeta{ID: j.ID, SessionID: j.SessionID}
	if _, err := e.st.finish(ctx, m, "", StateFailed, now, fError, reason); err != nil && !errors.Is(err, errLostOwnership) {
		return j, nil
	}
	e.log.Warn("sync job declared failed", "jobId", j.ID, "sessionId", j.SessionID, "reason", reason)
	nj, _, err := e.st.loadIn(ctx, j.SessionID, j.ID)
	if err != nil {
		return j, nil
	}
	return nj, nil
}

// SessionJobs returns the newest jobs of a session, newest first, at most limit (1..JobsKept).
func (e *Engine) SessionJobs(ctx context.Context, sessionID string, limit int) ([]Job, error) {
	limit = min(max(limit, 1), e.cfg.JobsKept)
	return e.st.list(ctx, sessionID, limit)
}

// Cancel asks a job to stop. A queued job ends canceled at once; a running one stops between two
// pages (its state is then canceled). ErrJobFinished when it had already ended otherwise.
func (e *Engine) Cancel(ctx context.Context, id string) (Job, error) {
	j, err := e.Job(ctx, id)
	if err != nil {
		return Job{}, err
	}
	if j.State == StateCanceled {
		return j, nil
	}
	if Final(j.State) {
		return j, ErrJobFinished
	}
	st, err := e.st.cancel(ctx, j, e.cfg.Clock())
	if err != nil {
		return Job{}, err
	}
	if st != StateCanceled && Final(st) {
		j, _ = e.Job(ctx, id)
		return j, ErrJobFinished
	}
	e.log.Info("sync job cancel requested", "jobId", id, "sessionId", j.SessionID, "state", st)
	return e.Job(ctx, id)
}

// ItemPage is one page of a job's items.
type ItemPage struct {
	// Items are normalised items (Contact, Chat or Message), in the order the job found them.
	Items []json.RawMessage
	// Total is how many items of the resource the job kept so far.
	Total int
	// NextCursor continues after this page; it stays valid while the job runs and finds more.
	NextCursor string
	// HasMore says items exist past this page now.
	HasMore bool
}

// MaxItemsLimit is the largest page of items.
const MaxItemsLimit = 1000

// Items returns a page of the items a job found new or changed for a resource, from cursor ("" =
// the start), at most limit (1..MaxItemsLimit).
func (e *Engine) Items(ctx context.Context, jobID, resource, cursor string, limit int) (ItemPage, error) {
	if !slices.Contains(AllResources, resource) {
		return ItemPage{}, fmt.Errorf("%w: unknown resource %q", ErrInvalidRequest, resource)
	}
	limit = min(max(limit, 1), MaxItemsLimit)
	start, err := decodeCursor(jobID, resource, cursor)
	if err != nil {
		return ItemPage{}, err
	}
	j, _, err := e.st.load(ctx, jobID)
	if err != nil {
		return ItemPage{}, err
	}
	if j.ItemsExpireAt != nil && e.cfg.Clock().After(*j.ItemsExpireAt) {
		return ItemPage{}, ErrItemsExpired
	}
	key := e.st.k.items(j.SessionID, jobID, resource)
	pipe := e.cfg.Redis.Pipeline()
	rng := pipe.LRange(ctx, key, int64(start), int64(start+limit-1))
	n := pipe.LLen(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return ItemPage{}, fmt.Errorf("syncjob: read items: %w", err)
	}
	out := ItemPage{Items: make([]json.RawMessage, 0, len(rng.Val())), Total: int(n.Val())}
	for _, raw := range rng.Val() {
		rec, err := parseRecord(raw)
		if err != nil {
			return ItemPage{}, err
		}
		out.Items = append(out.Items, rec.Item)
	}
	next := start + len(out.Items)
	out.NextCursor = encodeCursor(jobID, resource, next)
	out.HasMore = next < out.Total
	return out, nil
}

// A cursor is base64url("i1.<resource>.<index>.<tail of the job id>"): opaque to callers, it names
// the list it belongs to so that a cursor of another job or resource is refused.
func encodeCursor(jobID, resource string, index int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("i1." + resource + "." + strconv.Itoa(index) + "." + cursorTag(jobID)))
}

func decodeCursor(jobID, resource, cursor string) (int, error) {
	if cursor == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) > 200 {
		return 0, ErrInvalidCursor
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 4 || parts[0] != "i1" || parts[1] != resource || parts[3] != cursorTag(jobID) {
		return 0, ErrInvalidCursor
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n < 0 {
		return 0, ErrInvalidCursor
	}
	return n, nil
}

func cursorTag(jobID string) string {
	id := strings.ReplaceAll(jobID, "-", "")
	return id[max(0, len(id)-8):]
}

// record is one item kept with a job: its key in the session's hashes, its digest, and the item.
// It is stored as digest, key and item JSON separated by \x1f, which neither a digest, a key (see
// normalizeItem) nor JSON output contains.
type record struct {
	Key    string
	Digest string
	Item   json.RawMessage
}

func (r record) encode() string { return r.Digest + sep + r.Key + sep + string(r.Item) }

func parseRecord(raw string) (record, error) {
	digest, rest, ok1 := strings.Cut(raw, sep)
	key, item, ok2 := strings.Cut(rest, sep)
	if !ok1 || !ok2 {
		return record{}, errors.New("syncjob: a kept item is unreadable")
	}
	return record{Key: key, Digest: digest, Item: json.RawMessage(item)}, nil
}

// taskPayload is the queue task's payload; the job's options live in Redis with the job.
type taskPayload struct {
	JobID     string `json:"jobId"`
	SessionID string `json:"sessionId"`
}

func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
