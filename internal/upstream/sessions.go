package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Routes of the sessions resource, as route patterns.
const (
	routeSessions          = "/api/sessions"
	routeSession           = "/api/sessions/:id"
	routeSessionStatus     = "/api/sessions/:id/status"
	routeSessionConnect    = "/api/sessions/:id/connect"
	routeSessionQR         = "/api/sessions/:id/qr"
	routeSessionDisconnect = "/api/sessions/:id/disconnect"
	routeSessionWebhook    = "/api/sessions/:id/webhook"
)

// errEmptySessionID is returned when a caller passes no session id (a programming error: callers
// validate ids before they get here).
var errEmptySessionID = errors.New("upstream: empty session id")

// sessionIDs maps the string sessionId callers use to the numeric id the /api/sessions/:id routes
// take. It learns from every session the upstream returns; it holds one entry per session of the
// account (tens), so it is not bounded further.
type sessionIDs struct {
	mu sync.RWMutex
	m  map[string]int64
}

func newSessionIDs() *sessionIDs { return &sessionIDs{m: make(map[string]int64)} }

func (s *sessionIDs) get(sessionID string) (int64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.m[sessionID]
	return id, ok
}

func (s *sessionIDs) learn(sessionID string, id int64) {
	if sessionID == "" || id <= 0 {
		return
	}
	s.mu.Lock()
	s.m[sessionID] = id
	s.mu.Unlock()
}

// forget drops a mapping found stale, unless another call already replaced it.
func (s *sessionIDs) forget(sessionID string, id int64) {
	s.mu.Lock()
	if s.m[sessionID] == id {
		delete(s.m, sessionID)
	}
	s.mu.Unlock()
}

func pageQuery(page, limit int) url.Values {
	q := url.Values{}
	if page > 0 {
		q.Set("page", strconv.Itoa(page))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}

// ListSessions returns a page of the account's sessions (GET /api/sessions) and learns their ids.
func (c *Client) ListSessions(ctx context.Context, p ListSessionsParams) (Page[Session], error) {
	q := pageQuery(p.Page, p.Limit)
	if p.Status != "" {
		q.Set("status", p.Status)
	}
	cl := &call{method: http.MethodGet, route: routeSessions, path: routeSessions, query: q, category: CategoryRead, bearer: true}
	page, err := list[Session](ctx, c, cl, "sessions", p.Page, p.Limit)
	if err != nil {
		return Page[Session]{}, err
	}
	for _, s := range page.Items {
		c.ids.learn(s.SessionID, s.ID)
	}
	return page, nil
}

// AllSessions walks every page of sessions, limit per page (0 = MaxLimit).
func (c *Client) AllSessions(ctx context.Context, limit int) iter.Seq2[Session, error] {
	return walk(ctx, limit, func(ctx context.Context, p ListParams) (Page[Session], error) {
		return c.ListSessions(ctx, ListSessionsParams{Page: p.Page, Limit: p.Limit})
	})
}

// GetSession returns one session by its string id (GET /api/sessions/:id). It uses the numeric id
// when known; otherwise it asks by the string id, which some deployments answer with 404, and then
// looks the session up in the list. An unknown session gives ErrSessionNotFound.
func (c *Client) GetSession(ctx context.Context, sessionID string) (Session, error) {
	if sessionID == "" {
		return Session{}, errEmptySessionID
	}
	if id, ok := c.ids.get(sessionID); ok {
		s, err := c.getSession(ctx, strconv.FormatInt(id, 10))
		if err == nil {
			if s.SessionID == "" {
				s.SessionID = sessionID
			}
			if s.ID == 0 {
				s.ID = id
			}
			return s, nil
		}
		if !errors.Is(err, ErrSessionNotFound) && !errors.Is(err, ErrNotFound) {
			return Session{}, err
		}
		c.ids.forget(sessionID, id) // deleted, or recreated under a new numeric id
	}
	return c.lookupSession(ctx, sessionID)
}

// getSession is GET /api/sessions/:id with id as given (numeric or string).
func (c *Client) getSession(ctx context.Context, id string) (Session, error) {
	cl := &call{method: http.MethodGet, route: routeSession, path: routeSessions + "/" + url.PathEscape(id),
		category: CategoryRead, bearer: true}
	var raw json.RawMessage
	if err := c.do(ctx, cl, &raw); err != nil {
		return Session{}, err
	}
	var s Session
	if isNull(raw) || unmarshalWrapped(raw, "session", &s) != nil {
		return Session{}, badResponse(cl, http.StatusOK, "the session is not the documented JSON")
	}
	c.ids.learn(s.SessionID, s.ID)
	return s, nil
}

// lookupSession finds a session by its string id: GET /api/sessions/:sessionId first, then the
// list when that route does not take string ids on this deployment.
func (c *Client) lookupSession(ctx context.Context, sessionID string) (Session, error) {
	s, err := c.getSession(ctx, sessionID)
	if err == nil && s.ID > 0 && (s.SessionID == sessionID || s.SessionID == "") {
		s.SessionID = sessionID
		c.ids.learn(sessionID, s.ID)
		return s, nil
	}
	var e *Error
	if err != nil && (!errors.As(err, &e) || e.kind != kindAnswer || e.Status == http.StatusUnauthorized ||
		e.Status == http.StatusForbidden || e.Status == http.StatusTooManyRequests || e.Status > 500) {
		return Session{}, err // not an answer about this route's ids: the list would fail the same way
	}
	for s, err := range c.AllSessions(ctx, MaxLimit) {
		if err != nil {
			return Session{}, err
		}
		if s.SessionID == sessionID {
			return s, nil
		}
	}
	return Session{}, &Error{Status: http.StatusNotFound, Code: CodeSessionNotFound, Message: "no session with this id",
		Method: http.MethodGet, Route: routeSession, kind: kindAnswer}
}

// numericID returns the numeric id of a session; fresh says it was just looked up (so a 404 on it
// is not a stale mapping). Concurrent misses for one session share one lookup, which runs on a
// context detached from any one caller's cancellation (values, such as the quota priority, kept).
func (c *Client) numericID(ctx context.Context, sessionID string) (id int64, fresh bool, err error) {
	if sessionID == "" {
		return 0, false, errEmptySessionID
	}
	if id, ok := c.ids.get(sessionID); ok {
		return id, false, nil
	}
	ch := c.resolving.DoChan(sessionID, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx),
			time.Duration(2*c.retry.maxAttempts)*(c.timeout+c.retry.cap))
		defer cancel()
		s, err := c.lookupSession(lctx, sessionID)
		return s.ID, err
	})
	select {
	case <-ctx.Done():
		return 0, false, c.ctxError(&call{method: http.MethodGet, route: routeSession}, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return 0, false, r.Err
		}
		return r.Val.(int64), true, nil
	}
}

// onSession runs fn with the numeric id of a session. When fn finds the session gone and the id
// came from the map, the mapping is dropped and fn runs once more with the id looked up anew
// (the session may have been recreated under a new numeric id).
func (c *Client) onSession(ctx context.Context, sessionID string, fn func(id int64) error) error {
	id, fresh, err := c.numericID(ctx, sessionID)
	if err != nil {
		return err
	}
	err = fn(id)
	if fresh || !errors.Is(err, ErrSessionNotFound) {
		return err
	}
	c.ids.forget(sessionID, id)
	again, _, lerr := c.numericID(ctx, sessionID)
	if lerr != nil {
		return lerr
	}
	if again == id {
		return err
	}
	return fn(again)
}

func sessionPath(id int64, tail string) string {
	return routeSessions + "/" + strconv.FormatInt(id, 10) + tail
}

// SessionStatus returns the live state of a session (GET /api/sessions/:id/status, the source of
// truth; the numeric id is used).
func (c *Client) SessionStatus(ctx context.Context, sessionID string) (SessionStatus, error) {
	var st SessionStatus
	err := c.onSession(ctx, sessionID, func(id int64) error {
		cl := &call{method: http.MethodGet, route: routeSessionStatus, path: sessionPath(id, "/status"),
			category: CategoryRead, bearer: true}
		st = SessionStatus{}
		if err := c.do(ctx, cl, &st); err != nil {
			return err
		}
		st.ID, st.SessionID = fill(st.ID, id), fillString(st.SessionID, sessionID)
		return nil
	})
	if err != nil {
		return SessionStatus{}, err
	}
	return st, nil
}

// Connect starts (re)connecting a session (POST /api/sessions/:id/connect); the answer carries the
// new status, usually "connecting". It is never retried after the request may have reached the
// upstream. A 500 CONNECTION_ERROR matches ErrUnavailable.
func (c *Client) Connect(ctx context.Context, sessionID string) (SessionStatus, error) {
	return c.sessionAction(ctx, sessionID, routeSessionConnect, "/connect")
}

// Disconnect disconnects a session (POST /api/sessions/:id/disconnect).
func (c *Client) Disconnect(ctx context.Context, sessionID string) (SessionStatus, error) {
	return c.sessionAction(ctx, sessionID, routeSessionDisconnect, "/disconnect")
}

func (c *Client) sessionAction(ctx context.Context, sessionID, route, tail string) (SessionStatus, error) {
	var st SessionStatus
	err := c.onSession(ctx, sessionID, func(id int64) error {
		cl := &call{method: http.MethodPost, route: route, path: sessionPath(id, tail), body: []byte("{}"),
			category: CategoryRead, bearer: true}
		st = SessionStatus{}
		if err := c.do(ctx, cl, &st); err != nil {
			return err
		}
		st.ID, st.SessionID = fill(st.ID, id), fillString(st.SessionID, sessionID)
		return nil
	})
	if err != nil {
		return SessionStatus{}, err
	}
	return st, nil
}

// QR returns the code to scan (GET /api/sessions/:id/qr). Until the upstream has a QR ready it
// answers 404, which matches ErrNotFound (ErrSessionNotFound when the session itself is unknown):
// poll about every 2 s. A 500 QR_GENERATION_ERROR matches ErrUnavailable.
func (c *Client) QR(ctx context.Context, sessionID string) (QR, error) {
	var qr QR
	err := c.onSession(ctx, sessionID, func(id int64) error {
		cl := &call{method: http.MethodGet, route: routeSessionQR, path: sessionPath(id, "/qr"),
			category: CategoryRead, bearer: true}
		qr = QR{}
		if err := c.do(ctx, cl, &qr); err != nil {
			return err
		}
		qr.SessionID = fillString(qr.SessionID, sessionID)
		if qr.Code == "" {
			return &Error{Status: http.StatusNotFound, Message: "no QR code yet", Method: cl.method, Route: cl.route, kind: kindAnswer}
		}
		return nil
	})
	if err != nil {
		return QR{}, err
	}
	return qr, nil
}

// Webhook is what a session's webhook is set to: where the upstream posts the session's events,
// the secret it signs them with (X-Webhook-Signature; 16..255 characters, or empty for unsigned
// deliveries) and which events it posts (empty: the upstream's default, all of them).
type Webhook struct {
	URL    string   `json:"webhookUrl"`
	Secret string   `json:"webhookSecret,omitempty"`
	Events []string `json:"webhookEvents,omitempty"`
}

// WebhookSettings is a session's webhook as the upstream answered it; it never holds the secret.
type WebhookSettings struct {
	SessionID string   `json:"sessionId"`
	URL       string   `json:"webhookUrl"`
	Events    []string `json:"webhookEvents"`
}

// SetWebhook replaces the webhook settings of a session (PUT /api/sessions/:id/webhook, the
// numeric id is used). Being a PUT, it is retried like a read after 429, 502, 503, 504 or a
// timeout. The secret is kept out of errors. Fields the upstream leaves out of its answer are
// filled from the request.
func (c *Client) SetWebhook(ctx context.Context, sessionID string, w Webhook) (WebhookSettings, error) {
	body, err := json.Marshal(w)
	if err != nil {
		return WebhookSettings{}, err
	}
	var ws WebhookSettings
	err = c.onSession(ctx, sessionID, func(id int64) error {
		cl := &call{method: http.MethodPut, route: routeSessionWebhook, path: sessionPath(id, "/webhook"), body: body,
			category: CategoryRead, bearer: true, secrets: []string{w.Secret}}
		ws = WebhookSettings{}
		return c.do(ctx, cl, &ws)
	})
	if err != nil {
		return WebhookSettings{}, err
	}
	ws.SessionID, ws.URL = fillString(ws.SessionID, sessionID), fillString(ws.URL, w.URL)
	if ws.Events == nil {
		ws.Events = w.Events
	}
	return ws, nil
}

func fill(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

func fillString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
