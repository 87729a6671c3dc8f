package handlers

import (
	"context"
	"encoding/json"
	"iter"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/cache"
	"github.com/inboxhub-gateway/gateway/internal/jid"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// SessionSource is what the session routes need from the upstream.
type SessionSource interface {
	AllSessions(ctx context.Context, limit int) iter.Seq2[upstream.Session, error]
	SessionStatus(ctx context.Context, sessionID string) (upstream.SessionStatus, error)
}

// Session statuses as the gateway answers them, always lower case (the upstream's mixed-case
// statuses are normalised; its qr_code is qr_pending here).
const (
	SessionConnected    = "connected"
	SessionConnecting   = "connecting"
	SessionQRPending    = "qr_pending"
	SessionDisconnected = "disconnected"
	SessionError        = "error"
	SessionRateLimited  = "rate_limited"
)

// Session is a WhatsApp session as the gateway shows it: the string sessionId only, a normalised
// lower-case status, and whether a QR code can be scanned now.
type Session struct {
	SessionID      string     `json:"sessionId" example:"demo_session"`
	Name           string     `json:"name" example:"Ventas"`
	PhoneNumber    string     `json:"phoneNumber,omitempty" example:"34657032985"`
	JID            string     `json:"jid,omitempty" example:"34657032985:71@s.whatsapp.net"`
	Status         string     `json:"status" enums:"connected,connecting,qr_pending,disconnected,error,rate_limited" example:"connected"`
	QR             SessionQR  `json:"qr"`
	LastActivityAt *time.Time `json:"lastActivityAt" example:"2026-11-28T10:00:00Z"`
	UpdatedAt      *time.Time `json:"updatedAt" example:"2026-11-28T10:00:00Z"`
}

// SessionQR says whether a QR code is waiting to be scanned, and until when.
type SessionQR struct {
	Available bool       `json:"available" example:"false"`
	ExpiresAt *time.Time `json:"expiresAt" example:"2026-11-28T10:01:00Z"`
}

// ListMeta describes a list answer.
type ListMeta struct {
	Total int        `json:"total" example:"3"`
	Cache *CacheMeta `json:"cache,omitempty"`
}

// CacheMeta says how a cached read was answered: hit (fresh from the cache), miss (read from
// Inbox Hub now) or stale (an older copy, because Inbox Hub is failing or it is being refreshed),
// and the age of what was answered.
type CacheMeta struct {
	Status     string `json:"status" enums:"hit,miss,stale" example:"hit"`
	AgeSeconds int64  `json:"ageSeconds" example:"2"`
}

// cacheFacts starts recording what the cache does for this request's reads, for an answer that
// is a function of the one value read (see conditional.go). Once the reads are done, the returned
// func gives the facts for meta.cache (nil when no cached read happened) and sets the answer's
// ETag and Cache-Control; done is true when it answered 304 (If-None-Match named the value), and
// the handler writes nothing more.
func cacheFacts(c *gin.Context) (context.Context, func() (meta *CacheMeta, done bool)) {
	ctx, rec := cache.Track(middleware.Context(c))
	return ctx, func() (*CacheMeta, bool) {
		info, ok := rec.Info()
		if !ok {
			return nil, false
		}
		return cacheMetaOf(info), answerConditional(c, info, ok, versionETag(info.Version), nil)
	}
}

func cacheMetaOf(info cache.Info) *CacheMeta {
	return &CacheMeta{Status: string(info.Status), AgeSeconds: int64(info.Age / time.Second)}
}

// SessionList is the answer of GET /v1/sessions.
type SessionList struct {
	Data []Session `json:"data"`
	Meta ListMeta  `json:"meta"`
}

// SessionAnswer is the answer of the one-session routes.
type SessionAnswer struct {
	Data Session        `json:"data"`
	Meta map[string]any `json:"meta"`
}

// sessionIDPattern is the string session id the routes accept: 3 to 100 letters, digits, _ or -,
// as the upstream allows.
var sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{3,100}$`)

// sessionIDParam returns the validated sessionId path parameter, or answers 400.
func sessionIDParam(c *gin.Context) (string, bool) {
	id := c.Param("sessionId")
	if !sessionIDPattern.MatchString(id) {
		middleware.Fail(c, problem.Invalid("The sessionId is not valid.",
			problem.Field("sessionId", "must be 3 to 100 characters of A-Z, a-z, 0-9, _ and -")))
		return "", false
	}
	return id, true
}

// NormalizeSessionStatus maps an upstream status (any case) to the gateway's statuses.
func NormalizeSessionStatus(s string) string {
	switch upstream.NormalizeStatus(s) {
	case upstream.StatusConnected:
		return SessionConnected
	case upstream.StatusConnecting, upstream.StatusPending:
		return SessionConnecting
	case upstream.StatusQRCode:
		return SessionQRPending
	case upstream.StatusDisconnected:
		return SessionDisconnected
	case upstream.StatusRateLimited:
		return SessionRateLimited
	default:
		return SessionError
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func sessionFrom(s upstream.Session) Session {
	out := Session{
		SessionID:      s.SessionID,
		Name:           s.SessionName,
		PhoneNumber:    s.PhoneNumber,
		JID:            s.PhoneNumberID,
		Status:         NormalizeSessionStatus(s.Status),
		LastActivityAt: timePtr(s.LastActivity),
		UpdatedAt:      timePtr(s.UpdatedAt),
	}
	if out.PhoneNumber == "" {
		out.PhoneNumber = jid.Phone(s.PhoneNumberID)
	}
	if s.HasQR && s.QRCode != "" && (s.QRCodeExpiresAt.IsZero() || s.QRCodeExpiresAt.After(time.Now())) {
		out.QR = SessionQR{Available: true, ExpiresAt: timePtr(s.QRCodeExpiresAt)}
	}
	return out
}

type sessionHandlers struct {
	src SessionSource
	// rendered keeps the JSON of the last list answered from the cache, so that the hottest
	// read of the API does not encode the same sessions again for every caller.
	rendered *atomic.Pointer[renderedList]
}

// renderedList is the encoded data of a session list, valid for the cached version it was made
// from (stored) and until a QR code shown as available expires.
type renderedList struct {
	stored time.Time
	until  time.Time
	data   []byte
	etag   string
	// etagValue is the ETag header's value, made once.
	etagValue []string
	// last is the whole answer body made last from data (its meta changes with the cache's
	// status and the value's age in seconds), shared by the requests that answer the same.
	last atomic.Pointer[listBody]
}

// listBody is an answer body of a session list, and the meta it was made with.
type listBody struct {
	total  int
	cached bool
	meta   CacheMeta
	body   []byte
}

// body is the answer body of data with the meta total and cacheMeta (nil: no cached read), the
// one made last when it had the same meta.
func (r *renderedList) body(total int, cacheMeta *CacheMeta) []byte {
	if b := r.last.Load(); b != nil && b.total == total && b.cached == (cacheMeta != nil) &&
		(cacheMeta == nil || b.meta == *cacheMeta) {
		return b.body
	}
	b := &listBody{total: total, cached: cacheMeta != nil, body: listAnswer(r.data, total, cacheMeta)}
	if cacheMeta != nil {
		b.meta = *cacheMeta
	}
	r.last.Store(b)
	return b.body
}

// listAnswer is the answer body {"data": data, "meta": {"total": total, "cache": cacheMeta}}.
func listAnswer(data []byte, total int, cacheMeta *CacheMeta) []byte {
	body := make([]byte, 0, len(data)+96)
	body = append(append(body, `{"data":`...), data...)
	return append(appendListMeta(append(body, `,"meta":`...), total, cacheMeta), '}')
}

// list godoc
//
//	@Summary		List sessions
//	@Description	Every WhatsApp session, normalised: the string sessionId, a lower-case status, and whether a QR code is waiting.
//	@Tags			sessions
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sessions:read"]
//	@Param			If-None-Match	header		string	false	"An ETag of an earlier answer (or *): 304 without a body while the data is unchanged"
//	@Success		200				{object}	SessionList
//	@Header			200				{string}	ETag			"Strong tag of the data (not of meta.cache); absent when the cache did not keep the answer"
//	@Header			200				{string}	Cache-Control	"private, max-age=<whole seconds the data stays fresh in the gateway>"
//	@Success		304				"Not Modified: If-None-Match names the current data; no body"
//	@Failure		401				{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403				{object}	problem.Details	"FORBIDDEN: needs sessions:read"
//	@Failure		429				{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502				{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503				{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504				{object}	problem.Details	"UPSTREAM_TIMEOUT"
//	@Router			/v1/sessions [get]
func (h sessionHandlers) list(c *gin.Context) {
	ctx, rec := cache.Track(middleware.Context(c))
	// The read is done when the first session is yielded: from then on, when the encoding of this
	// cached version is kept, the sessions are only counted. (One struct: what the loop's body
	// captures goes to the heap, once.)
	var st struct {
		out  []Session
		kept *renderedList
		n    int
	}
	for s, err := range h.src.AllSessions(ctx, upstream.MaxLimit) {
		if err != nil {
			middleware.Fail(c, err)
			return
		}
		if st.n == 0 {
			st.kept = h.keptList(rec)
		}
		st.n++
		if st.kept == nil {
			st.out = append(st.out, sessionFrom(s))
		}
	}
	out, kept, n := st.out, st.kept, st.n
	info, cached := rec.Info()
	data, etag, etagValue := []byte(nil), "", []string(nil)
	if kept != nil {
		data, etag, etagValue = kept.data, kept.etag, kept.etagValue
	} else {
		var err error
		if data, etag, err = h.renderList(nonNil(out), info, cached); err != nil {
			middleware.Fail(c, err)
			return
		}
	}
	if answerConditional(c, info, cached, etag, etagValue) {
		return
	}
	var cacheMeta *CacheMeta
	if cached {
		cacheMeta = cacheMetaOf(info)
	}
	if kept != nil {
		writeJSON(c, http.StatusOK, kept.body(n, cacheMeta))
		return
	}
	writeJSON(c, http.StatusOK, listAnswer(data, n, cacheMeta))
}

// nonNil is s, or an empty slice (encoded [] rather than null) when s is nil.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// appendListMeta appends the JSON of ListMeta{Total: total, Cache: cache} to b, as encoding/json
// writes it, without reflection or allocation (the cache status is one of cache.Status's
// constants, which need no escaping).
func appendListMeta(b []byte, total int, cache *CacheMeta) []byte {
	b = strconv.AppendInt(append(b, `{"total":`...), int64(total), 10)
	if cache != nil {
		b = append(append(append(b, `,"cache":{"status":"`...), cache.Status...), `","ageSeconds":`...)
		b = append(strconv.AppendInt(b, cache.AgeSeconds, 10), '}')
	}
	return append(b, '}')
}

// keptList is the kept encoding of the session list the cache read recorded by rec returned, or
// nil when there is none for that version (or it shows a QR code that has expired since).
func (h sessionHandlers) keptList(rec *cache.Recorder) *renderedList {
	info, cached := rec.Info()
	if !cached || info.Stored.IsZero() || h.rendered == nil {
		return nil
	}
	if r := h.rendered.Load(); r != nil && r.stored.Equal(info.Stored) && time.Now().Before(r.until) {
		return r
	}
	return nil
}

// renderList encodes the sessions and, when they are a cached version, keeps the encoding for
// the next requests (keptList). The ETag ("" when the cache did not keep the list) is a hash of
// the encoded data, not of the cached value: whether a QR code is shown as available also
// depends on the time.
func (h sessionHandlers) renderList(out []Session, info cache.Info, cached bool) (data []byte, etag string, err error) {
	data, err = json.Marshal(out)
	if err != nil {
		return nil, "", err
	}
	if cached && info.Version != "" {
		etag = versionETag(cache.VersionOf(data))
	}
	if !cached || info.Stored.IsZero() || h.rendered == nil {
		return data, etag, nil
	}
	until := time.Now().Add(time.Minute)
	for _, s := range out {
		if s.QR.Available && s.QR.ExpiresAt != nil && s.QR.ExpiresAt.Before(until) {
			until = *s.QR.ExpiresAt
		}
	}
	h.rendered.Store(&renderedList{stored: info.Stored, until: until, data: data, etag: etag, etagValue: middleware.Shared(etag)})
	return data, etag, nil
}

// get godoc
//
//	@Summary		Get a session
//	@Description	One session's live state, read from the upstream's status route.
//	@Tags			sessions
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sessions:read"]
//	@Param			sessionId		path		string	true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			If-None-Match	header		string	false	"An ETag of an earlier answer (or *): 304 without a body while the data is unchanged"
//	@Success		200				{object}	SessionAnswer
//	@Header			200				{string}	ETag			"Strong tag of the data (not of meta.cache); absent when the cache did not keep the answer"
//	@Header			200				{string}	Cache-Control	"private, max-age=<whole seconds the data stays fresh in the gateway>"
//	@Success		304				"Not Modified: If-None-Match names the current data; no body"
//	@Failure		400				{object}	problem.Details	"INVALID_REQUEST"
//	@Failure		401				{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403				{object}	problem.Details	"FORBIDDEN: needs sessions:read"
//	@Failure		404				{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		429				{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502				{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503				{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504				{object}	problem.Details	"UPSTREAM_TIMEOUT"
//	@Router			/v1/sessions/{sessionId} [get]
func (h sessionHandlers) get(c *gin.Context) {
	id, ok := sessionIDParam(c)
	if !ok {
		return
	}
	ctx, facts := cacheFacts(c)
	st, err := h.src.SessionStatus(ctx, id)
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	s := Session{
		SessionID:      st.SessionID,
		PhoneNumber:    st.PhoneNumber,
		Status:         NormalizeSessionStatus(st.Status),
		LastActivityAt: timePtr(st.LastActivity),
		QR:             SessionQR{Available: st.HasQR},
	}
	if s.SessionID == "" {
		s.SessionID = id
	}
	meta := map[string]any{"source": "status"}
	f, done := facts()
	if done {
		return
	}
	if f != nil {
		meta["cache"] = f
	}
	c.JSON(http.StatusOK, SessionAnswer{Data: s, Meta: meta})
}

// jsonContentType is the Content-Type of the JSON answers, one value shared by all of them.
var jsonContentType = middleware.Shared("application/json; charset=utf-8")

// writeJSON answers status with body, already encoded JSON, as gin's c.Data would, without
// allocating the Content-Type header's value per answer.
func writeJSON(c *gin.Context, status int, body []byte) {
	c.Writer.Header()["Content-Type"] = jsonContentType
	c.Status(status)
	_, _ = c.Writer.Write(body)
}
