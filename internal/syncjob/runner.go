package syncjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/quota"
	"github.com/inboxhub-gateway/gateway/internal/telemetry"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// Steps of a run, in order. chatscan reads the chat list only to find the chats whose messages
// must be read, for a job that syncs messages but not chats.
const (
	stepContacts = "contacts"
	stepChats    = "chats"
	stepChatScan = "chatscan"
	stepMessages = "messages"
	stepEnd      = "end"
)

// checkpoint is where a run stands, written with every page: the step, the next page of the
// step's list (or of the current chat's messages) and the index of the current chat in the job's
// list of chats to read. sinkCursor (fields sink:{resource}) counts the items the sink acknowledged.
type checkpoint struct {
	Step string `json:"step"`
	Page int    `json:"page"`
	Chat int    `json:"chat"`
	// Listed: the step's list was read to its end (only its delivery may be left).
	Listed      bool `json:"listed,omitempty"`
	ChatsListed bool `json:"chatsListed"`
	sinkCursor  map[string]int
}

// mark is a chat whose messages were read but not all delivered yet: its state is recorded once
// the sink acknowledged the messages' items up to end.
type mark struct {
	end    int
	chatID string
	state  string
}

const sep = "\x1f"

// maxChatFailuresInARow stops the messages step when the upstream fails for that many chats in a
// row: it is down, not one chat.
const maxChatFailuresInARow = 5

// maxRateLimitWaits bounds how many times one page waits out a rate limit.
const maxRateLimitWaits = 30

// runner runs one attempt of one job.
type runner struct {
	e        *Engine
	st       *store
	meta     jobMeta
	prog     map[string]*Progress
	cp       checkpoint
	token    string
	stored   map[string]int // items kept per resource (the length of the job's item lists)
	marks    []mark
	canceled bool
	timedOut bool
	jobErr   string
	// sessionErr is a session-level upstream failure (not connected, unknown, credentials): the
	// remaining steps fail with it without calling the upstream.
	sessionErr error
}

func newRunner(e *Engine, j Job, cp checkpoint, token string) *runner {
	r := &runner{e: e, st: e.st, token: token, cp: cp, prog: j.Progress, stored: map[string]int{},
		meta: jobMeta{ID: j.ID, SessionID: j.SessionID, Resources: j.Resources, Full: j.Full, Trigger: j.Trigger,
			CreatedAt: j.CreatedAt}}
	if r.cp.sinkCursor == nil {
		r.cp.sinkCursor = map[string]int{}
	}
	for _, res := range j.Resources {
		if r.prog[res] == nil {
			r.prog[res] = &Progress{Phase: PhasePending}
		}
	}
	return r
}

func (r *runner) wants(res string) bool { return slices.Contains(r.meta.Resources, res) }

// start reads what a previous attempt left (items kept, marks) and marks the job running.
func (r *runner) start(ctx context.Context) error {
	lens := map[string]*redis.IntCmd{}
	var marks *redis.StringSliceCmd
	_, err := retryRedis(ctx, r.st, func() (struct{}, error) {
		pipe := r.st.rdb.Pipeline()
		for _, res := range r.meta.Resources {
			lens[res] = pipe.LLen(ctx, r.st.k.items(r.meta.SessionID, r.meta.ID, res))
		}
		marks = pipe.LRange(ctx, r.st.k.marks(r.meta.SessionID, r.meta.ID), 0, -1)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return struct{}{}, err
		}
		return struct{}{}, nil
	})
	if err != nil {
		return fmt.Errorf("syncjob: resume job: %w", err)
	}
	for res, n := range lens {
		r.stored[res] = int(n.Val())
	}
	for _, raw := range marks.Val() {
		parts := strings.SplitN(raw, sep, 3)
		if len(parts) != 3 {
			continue
		}
		end, _ := strconv.Atoi(parts[0])
		r.marks = append(r.marks, mark{end: end, chatID: parts[1], state: parts[2]})
	}
	now := r.e.cfg.Clock()
	jk := r.st.k.job(r.meta.SessionID, r.meta.ID)
	b := &batch{}
	b.add("HSET", jk, fState, StateRunning, fUpdatedAt, ms(now))
	b.add("HSETNX", jk, fStartedAt, ms(now))
	b.add("HINCRBY", jk, fAttempts, 1)
	b.add("HINCRBY", jk, fRev, 1)
	canceled, err := r.st.fenced(ctx, r.meta, r.token, b)
	if err != nil {
		return err
	}
	r.canceled = r.canceled || canceled
	if r.cp.Step != "" {
		r.e.log.Info("sync job resumed", "jobId", r.meta.ID, "step", r.cp.Step, "page", r.cp.Page, "chat", r.cp.Chat)
	}
	return nil
}

// steps are the steps of this job, in order.
func (r *runner) steps() []string {
	var s []string
	if r.wants(ResourceContacts) {
		s = append(s, stepContacts)
	}
	if r.wants(ResourceChats) {
		s = append(s, stepChats)
	} else if r.wants(ResourceMessages) {
		s = append(s, stepChatScan)
	}
	if r.wants(ResourceMessages) {
		s = append(s, stepMessages)
	}
	return s
}

func resourceOf(step string) string {
	switch step {
	case stepContacts:
		return ResourceContacts
	case stepChats:
		return ResourceChats
	}
	return ResourceMessages
}

// run runs the remaining steps. Failures of the upstream or of the sink are recorded in the
// progress and the run goes on; an error return means the run must stop (context ended, job taken
// over, Redis failed) and the job resumes later from its checkpoint.
func (r *runner) run(ctx context.Context) error {
	steps := r.steps()
	i := 0
	if r.cp.Step != "" {
		if i = slices.Index(steps, r.cp.Step); i < 0 {
			i = len(steps) // stepEnd: only the ending was left
		}
	}
	for ; i < len(steps) && !r.canceled; i++ {
		step := steps[i]
		if r.cp.Step != step {
			r.cp.Step, r.cp.Page, r.cp.Chat, r.cp.Listed = step, 1, 0, false
		}
		var err error
		switch step {
		case stepContacts, stepChats, stepChatScan:
			err = r.listStep(ctx, step)
		case stepMessages:
			err = r.messagesStep(ctx)
		}
		if err != nil {
			return err
		}
		if r.canceled {
			break
		}
		next := stepEnd
		if i+1 < len(steps) {
			next = steps[i+1]
		}
		r.cp.Step, r.cp.Page, r.cp.Chat, r.cp.Listed = next, 1, 0, false
		if err := r.commit(ctx, &batch{}, resourceOf(step)); err != nil {
			return err
		}
	}
	return nil
}

// commit writes b together with the progress of resources, the checkpoint and a new revision, as
// long as this runner owns the job; it notes a cancel request.
func (r *runner) commit(ctx context.Context, b *batch, resources ...string) error {
	jk := r.st.k.job(r.meta.SessionID, r.meta.ID)
	var fields []any
	for _, res := range slices.Compact(resources) {
		if p := r.prog[res]; p != nil {
			raw, _ := json.Marshal(p)
			fields = append(fields, fProgress+res, string(raw))
		}
	}
	cp, _ := json.Marshal(r.cp)
	fields = append(fields, fCheckpoint, string(cp), fUpdatedAt, ms(r.e.cfg.Clock()))
	b.add("HSET", jk, fields...)
	b.add("HINCRBY", jk, fRev, 1)
	canceled, err := r.st.fenced(ctx, r.meta, r.token, b)
	if err != nil {
		return err
	}
	r.canceled = r.canceled || canceled
	return nil
}

// fetchPage asks the upstream for one page with the background priority, waiting out rate limits
// and retrying transient failures a few times.
func fetchPage[T any](ctx context.Context, r *runner, get func(context.Context) (upstream.Page[T], error)) (upstream.Page[T], error) {
	ctx, span := telemetry.Start(ctx, "sync page", attribute.String("inboxhub.sync.step", r.cp.Step))
	defer span.End()
	bg := quota.WithBackground(ctx)
	transient, limited := 0, 0
	for {
		p, err := get(bg)
		if err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			return p, err
		}
		var wait time.Duration
		switch {
		case errors.Is(err, upstream.ErrRateLimited):
			if limited++; limited > maxRateLimitWaits {
				return p, err
			}
			wait = time.Second
			var rl *upstream.RateLimitError
			if errors.As(err, &rl) && rl.RetryAfter > 0 {
				wait = rl.RetryAfter
			}
			wait = min(max(wait, 100*time.Millisecond), time.Minute)
		case errors.Is(err, upstream.ErrUnavailable), errors.Is(err, upstream.ErrTimeout):
			if transient++; transient > r.e.cfg.PageRetries {
				return p, err
			}
			wait = r.e.cfg.PageBackoff << (transient - 1)
		default:
			return p, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return p, ctx.Err()
		case <-t.C:
		}
	}
}

// morePages reads the pagination as upstream.Client's walk does: pages, else total, else a full page.
func morePages[T any](p upstream.Page[T], page, limit int) bool {
	switch {
	case len(p.Items) == 0:
		return false
	case p.Pages > 0:
		return page < p.Pages
	case p.Total > 0:
		size := limit
		if p.Limit > 0 {
			size = p.Limit
		}
		return page*size < p.Total
	}
	return len(p.Items) >= limit
}

// sessionLevel reports whether err concerns the whole session (or the gateway's credentials), so
// that no other call of the job can succeed.
func sessionLevel(err error) bool {
	return errors.Is(err, upstream.ErrSessionNotConnected) || errors.Is(err, upstream.ErrSessionNotFound) ||
		errors.Is(err, upstream.ErrAuthFailed) || errors.Is(err, upstream.ErrUnauthorized)
}

func normalizeItem(key string, v any) (normalized, error) {
	if strings.Contains(key, sep) {
		return normalized{}, errors.New("syncjob: an item id holds a control character")
	}
	raw, err := crm.CanonicalJSON(v)
	if err != nil {
		return normalized{}, err
	}
	return normalized{key: key, digest: crm.Digest(raw), json: raw}, nil
}

// classify compares items with the session's hashes of resource and counts them; fresh[i] says
// item i is new or changed. An item seen twice on one page counts once.
func (r *runner) classify(ctx context.Context, res string, recs []normalized) (out []normalized, fresh []bool, err error) {
	fresh = make([]bool, len(recs))
	if len(recs) == 0 {
		return nil, fresh, nil
	}
	fields := make([]string, len(recs))
	for i, rec := range recs {
		fields[i] = rec.key
	}
	vals, err := retryRedis(ctx, r.st, func() ([]any, error) {
		return r.st.rdb.HMGet(ctx, r.st.k.hashes(r.meta.SessionID, res), fields...).Result()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("syncjob: read hashes: %w", err)
	}
	p := r.prog[res]
	seen := make(map[string]bool, len(recs))
	for i, rec := range recs {
		if seen[rec.key] {
			p.Unchanged++
			continue
		}
		seen[rec.key] = true
		old, _ := vals[i].(string)
		switch {
		case old == "":
			p.New++
		case old != rec.digest:
			p.Changed++
		default:
			p.Unchanged++
			continue
		}
		fresh[i] = true
		out = append(out, rec)
	}
	return out, fresh, nil
}

// stage adds new and changed items to b: appended to the job's items; without a sink they count
// as delivered and the session's hashes move forward in the same write.
func (r *runner) stage(b *batch, res string, recs []normalized) {
	if len(recs) == 0 {
		return
	}
	now := r.e.cfg.Clock()
	jk := r.st.k.job(r.meta.SessionID, r.meta.ID)
	ik := r.st.k.items(r.meta.SessionID, r.meta.ID, res)
	vals := make([]any, 0, len(recs))
	for _, rec := range recs {
		vals = append(vals, record{Key: rec.key, Digest: rec.digest, Item: rec.json}.encode())
	}
	b.add("RPUSH", ik, vals...)
	b.add("PEXPIRE", ik, r.e.cfg.ItemTTL.Milliseconds())
	b.add("HSET", jk, fItemsExpireAt, ms(now.Add(r.e.cfg.ItemTTL)))
	r.stored[res] += len(recs)
	if r.e.sink != nil {
		return
	}
	pairs := make([]any, 0, 2*len(recs))
	for _, rec := range recs {
		pairs = append(pairs, rec.key, rec.digest)
	}
	b.add("HSET", r.st.k.hashes(r.meta.SessionID, res), pairs...)
	b.add("HSET", jk, fSinkCursor+res, r.stored[res])
	r.cp.sinkCursor[res] = r.stored[res]
	r.prog[res].Delivered += len(recs)
}

// sinkFailure is a batch the sink did not take after every retry.
type sinkFailure struct{ err error }

func (s *sinkFailure) Error() string { return "sink: " + s.err.Error() }
func (s *sinkFailure) Unwrap() error { return s.err }

// deliver pushes the resource's undelivered items to the sink in batches: full batches only, or
// everything when flush is set. Each acknowledged batch moves the session's hashes, the sink cursor
// and (messages) the states of the chats it completes, in one write.
func (r *runner) deliver(ctx context.Context, res string, flush bool) error {
	if r.e.sink == nil {
		return nil
	}
	size := r.e.cfg.SinkBatch
	for {
		cursor := r.cp.sinkCursor[res]
		pending := r.stored[res] - cursor
		if pending <= 0 || (!flush && pending < size) {
			return nil
		}
		recs, err := r.undelivered(ctx, res, cursor, min(pending, size))
		if err != nil {
			return err
		}
		if err := r.push(ctx, res, cursor, recs); err != nil {
			return err
		}
		if err := r.commit(ctx, r.delivered(res, cursor, recs), res); err != nil {
			return err
		}
	}
}

// undelivered reads n of the resource's items from the sink cursor on.
func (r *runner) undelivered(ctx context.Context, res string, cursor, n int) ([]record, error) {
	ik := r.st.k.items(r.meta.SessionID, r.meta.ID, res)
	raws, err := retryRedis(ctx, r.st, func() ([]string, error) {
		return r.st.rdb.LRange(ctx, ik, int64(cursor), int64(cursor+n-1)).Result()
	})
	if err != nil {
		return nil, fmt.Errorf("syncjob: read items to deliver: %w", err)
	}
	if len(raws) == 0 {
		return nil, &sinkFailure{errors.New("the job's items expired before they could be delivered")}
	}
	recs := make([]record, len(raws))
	for i, raw := range raws {
		if recs[i], err = parseRecord(raw); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// push sends the items to the sink as the batch at offset cursor; a sink that gave up is a
// *sinkFailure.
func (r *runner) push(ctx context.Context, res string, cursor int, recs []record) error {
	items := make([]json.RawMessage, len(recs))
	for i, rec := range recs {
		items[i] = rec.Item
	}
	if err := r.e.sink.Deliver(ctx, crm.Batch{JobID: r.meta.ID, SessionID: r.meta.SessionID, Resource: res,
		Offset: cursor, Items: items}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &sinkFailure{err}
	}
	return nil
}

// delivered moves the session's hashes, the sink cursor and (messages) the states of the chats the
// acknowledged items complete, in one write to commit, and counts the items delivered.
func (r *runner) delivered(res string, cursor int, recs []record) *batch {
	b := &batch{}
	pairs := make([]any, 0, 2*len(recs))
	for _, rec := range recs {
		pairs = append(pairs, rec.Key, rec.Digest)
	}
	b.add("HSET", r.st.k.hashes(r.meta.SessionID, res), pairs...)
	next := cursor + len(recs)
	b.add("HSET", r.st.k.job(r.meta.SessionID, r.meta.ID), fSinkCursor+res, next)
	if res == ResourceMessages {
		done := 0
		for done < len(r.marks) && r.marks[done].end <= next {
			b.add("HSET", r.st.k.chatState(r.meta.SessionID), r.marks[done].chatID, r.marks[done].state)
			done++
		}
		if done > 0 {
			b.add("LTRIM", r.st.k.marks(r.meta.SessionID, r.meta.ID), done, -1)
			r.marks = r.marks[done:]
		}
	}
	r.cp.sinkCursor[res] = next
	r.prog[res].Delivered += len(recs)
	return b
}

// deliverOrFail delivers; a sink that gave up fails the resource (its undelivered items count as
// failed and stay with the job) instead of stopping the run.
func (r *runner) deliverOrFail(ctx context.Context, res string, flush bool) (failed bool, err error) {
	err = r.deliver(ctx, res, flush)
	var sf *sinkFailure
	if !errors.As(err, &sf) {
		return false, err
	}
	p := r.prog[res]
	p.addError(clip.Bytes(sf.Error(), 300, clip.Ellipsis))
	p.Phase = PhaseFailed
	p.Failed += r.stored[res] - r.cp.sinkCursor[res]
	r.e.log.Warn("sync job: the sink refused a batch", "jobId", r.meta.ID, "resource", res, "error", sf.Error())
	return true, r.commit(ctx, &batch{}, res)
}

// failStep records an upstream failure of a list step and ends the step.
func (r *runner) failStep(ctx context.Context, step string, page int, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res := resourceOf(step)
	p := r.prog[res]
	what := res
	if step == stepChatScan {
		what = "chat list"
	}
	p.addError(clip.Bytes(fmt.Sprintf("%s page %d: %v", what, page, err), 300, clip.Ellipsis))
	p.Phase = PhaseFailed
	if sessionLevel(err) {
		r.sessionErr = err
	}
	r.e.log.Warn("sync job: a resource failed", "jobId", r.meta.ID, "step", step, "page", page, "error", err.Error())
	if step != stepChatScan {
		if _, err := r.deliverOrFail(ctx, res, true); err != nil {
			return err
		}
	}
	return r.commit(ctx, &batch{}, res)
}

// failFast fails a step because of an earlier session-level failure.
func (r *runner) failFast(ctx context.Context, res string) error {
	p := r.prog[res]
	p.Phase = PhaseFailed
	p.addError(clip.Bytes("not read: "+r.sessionErr.Error(), 300, clip.Ellipsis))
	return r.commit(ctx, &batch{}, res)
}

// listStep reads every page of the contacts or chats from the checkpoint on.
func (r *runner) listStep(ctx context.Context, step string) error {
	if r.sessionErr != nil {
		return r.failFast(ctx, resourceOf(step))
	}
	r.prog[resourceOf(step)].Phase = PhaseRunning
	for page := max(r.cp.Page, 1); !r.canceled && !r.cp.Listed; page++ {
		if ended, err := r.listPage(ctx, step, page); err != nil || ended {
			return err
		}
	}
	if r.canceled {
		return nil
	}
	return r.endList(ctx, step)
}

// listPage reads one page of the step's list, then in one write keeps its new and changed items,
// queues the chats whose messages are to be read and moves the checkpoint on, and delivers the
// full batches. ended says the step ended early: the upstream or the sink failed (the progress
// says so).
func (r *runner) listPage(ctx context.Context, step string, page int) (ended bool, err error) {
	res := resourceOf(step)
	recs, chats, more, err := r.readListPage(ctx, step, page)
	if err != nil {
		return true, r.failStep(ctx, step, page, err)
	}
	b := &batch{}
	resources := []string{res}
	if step != stepChatScan {
		fresh, _, err := r.classify(ctx, res, recs)
		if err != nil {
			return false, err
		}
		r.stage(b, res, fresh)
	}
	if r.listsChatsForMessages(step) {
		if err := r.queueChangedChats(ctx, b, chats); err != nil {
			return false, err
		}
		resources = append(resources, ResourceMessages)
	}
	r.cp.Page, r.cp.Listed = page+1, !more
	if err := r.commit(ctx, b, resources...); err != nil {
		return false, err
	}
	if step == stepChatScan {
		return false, nil
	}
	return r.deliverOrFail(ctx, res, false)
}

// readListPage fetches one page of the step's list: the contacts or chats normalised (none for a
// chat scan), the chats as listed (for the messages step) and whether another page follows.
func (r *runner) readListPage(ctx context.Context, step string, page int) (recs []normalized, chats []upstream.Chat, more bool, err error) {
	sid, p := r.meta.SessionID, r.prog[resourceOf(step)]
	params := upstream.ListParams{Page: page, Limit: r.e.cfg.PageLimit}
	if step == stepContacts {
		pg, err := fetchPage(ctx, r, func(ctx context.Context) (upstream.Page[upstream.Contact], error) {
			return r.e.cfg.Upstream.Contacts(ctx, sid, params)
		})
		if err != nil {
			return nil, nil, false, err
		}
		recs, _ = keepPage(p, pg.Items, crm.NormalizeContact, func(c crm.Contact) string { return c.ID })
		return recs, nil, morePages(pg, page, params.Limit), nil
	}
	pg, err := fetchPage(ctx, r, func(ctx context.Context) (upstream.Page[upstream.Chat], error) {
		return r.e.cfg.Upstream.Chats(ctx, sid, params)
	})
	if err != nil {
		return nil, nil, false, err
	}
	if step != stepChatScan {
		recs, _ = keepPage(p, pg.Items, crm.NormalizeChat, func(c crm.Chat) string { return c.ID })
	}
	return recs, pg.Items, morePages(pg, page, params.Limit), nil
}

// keepPage counts a fetched page in p and normalises its items: norm maps an upstream item to the
// CRM schema, key gives the item's key in the session's hashes ("" when it has no id). An item
// without an id, or that cannot be encoded, counts as failed. kept are the normalised items of
// recs, in the same order.
func keepPage[T, N any](p *Progress, items []T, norm func(T) N, key func(N) string) (recs []normalized, kept []N) {
	p.Pages++
	p.Fetched += len(items)
	recs = make([]normalized, 0, len(items))
	kept = make([]N, 0, len(items))
	for _, it := range items {
		n := norm(it)
		k := key(n)
		if k == "" {
			p.Failed++
			continue
		}
		rec, err := normalizeItem(k, n)
		if err != nil {
			p.Failed++
			continue
		}
		recs = append(recs, rec)
		kept = append(kept, n)
	}
	return recs, kept
}

// listsChatsForMessages says whether the step's chat list feeds the messages step.
func (r *runner) listsChatsForMessages(step string) bool {
	return step != stepContacts && r.wants(ResourceMessages)
}

// endList ends a list read to its end: the last items delivered, the resource done, and the chat
// list known complete for the messages step.
func (r *runner) endList(ctx context.Context, step string) error {
	if step != stepChatScan {
		if failed, err := r.deliverOrFail(ctx, resourceOf(step), true); err != nil || failed {
			return err
		}
		r.prog[resourceOf(step)].Phase = PhaseDone
	}
	if r.listsChatsForMessages(step) {
		r.cp.ChatsListed = true
	}
	return nil
}

// queueChangedChats adds to b the chats of a page whose messages this job must read: every chat of
// a full job, else those whose message count or last message time differ from the last sync.
func (r *runner) queueChangedChats(ctx context.Context, b *batch, chats []upstream.Chat) error {
	ids := make([]string, 0, len(chats))
	states := make([]string, 0, len(chats))
	for _, c := range chats {
		if c.ChatID == "" || strings.Contains(c.ChatID, sep) {
			continue
		}
		ids = append(ids, c.ChatID)
		states = append(states, chatState(c))
	}
	if len(ids) == 0 {
		return nil
	}
	prev, err := retryRedis(ctx, r.st, func() ([]any, error) { return r.st.rdb.HMGet(ctx, r.st.k.chatState(r.meta.SessionID), ids...).Result() })
	if err != nil {
		return fmt.Errorf("syncjob: read chat states: %w", err)
	}
	var entries []any
	for i, id := range ids {
		old, _ := prev[i].(string)
		if r.meta.Full || old != states[i] {
			entries = append(entries, id+sep+states[i])
		}
	}
	if n := len(entries); n > 0 {
		b.add("RPUSH", r.st.k.pendingChats(r.meta.SessionID, r.meta.ID), entries...)
		b.add("PEXPIRE", r.st.k.pendingChats(r.meta.SessionID, r.meta.ID), r.e.cfg.JobTTL.Milliseconds())
		r.prog[ResourceMessages].Chats += n
	}
	return nil
}

// markChat records that a chat's messages were all read: its state is saved now when they are
// delivered, else when the sink acknowledges the last of them.
func (r *runner) markChat(b *batch, chatID, state string) {
	end := r.stored[ResourceMessages]
	if r.e.sink == nil || r.cp.sinkCursor[ResourceMessages] >= end {
		b.add("HSET", r.st.k.chatState(r.meta.SessionID), chatID, state)
		return
	}
	b.add("RPUSH", r.st.k.marks(r.meta.SessionID, r.meta.ID), strconv.Itoa(end)+sep+chatID+sep+state)
	b.add("PEXPIRE", r.st.k.marks(r.meta.SessionID, r.meta.ID), r.e.cfg.JobTTL.Milliseconds())
	r.marks = append(r.marks, mark{end: end, chatID: chatID, state: state})
}

// pendingChunk is how many chats of the job's list are read from Redis at once.
const pendingChunk = 100

// messagesStep reads the messages of the job's chats, from the checkpoint's chat and page on. In an
// incremental job, a chat's paging stops at the first page that reaches an unchanged message not
// newer than the chat's last synced message.
func (r *runner) messagesStep(ctx context.Context) error {
	p := r.prog[ResourceMessages]
	if r.sessionErr != nil {
		return r.failFast(ctx, ResourceMessages)
	}
	chatsFailedBefore := p.Phase == PhaseFailed // the chat list could not be read completely
	p.Phase = PhaseRunning
	chats, err := r.pendingChats(ctx)
	if err != nil {
		return err
	}
	var t chatTally
	for i := r.cp.Chat; i < chats.total && !r.canceled && !t.gaveUp; i++ {
		c, ok, err := chats.at(ctx, i)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if ended, err := r.syncChat(ctx, c, &t); err != nil || ended {
			return err
		}
	}
	if r.canceled {
		return nil
	}
	if failed, err := r.deliverOrFail(ctx, ResourceMessages, true); err != nil || failed {
		return err
	}
	r.endMessages(chatsFailedBefore, t)
	return nil
}

// pendingChat is one chat of the job's list of chats whose messages it reads.
type pendingChat struct {
	index int    // its place in the list
	id    string // its id as the chat list gave it
	state string // its state as the chat list showed it (see chatState)
	prev  string // its state when it was last synced ("" when never)
}

// pendingChatList reads the job's list of chats to sync pendingChunk at a time, with the states
// the chats had when last synced.
type pendingChatList struct {
	r     *runner
	total int
	chunk []string
	prev  []any
	start int // index of chunk[0]; -1 before the first read
}

// pendingChats opens the job's list of chats to sync.
func (r *runner) pendingChats(ctx context.Context) (*pendingChatList, error) {
	total, err := retryRedis(ctx, r.st, func() (int64, error) {
		return r.st.rdb.LLen(ctx, r.st.k.pendingChats(r.meta.SessionID, r.meta.ID)).Result()
	})
	if err != nil {
		return nil, fmt.Errorf("syncjob: read chats to sync: %w", err)
	}
	return &pendingChatList{r: r, total: int(total), start: -1}, nil
}

// at returns chat i of the list, reading the chunk that holds it when needed; ok is false past the
// list's end.
func (l *pendingChatList) at(ctx context.Context, i int) (c pendingChat, ok bool, err error) {
	if l.start < 0 || i >= l.start+len(l.chunk) {
		if err := l.read(ctx, i); err != nil {
			return pendingChat{}, false, err
		}
		if len(l.chunk) == 0 {
			return pendingChat{}, false, nil
		}
	}
	id, state, _ := strings.Cut(l.chunk[i-l.start], sep)
	prev, _ := l.prev[i-l.start].(string)
	return pendingChat{index: i, id: id, state: state, prev: prev}, true, nil
}

// read loads the chunk of the list from index i on, and the chats' states as last synced.
func (l *pendingChatList) read(ctx context.Context, i int) error {
	r, pk := l.r, l.r.st.k.pendingChats(l.r.meta.SessionID, l.r.meta.ID)
	chunk, err := retryRedis(ctx, r.st, func() ([]string, error) { return r.st.rdb.LRange(ctx, pk, int64(i), int64(i+pendingChunk-1)).Result() })
	if err != nil {
		return fmt.Errorf("syncjob: read chats to sync: %w", err)
	}
	l.chunk = chunk
	if len(chunk) == 0 {
		return nil
	}
	ids := make([]string, len(chunk))
	for k, entry := range chunk {
		ids[k], _, _ = strings.Cut(entry, sep)
	}
	if l.prev, err = retryRedis(ctx, r.st, func() ([]any, error) { return r.st.rdb.HMGet(ctx, r.st.k.chatState(r.meta.SessionID), ids...).Result() }); err != nil {
		return fmt.Errorf("syncjob: read chat states: %w", err)
	}
	l.start = i
	return nil
}

// chatTally counts the chats whose messages could not be read.
type chatTally struct {
	failed, inARow int
	// gaveUp: the step stops (a session-level failure, or too many chats failed in a row).
	gaveUp bool
}

// syncChat reads one chat's messages page by page, from the checkpoint's page when the run
// resumes in this chat, until its last page or, in an incremental job, a page that reaches a
// message already synced. ended says the sink gave up: the step ends there.
func (r *runner) syncChat(ctx context.Context, c pendingChat, t *chatTally) (ended bool, err error) {
	page := 1
	if c.index == r.cp.Chat {
		page = max(r.cp.Page, 1)
	}
	for ; !r.canceled; page++ {
		params := upstream.ListParams{Page: page, Limit: r.e.cfg.PageLimit}
		pg, err := fetchPage(ctx, r, func(ctx context.Context) (upstream.Page[upstream.Message], error) {
			return r.e.cfg.Upstream.ChatMessages(ctx, r.meta.SessionID, c.id, params)
		})
		if err != nil {
			return false, r.chatFailed(ctx, c, page, err, t)
		}
		t.inARow = 0
		more, ended, err := r.keepMessages(ctx, c, page, pg)
		if err != nil || ended || !more {
			return ended, err
		}
	}
	return false, nil
}

// keepMessages keeps a page of a chat's messages: in one write its new and changed items, the
// checkpoint and, on the chat's last page, the chat marked read; then it delivers the full
// batches. more says whether the chat has another page to read, ended that the sink gave up.
func (r *runner) keepMessages(ctx context.Context, c pendingChat, page int, pg upstream.Page[upstream.Message]) (more, ended bool, err error) {
	p := r.prog[ResourceMessages]
	recs, kept := keepPage(p, pg.Items, func(m upstream.Message) crm.Message { return crm.NormalizeMessage(c.id, m) },
		func(m crm.Message) string {
			if m.ID == "" {
				return ""
			}
			return messageKey(m)
		})
	out, fresh, err := r.classify(ctx, ResourceMessages, recs)
	if err != nil {
		return false, false, err
	}
	more = morePages(pg, page, r.e.cfg.PageLimit) && !r.reachedSynced(c, kept, fresh)
	b := &batch{}
	r.stage(b, ResourceMessages, out)
	if more {
		r.cp.Chat, r.cp.Page = c.index, page+1
	} else {
		p.ChatsDone++
		r.markChat(b, c.id, c.state)
		r.cp.Chat, r.cp.Page = c.index+1, 1
	}
	if err := r.commit(ctx, b, ResourceMessages); err != nil {
		return false, false, err
	}
	ended, err = r.deliverOrFail(ctx, ResourceMessages, false)
	return more, ended, err
}

// reachedSynced says whether an incremental job's page of a chat holds an unchanged message not
// newer than the chat's last synced message: the pages after it were synced already.
func (r *runner) reachedSynced(c pendingChat, msgs []crm.Message, fresh []bool) bool {
	prevLast := lastAtOfState(c.prev)
	if r.meta.Full || c.prev == "" || prevLast.IsZero() {
		return false
	}
	for k, m := range msgs {
		if !fresh[k] && m.Timestamp != nil && !m.Timestamp.IsZero() && !m.Timestamp.After(prevLast) {
			return true
		}
	}
	return false
}

// chatFailed records that a chat's messages could not be read: the step gives up on a
// session-level failure or after maxChatFailuresInARow chats in a row, else the run goes on with
// the next chat.
func (r *runner) chatFailed(ctx context.Context, c pendingChat, page int, err error, t *chatTally) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	p := r.prog[ResourceMessages]
	p.addError(clip.Bytes(fmt.Sprintf("messages of chat %s page %d: %v", c.id, page, err), 300, clip.Ellipsis))
	r.e.log.Warn("sync job: a chat's messages failed", "jobId", r.meta.ID, "page", page, "error", err.Error())
	if sessionLevel(err) {
		r.sessionErr = err
		t.gaveUp = true
		return nil
	}
	t.failed++
	if t.inARow++; t.inARow >= maxChatFailuresInARow {
		p.addError(fmt.Sprintf("stopped after the messages of %d chats in a row failed", t.inARow))
		t.gaveUp = true
		return nil
	}
	r.cp.Chat, r.cp.Page = c.index+1, 1
	return r.commit(ctx, &batch{}, ResourceMessages)
}

// endMessages sets the messages' phase once every chat was read or the step gave up.
func (r *runner) endMessages(chatsFailedBefore bool, t chatTally) {
	p := r.prog[ResourceMessages]
	switch {
	case r.sessionErr != nil || t.gaveUp:
		p.Phase = PhaseFailed
	case chatsFailedBefore || !r.cp.ChatsListed:
		p.Phase = PhaseFailed
		p.addError(fmt.Sprintf("the chat list could not be read completely: messages were read for the %d chats listed", p.Chats))
	case t.failed > 0:
		p.Phase = PhasePartial
	default:
		p.Phase = PhaseDone
	}
}

// finalState decides how the job ended from its resources' phases.
func (r *runner) finalState() string {
	if r.canceled {
		for _, p := range r.prog {
			if p.Phase == PhaseRunning || p.Phase == PhasePending {
				p.Phase = PhaseCanceled
			}
		}
		return StateCanceled
	}
	done, failed := 0, 0
	var errs []string
	for _, res := range r.meta.Resources {
		p := r.prog[res]
		if r.timedOut && (p.Phase == PhaseRunning || p.Phase == PhasePending) {
			p.Phase = PhaseFailed
		}
		switch p.Phase {
		case PhaseDone:
			done++
		case PhaseFailed:
			failed++
			msg := res + " failed"
			if len(p.Errors) > 0 {
				msg += ": " + p.Errors[0]
			}
			errs = append(errs, msg)
		case PhasePartial:
			errs = append(errs, res+" incomplete")
		}
	}
	if r.jobErr != "" {
		errs = append([]string{r.jobErr}, errs...)
	}
	r.jobErr = clip.Bytes(strings.Join(errs, "; "), 500, clip.Ellipsis)
	switch {
	case done == len(r.meta.Resources):
		return StateSucceeded
	case failed == len(r.meta.Resources):
		return StateFailed
	}
	return StatePartial
}

// finalFields are the job's fields written when it ends.
func (r *runner) finalFields() []any {
	out := []any{fError, r.jobErr}
	for _, res := range r.meta.Resources {
		raw, _ := json.Marshal(r.prog[res])
		out = append(out, fProgress+res, string(raw))
	}
	return out
}
