package sim

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skip2/go-qrcode"
)

// ErrUnknownSession is returned by the admin methods for a session id that does not exist.
var ErrUnknownSession = errors.New("sim: unknown session")

// Session statuses, compared case-insensitively.
const (
	statusPending      = "pending"
	statusConnecting   = "connecting"
	statusConnected    = "connected"
	statusDisconnected = "disconnected"
	statusQRCode       = "qr_code"
	statusError        = "error"
	statusRateLimited  = "rate_limited"
)

// firstSessionID is the database id of the first seeded session. Ids do not start at 1, so a
// client that confuses a list position with an id gets caught.
const firstSessionID = 91

// canonicalStatus returns the lower-case status s stands for, if it is one.
func canonicalStatus(s string) (string, bool) {
	for _, st := range []string{statusPending, statusConnecting, statusConnected, statusDisconnected,
		statusQRCode, statusError, statusRateLimited} {
		if strings.EqualFold(s, st) {
			return st, true
		}
	}
	return "", false
}

// session is one WhatsApp number. Every field is guarded by Server.mu.
type session struct {
	id            int
	sid           string
	name          string
	phone         string // digits only; empty until the first connection
	device        int    // the ":71" of phoneNumberId
	status        string // as reported: a known status, in whatever case it was set
	qrReadyAt     time.Time
	qrCode        string // data URL, empty when there is no QR
	qrGeneratedAt time.Time
	qrExpiresAt   time.Time
	lastActivity  time.Time
	createdAt     time.Time
	webhookURL    string
	webhookSecret string
	webhookEvents []string
	data          *dataset // generated on first use
}

func (ss *session) is(status string) bool { return strings.EqualFold(ss.status, status) }

func (ss *session) hasQR() bool { return ss.is(statusQRCode) && ss.qrCode != "" }

func (ss *session) jid() string {
	if ss.phone == "" {
		return ""
	}
	return ss.phone + "@s.whatsapp.net"
}

func (ss *session) clearQR() {
	ss.qrCode, ss.qrGeneratedAt, ss.qrExpiresAt, ss.qrReadyAt = "", time.Time{}, time.Time{}, time.Time{}
}

// seedSessions creates Options.Sessions sessions: the first connected, the second showing a QR
// with the status spelled "Qr_Code", the third disconnected, then a mix of the other states.
func (s *Server) seedSessions() error {
	seeds := []struct{ sid, name, status string }{
		{"demo_session", "Demo", statusConnected},
		{"sales_team", "Ventas", "Qr_Code"},
		{"support_desk", "Soporte", statusDisconnected},
		{"marketing_es", "Marketing España", statusError},
		{"billing-bot", "Facturación", statusRateLimited},
		{"new_branch", "Sucursal nueva", statusPending},
	}
	cycle := []string{statusConnected, statusDisconnected}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.opts.Sessions {
		sid, name, status := fmt.Sprintf("session_%02d", i+1), fmt.Sprintf("Sesión %d", i+1), cycle[i%len(cycle)]
		if i < len(seeds) {
			sid, name, status = seeds[i].sid, seeds[i].name, seeds[i].status
		}
		ss := s.addSession(sid, name, now)
		if status != statusPending && status != statusConnecting {
			ss.phone = s.phoneFor(ss.id) // these have been connected before
		}
		ss.status = status
		if ss.is(statusQRCode) {
			if err := s.newQR(ss, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// addSession creates a disconnected session with the next id; the caller holds s.mu.
func (s *Server) addSession(sid, name string, now time.Time) *session {
	ss := &session{id: s.nextID, sid: sid, name: name, status: statusDisconnected,
		device: 70 + s.nextID%20, lastActivity: now, createdAt: now}
	s.nextID++
	s.sessions = append(s.sessions, ss)
	return ss
}

// phoneFor is the deterministic Spanish mobile number of session id.
func (s *Server) phoneFor(id int) string {
	rng := rand.New(rand.NewPCG(uint64(s.opts.Seed), uint64(id)<<32|0x9e37))
	return fmt.Sprintf("346%08d", rng.IntN(100_000_000))
}

// find returns the session with numeric id or string sessionId key; the caller holds s.mu.
func (s *Server) find(key string) *session {
	if n, err := strconv.Atoi(key); err == nil {
		for _, ss := range s.sessions {
			if ss.id == n {
				return ss
			}
		}
	}
	return s.findSID(key)
}

// findSID returns the session with string sessionId sid; the caller holds s.mu.
func (s *Server) findSID(sid string) *session {
	for _, ss := range s.sessions {
		if ss.sid == sid {
			return ss
		}
	}
	return nil
}

// advance moves a session along with time: a connecting session shows its QR once QRDelay has
// passed, and an expired QR is replaced. The caller holds s.mu.
func (s *Server) advance(ss *session, now time.Time) {
	due := ss.is(statusConnecting) && !ss.qrReadyAt.IsZero() && !now.Before(ss.qrReadyAt)
	expired := ss.is(statusQRCode) && (ss.qrCode == "" || !now.Before(ss.qrExpiresAt))
	if !due && !expired {
		return
	}
	if err := s.showQR(ss, now); err != nil {
		s.log.Error("sim: QR generation failed", "session", ss.sid, "err", err)
	}
}

// tickSessions advances every session a few times a second, so that QR webhooks go out even
// when nobody polls. It returns when ctx ends.
func (s *Server) tickSessions(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			now := s.clock()
			for _, ss := range s.sessions {
				s.advance(ss, now)
			}
			s.mu.Unlock()
		}
	}
}

// showQR gives the session a fresh QR and sends session.qr; the caller holds s.mu.
func (s *Server) showQR(ss *session, now time.Time) error {
	if err := s.newQR(ss, now); err != nil {
		return err
	}
	s.emitSession(ss, "session.qr", map[string]any{"qrCode": ss.qrCode, "expiresAt": isoTime(ss.qrExpiresAt)})
	return nil
}

// newQR gives the session a fresh QR, a PNG data URL valid for QRLifetime, and the status
// qr_code (keeping its spelling if it already had it); the caller holds s.mu.
func (s *Server) newQR(ss *session, now time.Time) error {
	ref := "2@" + strings.Join([]string{crand.Text(), crand.Text(), crand.Text()}, ",") + ",1"
	png, err := qrcode.Encode(ref, qrcode.Medium, 256)
	if err != nil {
		return err
	}
	if !ss.is(statusQRCode) {
		ss.status = statusQRCode
	}
	ss.qrCode = "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)
	ss.qrGeneratedAt, ss.qrExpiresAt, ss.qrReadyAt = now, now.Add(s.opts.QRLifetime), time.Time{}
	ss.lastActivity = now
	return nil
}

// setStatus moves a session to status (a known one, in any case) and sends the webhooks the
// change implies; reason goes into session.disconnected. The caller holds s.mu.
func (s *Server) setStatus(ss *session, status string, now time.Time, reason string) error {
	canon, ok := canonicalStatus(status)
	if !ok {
		return fmt.Errorf("sim: unknown status %q", status)
	}
	wasConnected := ss.is(statusConnected)
	ss.status, ss.lastActivity = status, now
	ss.clearQR()
	switch canon {
	case statusConnected:
		if !wasConnected {
			if ss.phone == "" {
				ss.phone = s.phoneFor(ss.id)
			}
			s.emitSession(ss, "session.connected", map[string]any{"phoneNumber": ss.phone})
		}
		return nil
	case statusQRCode:
		if err := s.showQR(ss, now); err != nil {
			return err
		}
	case statusConnecting:
		ss.qrReadyAt = now.Add(s.opts.QRDelay)
	}
	if wasConnected {
		s.emitSession(ss, "session.disconnected", map[string]any{"reason": reason})
	}
	return nil
}

// SetSessionStatus forces the status of a session (numeric id or sessionId). Any status of
// the upstream (docs/upstream.md) is accepted in any case and reported as given; the implied
// webhooks are sent.
func (s *Server) SetSessionStatus(sessionID, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.find(sessionID)
	if ss == nil {
		return ErrUnknownSession
	}
	return s.setStatus(ss, status, s.clock(), "admin")
}

// ScanQR plays the phone scanning the session's current QR: the session becomes connected and
// session.connected is sent. It fails when no unexpired QR is showing.
func (s *Server) ScanQR(sessionID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.find(sessionID)
	if ss == nil {
		return ErrUnknownSession
	}
	now := s.clock()
	s.advance(ss, now)
	if !ss.hasQR() {
		return fmt.Errorf("sim: session %q shows no QR (status %s)", ss.sid, ss.status)
	}
	return s.setStatus(ss, statusConnected, now, "")
}

// sessionJSON is the session object of the upstream.
type sessionJSON struct {
	ID                int          `json:"id"`
	SessionID         string       `json:"sessionId"`
	SessionName       string       `json:"sessionName"`
	UserID            int          `json:"userId"`
	PhoneNumber       *string      `json:"phoneNumber"`
	PhoneNumberID     *string      `json:"phoneNumberId"`
	Status            string       `json:"status"`
	IsConnected       bool         `json:"isConnected"`
	HasQR             bool         `json:"hasQR"`
	QRCode            *string      `json:"qrCode"`
	QRCodeGeneratedAt *string      `json:"qrCodeGeneratedAt"`
	QRCodeExpiresAt   *string      `json:"qrCodeExpiresAt"`
	LastActivity      *string      `json:"lastActivity"`
	Profile           *profileJSON `json:"profile"`
	WebhookURL        *string      `json:"webhookUrl"`
	CreatedAt         string       `json:"createdAt"`
}

type profileJSON struct {
	Name              string  `json:"name"`
	About             string  `json:"about"`
	ProfilePictureURL *string `json:"profilePictureUrl"`
	IsBusiness        bool    `json:"isBusiness"`
}

func (ss *session) toJSON() sessionJSON {
	out := sessionJSON{
		ID: ss.id, SessionID: ss.sid, SessionName: ss.name, UserID: simUserID, Status: ss.status,
		IsConnected: ss.is(statusConnected), HasQR: ss.hasQR(), QRCode: nullable(ss.qrCode),
		QRCodeGeneratedAt: nullableTime(ss.qrGeneratedAt), QRCodeExpiresAt: nullableTime(ss.qrExpiresAt),
		LastActivity: nullableTime(ss.lastActivity), WebhookURL: nullable(ss.webhookURL),
		CreatedAt: isoTime(ss.createdAt),
	}
	if ss.phone != "" {
		out.PhoneNumber = nullable(ss.phone)
		out.PhoneNumberID = nullable(fmt.Sprintf("%s:%d@s.whatsapp.net", ss.phone, ss.device))
		out.Profile = &profileJSON{Name: ss.name, About: "Disponible", IsBusiness: ss.id%2 == 1,
			ProfilePictureURL: nullable(fmt.Sprintf("https://pps.whatsapp.net/v/t61.24694-24/%s_n.jpg", ss.phone))}
	}
	return out
}

// listSessions answers GET /api/sessions with page, limit (default 20) and status filters.
func (s *Server) listSessions(_ http.ResponseWriter, r *http.Request) (reply, error) {
	q := r.URL.Query()
	p, err := parsePage(q, 20)
	if err != nil {
		return reply{}, err
	}
	status := q.Get("status")
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	var match []*session
	for _, ss := range s.sessions {
		s.advance(ss, now)
		if status == "" || ss.is(status) {
			match = append(match, ss)
		}
	}
	from, to := p.bounds(len(match))
	out := make([]sessionJSON, 0, to-from)
	for _, ss := range match[from:to] {
		out = append(out, ss.toJSON())
	}
	return reply{data: map[string]any{"sessions": out, "pagination": p.pagination(len(match))}}, nil
}

// lookup finds and advances the session named by the {id} path value; the caller holds s.mu.
func (s *Server) lookup(r *http.Request) (*session, error) {
	ss := s.find(r.PathValue("id"))
	if ss == nil {
		return nil, errSessionNotFound()
	}
	s.advance(ss, s.clock())
	return ss, nil
}

// getSession answers GET /api/sessions/{id} (numeric id or sessionId).
func (s *Server) getSession(_ http.ResponseWriter, r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.lookup(r)
	if err != nil {
		return reply{}, err
	}
	return reply{data: map[string]any{"session": ss.toJSON()}}, nil
}

// sessionStatus answers GET /api/sessions/{id}/status, the live state.
func (s *Server) sessionStatus(_ http.ResponseWriter, r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.lookup(r)
	if err != nil {
		return reply{}, err
	}
	j := ss.toJSON()
	return reply{data: map[string]any{"id": j.ID, "sessionId": j.SessionID, "status": j.Status,
		"phoneNumber": j.PhoneNumber, "lastActivity": j.LastActivity, "isConnected": j.IsConnected, "hasQR": j.HasQR}}, nil
}

// connectSession answers POST /api/sessions/{id}/connect. A disconnected (or failed, or
// pending) session starts connecting and shows a QR after QRDelay. A session already
// connecting, showing a QR or connected is left as it is and its status answered with 200.
func (s *Server) connectSession(_ http.ResponseWriter, r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.lookup(r)
	if err != nil {
		return reply{}, err
	}
	msg := "Conexión en curso"
	switch {
	case ss.is(statusConnected):
		msg = "La sesión ya está conectada"
	case ss.is(statusConnecting) || ss.is(statusQRCode):
	default:
		if err := s.setStatus(ss, statusConnecting, s.clock(), ""); err != nil {
			return reply{}, err
		}
		msg = "Iniciando conexión"
	}
	return reply{message: msg, data: map[string]any{"sessionId": ss.sid, "status": ss.status}}, nil
}

// sessionQR answers GET /api/sessions/{id}/qr: the QR once it is showing, else 404
// (QR_NOT_READY while connecting, QR_NOT_AVAILABLE otherwise).
func (s *Server) sessionQR(_ http.ResponseWriter, r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.lookup(r)
	if err != nil {
		return reply{}, err
	}
	switch {
	case ss.hasQR():
		return reply{data: map[string]any{"qrCode": ss.qrCode, "sessionId": ss.sid,
			"expiresAt": isoTime(ss.qrExpiresAt), "status": ss.status}}, nil
	case ss.is(statusConnecting):
		return reply{}, &apiError{http.StatusNotFound, codeQRNotReady, "El código QR aún no está disponible", nil}
	case ss.is(statusConnected):
		return reply{}, &apiError{http.StatusNotFound, codeQRNotAvailable, "La sesión ya está conectada", nil}
	}
	return reply{}, &apiError{http.StatusNotFound, codeQRNotAvailable, "No hay código QR: inicie la conexión", nil}
}

// disconnectSession answers POST /api/sessions/{id}/disconnect.
func (s *Server) disconnectSession(_ http.ResponseWriter, r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.lookup(r)
	if err != nil {
		return reply{}, err
	}
	if !ss.is(statusDisconnected) {
		if err := s.setStatus(ss, statusDisconnected, s.clock(), "logout"); err != nil {
			return reply{}, err
		}
	}
	return reply{message: "Sesión desconectada", data: map[string]any{"sessionId": ss.sid, "status": ss.status}}, nil
}

// deleteSession answers DELETE /api/sessions/{id}.
func (s *Server) deleteSession(_ http.ResponseWriter, r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.lookup(r)
	if err != nil {
		return reply{}, err
	}
	if ss.is(statusConnected) {
		s.emitSession(ss, "session.disconnected", map[string]any{"reason": "deleted"})
	}
	s.sessions = slices.DeleteFunc(s.sessions, func(x *session) bool { return x == ss })
	return reply{message: "Sesión eliminada", data: map[string]any{"id": ss.id, "sessionId": ss.sid}}, nil
}

// createRequest is the body of POST /api/sessions.
type createRequest struct {
	SessionID     string   `json:"sessionId"`
	SessionName   string   `json:"sessionName"`
	PhoneNumber   string   `json:"phoneNumber"`
	WebhookURL    string   `json:"webhookUrl"`
	WebhookSecret string   `json:"webhookSecret"`
	WebhookEvents []string `json:"webhookEvents"`
}

func (c createRequest) validate() error {
	switch {
	case !validSessionID(c.SessionID):
		return errValidation("sessionId", "must be 3..100 characters of A-Z a-z 0-9 _ -")
	case strings.TrimSpace(c.SessionName) == "" || len(c.SessionName) > 255:
		return errValidation("sessionName", "is required (at most 255 characters)")
	case c.WebhookSecret != "" && (len(c.WebhookSecret) < 16 || len(c.WebhookSecret) > 255):
		return errValidation("webhookSecret", "must be 16..255 characters")
	}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errValidation("webhookUrl", "must be an http(s) URL")
		}
	}
	return nil
}

// validSessionID reports whether id is 3..100 characters of [A-Za-z0-9_-].
func validSessionID(id string) bool {
	if len(id) < 3 || len(id) > 100 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// createSession answers POST /api/sessions with 201 {id, sessionId, sessionName, status,
// qrCode: null}, or 409 SESSION_ALREADY_EXISTS. The new session is disconnected.
func (s *Server) createSession(w http.ResponseWriter, r *http.Request) (reply, error) {
	var req createRequest
	if err := decodeBody(w, r, &req); err != nil {
		return reply{}, err
	}
	if err := req.validate(); err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.findSID(req.SessionID) != nil {
		return reply{}, &apiError{http.StatusConflict, codeSessionExists, "La sesión ya existe", nil}
	}
	ss := s.addSession(req.SessionID, req.SessionName, s.clock())
	ss.webhookURL, ss.webhookSecret, ss.webhookEvents = req.WebhookURL, req.WebhookSecret, req.WebhookEvents
	return reply{status: http.StatusCreated, message: "Sesión creada exitosamente",
		data: map[string]any{"id": ss.id, "sessionId": ss.sid, "sessionName": ss.name, "status": ss.status, "qrCode": nil}}, nil
}

// nullable is nil for "" so that JSON says null.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullableTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	return nullable(isoTime(t))
}

// isoTime writes t the way the upstream (JavaScript's toISOString) does.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// webhookEventNames are the event names a session's webhookEvents may list (docs/upstream.md).
var webhookEventNames = []string{"message.received", "message.sent", "message.ack",
	"session.connected", "session.disconnected", "session.qr",
	"contact.created", "contact.updated", "conversation.created", "conversation.updated"}

// webhookRequest is the body of PUT /api/sessions/{id}/webhook.
type webhookRequest struct {
	WebhookURL    string   `json:"webhookUrl"`
	WebhookSecret string   `json:"webhookSecret"`
	WebhookEvents []string `json:"webhookEvents"`
}

func (w webhookRequest) validate() error {
	u, err := url.Parse(w.WebhookURL)
	if w.WebhookURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errValidation("webhookUrl", "is required and must be an http(s) URL")
	}
	if w.WebhookSecret != "" && (len(w.WebhookSecret) < 16 || len(w.WebhookSecret) > 255) {
		return errValidation("webhookSecret", "must be 16..255 characters")
	}
	for _, e := range w.WebhookEvents {
		if !slices.Contains(webhookEventNames, e) {
			return errValidation("webhookEvents", fmt.Sprintf("%q is not a known event", e))
		}
	}
	return nil
}

// setWebhook answers PUT /api/sessions/{id}/webhook (numeric id or sessionId): it replaces the
// session's webhook settings, so the session's next events go to webhookUrl, signed with
// webhookSecret (unsigned when it is omitted), for webhookEvents (all events when omitted or
// empty). The answer never carries the secret.
func (s *Server) setWebhook(w http.ResponseWriter, r *http.Request) (reply, error) {
	var req webhookRequest
	if err := decodeBody(w, r, &req); err != nil {
		return reply{}, err
	}
	if err := req.validate(); err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.lookup(r)
	if err != nil {
		return reply{}, err
	}
	ss.webhookURL, ss.webhookSecret = req.WebhookURL, req.WebhookSecret
	ss.webhookEvents = slices.Clone(req.WebhookEvents)
	events := ss.webhookEvents
	if len(events) == 0 {
		events = webhookEventNames
	}
	return reply{message: "Webhook actualizado", data: map[string]any{"sessionId": ss.sid,
		"webhookUrl": ss.webhookURL, "webhookEvents": events}}, nil
}
