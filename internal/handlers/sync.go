package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/jsonbody"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/syncjob"
)

// SyncJobs is what the sync routes need from the sync engine (*syncjob.Engine).
type SyncJobs interface {
	Sync(ctx context.Context, sessionID string, req syncjob.Request) (syncjob.Job, bool, error)
	Job(ctx context.Context, id string) (syncjob.Job, error)
	SessionJobs(ctx context.Context, sessionID string, limit int) ([]syncjob.Job, error)
	Cancel(ctx context.Context, id string) (syncjob.Job, error)
	Items(ctx context.Context, jobID, resource, cursor string, limit int) (syncjob.ItemPage, error)
}

// SyncRequest is the optional body of POST /v1/sessions/{sessionId}/sync.
type SyncRequest struct {
	// Resources to sync; omitted or empty means all three.
	Resources []string `json:"resources" enums:"contacts,chats,messages" example:"contacts,chats,messages"`
	// Full re-reads the messages of every chat, not only of those that changed since the last sync.
	Full bool `json:"full" example:"false"`
}

// SyncJobMeta says whether the answer's job was created by the request.
type SyncJobMeta struct {
	Created bool `json:"created" example:"true"`
}

// SyncJobAnswer is the answer of the one-job routes.
type SyncJobAnswer struct {
	Data syncjob.Job `json:"data"`
	Meta SyncJobMeta `json:"meta"`
}

// SyncJobGetAnswer is the answer of GET and DELETE /v1/sync-jobs/{jobId}.
type SyncJobGetAnswer struct {
	Data syncjob.Job    `json:"data"`
	Meta map[string]any `json:"meta"`
}

// SyncJobList is the answer of GET /v1/sessions/{sessionId}/sync-jobs, newest first.
type SyncJobList struct {
	Data []syncjob.Job `json:"data"`
	Meta SyncListMeta  `json:"meta"`
}

// SyncListMeta describes a list of jobs.
type SyncListMeta struct {
	Limit int `json:"limit" example:"20"`
	Total int `json:"total" example:"3"`
}

// SyncItemsAnswer is a page of the items a job found new or changed: Contact, Chat or Message
// objects of package crm, by resource.
type SyncItemsAnswer struct {
	Data []json.RawMessage `json:"data" swaggertype:"array,object"`
	Meta SyncItemsMeta     `json:"meta"`
}

// SyncItemsMeta pages the items: pass nextCursor as cursor for the next page; it stays valid while
// the job runs and finds more.
type SyncItemsMeta struct {
	Resource   string `json:"resource" example:"contacts"`
	Limit      int    `json:"limit" example:"100"`
	Total      int    `json:"total" example:"25000"`
	NextCursor string `json:"nextCursor" example:"aTEuY29udGFjdHMuMTAwLjJiN2U4YTEx"`
	HasMore    bool   `json:"hasMore" example:"true"`
}

// Defaults of the event stream.
const (
	sseDefaultPoll      = 500 * time.Millisecond
	sseDefaultHeartbeat = 15 * time.Second
	sseWriteWindow      = 30 * time.Second
)

type syncHandlers struct {
	jobs SyncJobs
	// poll is how often the event stream reads the job; heartbeat how often it sends a comment when
	// nothing changed (so that proxies keep the connection).
	poll, heartbeat time.Duration
	// streams ends the event streams when the replica stops.
	streams *Streams
}

// registerSync adds the sync routes to the /v1 group: POST and DELETE and the reads all need the
// sync scope; the items route, which answers contacts, chats and messages themselves, needs
// messages:read as well (sync alone starts and follows jobs, it reads no message).
func registerSync(v1 *gin.RouterGroup, require func(scope string) gin.HandlerFunc, jobs SyncJobs, streams *Streams) {
	syncHandlers{jobs: jobs, poll: sseDefaultPoll, heartbeat: sseDefaultHeartbeat, streams: streams}.register(v1, require)
}

// sseReconnect is the last event of a stream whose replica stops: the job goes on, and the client
// follows it again by reconnecting (the load balancer sends it to another replica). retry asks an
// EventSource to reconnect after a second.
const sseReconnect = "retry: 1000\nevent: reconnect\ndata: {\"detail\":\"This gateway replica is shutting down; the job goes on. Reconnect to follow it.\"}\n\n"

func (h syncHandlers) register(v1 *gin.RouterGroup, require func(scope string) gin.HandlerFunc) {
	v1.POST("/sessions/:sessionId/sync", require("sync"), h.start)
	v1.GET("/sessions/:sessionId/sync-jobs", require("sync"), h.list)
	v1.GET("/sync-jobs/:jobId", require("sync"), h.get)
	v1.DELETE("/sync-jobs/:jobId", require("sync"), h.cancel)
	v1.GET("/sync-jobs/:jobId/events", require("sync"), h.events)
	v1.GET("/sync-jobs/:jobId/items/:resource", require("sync"), require("messages:read"), h.items)
}

// jobIDPattern is the job id the routes accept (the engine makes UUIDs).
var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

func jobIDParam(c *gin.Context) (string, bool) {
	id := c.Param("jobId")
	if !jobIDPattern.MatchString(id) {
		middleware.Fail(c, problem.Invalid("The jobId is not valid.",
			problem.Field("jobId", "must be 1 to 64 characters of A-Z, a-z, 0-9 and -")))
		return "", false
	}
	return id, true
}

// syncProblem maps the engine's errors to answers; others go to the common mapping.
func syncProblem(err error) error {
	switch {
	case errors.Is(err, syncjob.ErrJobNotFound):
		return &problem.Error{Status: http.StatusNotFound, Code: problem.CodeJobNotFound,
			Detail: "No sync job has that id (jobs are kept for a few days).", Cause: err}
	case errors.Is(err, syncjob.ErrJobFinished):
		return &problem.Error{Status: http.StatusConflict, Code: problem.CodeConflict,
			Detail: "The sync job has already finished; there is nothing to cancel.", Cause: err}
	case errors.Is(err, syncjob.ErrItemsExpired):
		return &problem.Error{Status: http.StatusNotFound, Code: problem.CodeNotFound,
			Detail: "The items of this sync job have expired. Run a new sync with full: true to get them again.", Cause: err}
	case errors.Is(err, syncjob.ErrInvalidCursor):
		return problem.Invalid("The cursor was not made for this job's items.",
			problem.Field("cursor", "must be a nextCursor of this job and resource"))
	case errors.Is(err, syncjob.ErrInvalidRequest):
		return problem.Invalid("The sync request is not valid.",
			problem.Field("resources", "each must be one of contacts, chats, messages"))
	}
	return err
}

// readSyncRequest decodes the optional body (jsonbody.Decode): unknown or repeated members,
// unknown resources and trailing data are refused.
func readSyncRequest(c *gin.Context) (syncjob.Request, bool) {
	var body SyncRequest
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		middleware.Fail(c, err) // *http.MaxBytesError: 413
		return syncjob.Request{}, false
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if ct := c.ContentType(); ct != "" && ct != "application/json" {
			middleware.Fail(c, problem.New(http.StatusUnsupportedMediaType, problem.CodeUnsupportedMediaType,
				"The body must be JSON (Content-Type: application/json)."))
			return syncjob.Request{}, false
		}
		if err := jsonbody.Decode(raw, &body); err != nil {
			middleware.Fail(c, err)
			return syncjob.Request{}, false
		}
	}
	if len(body.Resources) > len(syncjob.AllResources) {
		middleware.Fail(c, problem.Invalid("Too many resources.", problem.Field("resources", "at most contacts, chats and messages")))
		return syncjob.Request{}, false
	}
	for i, r := range body.Resources {
		if !slices.Contains(syncjob.AllResources, r) {
			middleware.Fail(c, problem.Invalid("The sync request names an unknown resource.",
				problem.Field(fmt.Sprintf("resources[%d]", i), "must be one of contacts, chats, messages")))
			return syncjob.Request{}, false
		}
	}
	return syncjob.Request{Resources: body.Resources, Full: body.Full, Trigger: syncjob.TriggerAPI}, true
}

// start godoc
//
//	@Summary		Sync now
//	@Description	Queues a sync of the session's contacts, chats and messages for the CRM ("Sincronizar Ahora"). The session must be connected (checked on the live status route). One sync per session runs at a time across every gateway replica: when one is already queued or running, it is answered with 200 instead of a new one. The job reads every page within the background share of the upstream quota, delivers only new and changed items (kept with the job, and pushed to the CRM sink when one is configured), and can be followed at the Location given.
//	@Tags			sync
//	@Accept			json
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sync"]
//	@Param			sessionId	path		string			true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			body		body		SyncRequest		false	"What to sync; omit for everything, incrementally"
//	@Success		202			{object}	SyncJobAnswer	"A new job was queued"
//	@Success		200			{object}	SyncJobAnswer	"The session's job already queued or running"
//	@Header			202			{string}	Location		"/v1/sync-jobs/{jobId}"
//	@Header			200			{string}	Location		"/v1/sync-jobs/{jobId}"
//	@Failure		400			{object}	problem.Details	"INVALID_REQUEST"
//	@Failure		401			{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403			{object}	problem.Details	"FORBIDDEN: needs sync"
//	@Failure		404			{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		409			{object}	problem.Details	"SESSION_NOT_CONNECTED"
//	@Failure		413			{object}	problem.Details	"PAYLOAD_TOO_LARGE"
//	@Failure		415			{object}	problem.Details	"UNSUPPORTED_MEDIA_TYPE"
//	@Failure		429			{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502			{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503			{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504			{object}	problem.Details	"UPSTREAM_TIMEOUT"
//	@Router			/v1/sessions/{sessionId}/sync [post]
func (h syncHandlers) start(c *gin.Context) {
	sid, ok := sessionIDParam(c)
	if !ok {
		return
	}
	req, ok := readSyncRequest(c)
	if !ok {
		return
	}
	job, created, err := h.jobs.Sync(middleware.Context(c), sid, req)
	if err != nil {
		middleware.Fail(c, syncProblem(err))
		return
	}
	c.Header("Location", "/v1/sync-jobs/"+job.ID)
	c.Header("Cache-Control", "no-store")
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
	}
	c.JSON(status, SyncJobAnswer{Data: job, Meta: SyncJobMeta{Created: created}})
}

// list godoc
//
//	@Summary		List a session's sync jobs
//	@Description	The session's recent sync jobs (kept for a few days), newest first.
//	@Tags			sync
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sync"]
//	@Param			sessionId	path		string	true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			limit		query		int		false	"How many (1..50, default 20)"
//	@Success		200			{object}	SyncJobList
//	@Failure		400			{object}	problem.Details	"INVALID_REQUEST"
//	@Failure		401			{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403			{object}	problem.Details	"FORBIDDEN: needs sync"
//	@Router			/v1/sessions/{sessionId}/sync-jobs [get]
func (h syncHandlers) list(c *gin.Context) {
	sid, ok := sessionIDParam(c)
	if !ok {
		return
	}
	limit, ok := syncIntQuery(c, "limit", 20, 1, syncjob.DefaultJobsKept)
	if !ok {
		return
	}
	jobs, err := h.jobs.SessionJobs(middleware.Context(c), sid, limit)
	if err != nil {
		middleware.Fail(c, syncProblem(err))
		return
	}
	if jobs == nil {
		jobs = []syncjob.Job{}
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, SyncJobList{Data: jobs, Meta: SyncListMeta{Limit: limit, Total: len(jobs)}})
}

// syncIntQuery reads an optional integer query parameter within [lo, hi], or answers 400.
func syncIntQuery(c *gin.Context, name string, def, lo, hi int) (int, bool) {
	v, present := c.GetQuery(name)
	if !present {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		middleware.Fail(c, problem.Invalid("The "+name+" is not valid.",
			problem.Field(name, fmt.Sprintf("must be an integer from %d to %d", lo, hi))))
		return 0, false
	}
	return n, true
}

// get godoc
//
//	@Summary		Get a sync job
//	@Description	The job's state (queued, running, succeeded, partial, failed, canceled) and, per resource, its phase and counts: pages, fetched, new, changed, unchanged, delivered, failed, and the errors met. A job ends partial when a resource failed (for example the upstream's chats route answered 500) and others completed.
//	@Tags			sync
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sync"]
//	@Param			jobId	path		string	true	"Job id"
//	@Success		200		{object}	SyncJobGetAnswer
//	@Failure		400		{object}	problem.Details	"INVALID_REQUEST"
//	@Failure		401		{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403		{object}	problem.Details	"FORBIDDEN: needs sync"
//	@Failure		404		{object}	problem.Details	"JOB_NOT_FOUND"
//	@Router			/v1/sync-jobs/{jobId} [get]
func (h syncHandlers) get(c *gin.Context) {
	id, ok := jobIDParam(c)
	if !ok {
		return
	}
	job, err := h.jobs.Job(middleware.Context(c), id)
	if err != nil {
		middleware.Fail(c, syncProblem(err))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, SyncJobGetAnswer{Data: job, Meta: map[string]any{}})
}

// cancel godoc
//
//	@Summary		Cancel a sync job
//	@Description	A queued job ends canceled at once (200). A running job stops between two pages (202, with cancelRequested; follow the job until its state is canceled). Items delivered before the cancel stay delivered.
//	@Tags			sync
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sync"]
//	@Param			jobId	path		string				true	"Job id"
//	@Success		200		{object}	SyncJobGetAnswer	"The job is canceled"
//	@Success		202		{object}	SyncJobGetAnswer	"The job will stop after its current page"
//	@Failure		400		{object}	problem.Details		"INVALID_REQUEST"
//	@Failure		401		{object}	problem.Details		"UNAUTHENTICATED"
//	@Failure		403		{object}	problem.Details		"FORBIDDEN: needs sync"
//	@Failure		404		{object}	problem.Details		"JOB_NOT_FOUND"
//	@Failure		409		{object}	problem.Details		"CONFLICT: the job already finished"
//	@Router			/v1/sync-jobs/{jobId} [delete]
func (h syncHandlers) cancel(c *gin.Context) {
	id, ok := jobIDParam(c)
	if !ok {
		return
	}
	job, err := h.jobs.Cancel(middleware.Context(c), id)
	if err != nil {
		middleware.Fail(c, syncProblem(err))
		return
	}
	status := http.StatusOK
	if !syncjob.Final(job.State) {
		status = http.StatusAccepted
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(status, SyncJobGetAnswer{Data: job, Meta: map[string]any{}})
}

// items godoc
//
//	@Summary		Items a sync job found new or changed
//	@Description	The normalised contacts, chats or messages that the job found new or changed, in the order found, paged by an opaque cursor. Items carry stable ids (contacts and chats: the JID; messages: the WhatsApp message id within chatId) so that the CRM can upsert. They are kept for a configurable time (default 24 h) after the job found them.
//	@Tags			sync
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sync", "messages:read"]
//	@Param			jobId		path		string	true	"Job id"
//	@Param			resource	path		string	true	"contacts, chats or messages"	Enums(contacts, chats, messages)
//	@Param			cursor		query		string	false	"nextCursor of the previous page; omit for the first"
//	@Param			limit		query		int		false	"Page size (1..1000, default 100)"
//	@Success		200			{object}	SyncItemsAnswer
//	@Failure		400			{object}	problem.Details	"INVALID_REQUEST"
//	@Failure		401			{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403			{object}	problem.Details	"FORBIDDEN: needs sync and messages:read"
//	@Failure		404			{object}	problem.Details	"JOB_NOT_FOUND, or NOT_FOUND when the items expired"
//	@Router			/v1/sync-jobs/{jobId}/items/{resource} [get]
func (h syncHandlers) items(c *gin.Context) {
	id, ok := jobIDParam(c)
	if !ok {
		return
	}
	res := c.Param("resource")
	if !slices.Contains(syncjob.AllResources, res) {
		middleware.Fail(c, problem.Invalid("The resource is not valid.",
			problem.Field("resource", "must be one of contacts, chats, messages")))
		return
	}
	limit, ok := syncIntQuery(c, "limit", 100, 1, syncjob.MaxItemsLimit)
	if !ok {
		return
	}
	cursor := c.Query("cursor")
	if len(cursor) > 200 {
		middleware.Fail(c, problem.Invalid("The cursor is not valid.", problem.Field("cursor", "is too long")))
		return
	}
	page, err := h.jobs.Items(middleware.Context(c), id, res, cursor, limit)
	if err != nil {
		middleware.Fail(c, syncProblem(err))
		return
	}
	if page.Items == nil {
		page.Items = []json.RawMessage{}
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, SyncItemsAnswer{Data: page.Items, Meta: SyncItemsMeta{Resource: res, Limit: limit,
		Total: page.Total, NextCursor: page.NextCursor, HasMore: page.HasMore}})
}

// events godoc
//
//	@Summary		Follow a sync job (Server-Sent Events)
//	@Description	A text/event-stream of the job: an event "progress" with the job (as GET /v1/sync-jobs/{jobId} answers it) at once and on every change, comment lines as heartbeats, and a last event "done" with the final state, after which the stream ends. Each event's id is the job's revision. When the replica serving the stream shuts down, the stream ends instead with an event "reconnect" (and retry: 1000): the job goes on, and reconnecting follows it from another replica.
//	@Tags			sync
//	@Produce		text/event-stream
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sync"]
//	@Param			jobId	path		string			true	"Job id"
//	@Success		200		{string}	string			"event: progress / event: done, data: the job as JSON"
//	@Failure		400		{object}	problem.Details	"INVALID_REQUEST"
//	@Failure		401		{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403		{object}	problem.Details	"FORBIDDEN: needs sync"
//	@Failure		404		{object}	problem.Details	"JOB_NOT_FOUND"
//	@Router			/v1/sync-jobs/{jobId}/events [get]
func (h syncHandlers) events(c *gin.Context) {
	id, ok := jobIDParam(c)
	if !ok {
		return
	}
	ctx := middleware.Context(c)
	job, err := h.jobs.Job(ctx, id)
	if err != nil {
		middleware.Fail(c, syncProblem(err))
		return
	}
	s := openEventStream(c.Writer)
	if !s.job("progress", job) {
		return
	}
	if syncjob.Final(job.State) {
		s.job("done", job)
		return
	}
	h.follow(ctx, s, id, job.Revision)
}

// eventStream is an open text/event-stream answer.
type eventStream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// openEventStream answers 200 with the headers of an unbuffered, uncached event stream.
func openEventStream(w http.ResponseWriter) eventStream {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Connection", "keep-alive")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	return eventStream{w: w, rc: http.NewResponseController(w)}
}

// send writes and flushes chunk; false when the client is gone.
//
// The server's WriteTimeout would cut a long stream: every write pushes the deadline on.
// Writers without deadlines (tests' recorders) answer ErrNotSupported, which is fine.
func (s eventStream) send(chunk string) bool {
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteWindow))
	if _, err := io.WriteString(s.w, chunk); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

// job sends the event name with the job as its data and the job's revision as its id.
func (s eventStream) job(name string, j syncjob.Job) bool {
	raw, _ := json.Marshal(j)
	return s.send("id: " + strconv.FormatInt(j.Revision, 10) + "\nevent: " + name + "\ndata: " + string(raw) + "\n\n")
}

// follow sends heartbeats and the job's changes after revision last, until the job ends, the client
// goes or the replica stops.
func (h syncHandlers) follow(ctx context.Context, s eventStream, id string, last int64) {
	poll := time.NewTicker(h.poll)
	defer poll.Stop()
	beat := time.NewTicker(h.heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.streams.Closing():
			s.send(sseReconnect)
			return
		case <-beat.C:
			if !s.send(": keep-alive\n\n") {
				return
			}
		case <-poll.C:
			if !h.sendChange(ctx, s, id, &last) {
				return
			}
		}
	}
}

// sendChange reads the job again and sends it when its revision moved on from *last, "done" when it
// is final; false when the stream is over.
func (h syncHandlers) sendChange(ctx context.Context, s eventStream, id string, last *int64) bool {
	j, err := h.jobs.Job(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			s.send("event: error\ndata: {\"detail\":\"the job can no longer be read\"}\n\n")
		}
		return false
	}
	if j.Revision == *last && !syncjob.Final(j.State) {
		return true
	}
	*last = j.Revision
	if syncjob.Final(j.State) {
		s.job("done", j)
		return false
	}
	return s.job("progress", j)
}
