package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// SessionConnector is what the connect route needs from the upstream: the live status (to refuse
// a session that is already connected) and the connect call itself.
type SessionConnector interface {
	SessionStatus(ctx context.Context, sessionID string) (upstream.SessionStatus, error)
	Connect(ctx context.Context, sessionID string) (upstream.SessionStatus, error)
}

// QRSource is what the QR route needs from the upstream: the QR, and the live status to explain
// why there is none.
type QRSource interface {
	QR(ctx context.Context, sessionID string) (upstream.QR, error)
	SessionStatus(ctx context.Context, sessionID string) (upstream.SessionStatus, error)
}

// ObjectMeta is the meta of a one-object answer; it has no fields yet.
type ObjectMeta struct{}

// QRCode is the QR code to scan with WhatsApp on the phone (Linked devices) to link a session.
type QRCode struct {
	// Code is the QR as a PNG data URL, ready for an <img src>.
	Code string `json:"code" example:"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAQAAAAEAAQMAAABmvDolAAAABlBMVEX///8AAABVwtN+AAAA..."`
	// ExpiresAt is when the upstream replaces it (about 60 s after it was made); null if unknown.
	ExpiresAt *time.Time `json:"expiresAt" example:"2026-11-28T10:01:00Z"`
}

// QRAnswer is the JSON answer of GET /v1/sessions/{sessionId}/qr.
type QRAnswer struct {
	Data QRCode     `json:"data"`
	Meta ObjectMeta `json:"meta"`
}

// qrRetryAfter is how soon a caller should ask again for a QR that is not ready (the upstream
// advises polling about every 2 s; see docs/upstream.md).
const qrRetryAfter = 2 * time.Second

var errAlreadyConnected = problem.New(http.StatusConflict, problem.CodeSessionAlreadyConnected,
	"The WhatsApp session is already connected: there is no QR code to scan. To link another phone, disconnect the session first.")

type sessionLifecycle struct {
	connector SessionConnector
	qr        QRSource
}

// connect godoc
//
//	@Summary		Connect a session
//	@Description	Starts (re)connecting a WhatsApp session. The upstream then prepares a QR code, which the phone must scan within about 60 s: poll the URL in the Location header (GET /v1/sessions/{sessionId}/qr) until it answers 200. A session that is already connected is refused with 409 SESSION_ALREADY_CONNECTED. Takes no body and no query parameters.
//	@Tags			sessions
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sessions:write"]
//	@Param			sessionId	path		string			true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Success		202			{object}	SessionAnswer	"Connecting; status is connecting or qr_pending"
//	@Header			202			{string}	Location		"The QR route of the session"
//	@Failure		400			{object}	problem.Details	"INVALID_REQUEST: bad sessionId or unknown query parameters"
//	@Failure		401			{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403			{object}	problem.Details	"FORBIDDEN: needs sessions:write"
//	@Failure		404			{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		409			{object}	problem.Details	"SESSION_ALREADY_CONNECTED"
//	@Failure		413			{object}	problem.Details	"PAYLOAD_TOO_LARGE"
//	@Failure		429			{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502			{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503			{object}	problem.Details	"UPSTREAM_UNAVAILABLE (also the upstream's CONNECTION_ERROR)"
//	@Failure		504			{object}	problem.Details	"UPSTREAM_TIMEOUT"
//	@Router			/v1/sessions/{sessionId}/connect [post]
func (h sessionLifecycle) connect(c *gin.Context) {
	id, ok := sessionIDParam(c)
	if !ok {
		return
	}
	if _, ok := queryParams(c); !ok {
		return
	}
	ctx := middleware.Context(c)
	st, err := h.connector.SessionStatus(ctx, id)
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	if NormalizeSessionStatus(st.Status) == SessionConnected {
		middleware.Fail(c, errAlreadyConnected)
		return
	}
	res, err := h.connector.Connect(ctx, id)
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	s := connectingSession(id, st, res)
	if s.Status == SessionConnected { // it connected in between: nothing to scan
		middleware.Fail(c, errAlreadyConnected)
		return
	}
	c.Header("Location", "/v1/sessions/"+id+"/qr")
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusAccepted, SessionAnswer{Data: s, Meta: map[string]any{}})
}

// connectingSession is the session as the connect route answers it: the live status read before
// the call, with the status the connect call answered (connecting when it said none).
func connectingSession(id string, before, res upstream.SessionStatus) Session {
	status := res.Status
	if status == "" {
		status = upstream.StatusConnecting
	}
	s := Session{
		SessionID:      id,
		PhoneNumber:    before.PhoneNumber,
		Status:         NormalizeSessionStatus(status),
		LastActivityAt: timePtr(before.LastActivity),
	}
	s.QR.Available = s.Status == SessionQRPending && (res.HasQR || before.HasQR)
	return s
}

// qr godoc
//
//	@Summary		Get the QR code of a session
//	@Description	The QR code to scan with WhatsApp on the phone (Settings, Linked devices) to connect the session, as JSON with a PNG data URL or, with Accept: image/png, as the PNG itself. Answers are never cached (Cache-Control: no-store): a QR code links the WhatsApp account. While the upstream is still preparing it (after POST /v1/sessions/{sessionId}/connect) the answer is 404 QR_NOT_READY with Retry-After: 2; poll until 200. A session that is already connected is 409 SESSION_ALREADY_CONNECTED.
//	@Tags			sessions
//	@Produce		json
//	@Produce		png
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["sessions:read"]
//	@Param			sessionId	path		string			true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			Accept		header		string			false	"application/json (default) or image/png"
//	@Success		200			{object}	QRAnswer		"JSON, or the PNG bytes with Accept: image/png"
//	@Failure		400			{object}	problem.Details	"INVALID_REQUEST: bad sessionId or unknown query parameters"
//	@Failure		401			{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403			{object}	problem.Details	"FORBIDDEN: needs sessions:read"
//	@Failure		404			{object}	problem.Details	"SESSION_NOT_FOUND, or QR_NOT_READY with Retry-After"
//	@Header			404			{integer}	Retry-After		"Seconds to wait before asking again (QR_NOT_READY)"
//	@Failure		409			{object}	problem.Details	"SESSION_ALREADY_CONNECTED"
//	@Failure		429			{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502			{object}	problem.Details	"UPSTREAM_AUTH_FAILED, or UPSTREAM_ERROR (also a QR that is not a PNG data URL)"
//	@Failure		503			{object}	problem.Details	"UPSTREAM_UNAVAILABLE (also the upstream's QR_GENERATION_ERROR)"
//	@Failure		504			{object}	problem.Details	"UPSTREAM_TIMEOUT"
//	@Router			/v1/sessions/{sessionId}/qr [get]
func (h sessionLifecycle) getQR(c *gin.Context) {
	id, ok := sessionIDParam(c)
	if !ok {
		return
	}
	if _, ok := queryParams(c); !ok {
		return
	}
	ctx := middleware.Context(c)
	qr, err := h.qr.QR(ctx, id)
	if err != nil {
		if errors.Is(err, upstream.ErrNotFound) {
			err = h.noQR(ctx, id, err)
		}
		middleware.Fail(c, err)
		return
	}
	png, err := decodePNGDataURL(qr.Code)
	if err != nil {
		middleware.Fail(c, &problem.Error{Status: http.StatusBadGateway, Code: problem.CodeUpstreamError,
			Detail: "Inbox Hub answered with a QR code that is not a PNG image.", Cause: err})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Vary", "Accept")
	if prefersPNG(c.Request.Header.Values("Accept")) {
		c.Data(http.StatusOK, "image/png", png)
		return
	}
	c.JSON(http.StatusOK, QRAnswer{
		Data: QRCode{Code: pngDataURLPrefix + base64.StdEncoding.EncodeToString(png), ExpiresAt: timePtr(qr.ExpiresAt)},
	})
}

// noQR explains an upstream 404 on the QR route from the session's live status: connected (409),
// or not ready yet (404 QR_NOT_READY, saying whether a connection is under way).
func (h sessionLifecycle) noQR(ctx context.Context, id string, cause error) error {
	st, err := h.qr.SessionStatus(ctx, id)
	if err != nil {
		return err
	}
	detail := "The QR code is being prepared. Retry after the time given."
	switch NormalizeSessionStatus(st.Status) {
	case SessionConnected:
		return errAlreadyConnected
	case SessionConnecting, SessionQRPending:
	default:
		detail = "There is no QR code: the session is not connecting. Start it with POST /v1/sessions/" + id +
			"/connect, then poll this route."
	}
	return &problem.Error{Status: http.StatusNotFound, Code: problem.CodeQRNotReady, Detail: detail,
		RetryAfter: qrRetryAfter, Cause: cause}
}

const pngDataURLPrefix = "data:image/png;base64,"

// maxQRBytes bounds the QR image (a QR PNG is a few kilobytes).
const maxQRBytes = 1 << 20

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// decodePNGDataURL returns the PNG bytes of a data:image/png;base64 URL, refusing anything else.
func decodePNGDataURL(s string) ([]byte, error) {
	if len(s) < len(pngDataURLPrefix) || !strings.EqualFold(s[:len(pngDataURLPrefix)], pngDataURLPrefix) {
		return nil, errors.New("QR is not a data:image/png;base64 URL")
	}
	enc := s[len(pngDataURLPrefix):]
	if base64.StdEncoding.DecodedLen(len(enc)) > maxQRBytes {
		return nil, errors.New("QR image is too large")
	}
	png, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		png, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(enc, "="))
	}
	if err != nil {
		return nil, errors.New("QR data URL is not valid base64")
	}
	if !bytes.HasPrefix(png, pngSignature) {
		return nil, errors.New("QR image is not a PNG")
	}
	return png, nil
}

// prefersPNG reports whether an Accept header asks for image/png over application/json (by
// quality, the most specific matching range deciding). No Accept, */* or anything else gets JSON.
func prefersPNG(accept []string) bool {
	header := strings.Join(accept, ",")
	if header == "" {
		return false
	}
	png := acceptQuality(header, "image", "png")
	return png > 0 && png > acceptQuality(header, "application", "json")
}

// acceptQuality is the q an Accept header gives to type/subtype: that of the most specific range
// matching it (exact, then type/*, then */*), 0 when none does.
func acceptQuality(header, typ, sub string) float64 {
	best, bestRank := 0.0, -1
	for _, part := range strings.Split(header, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		t, s, _ := strings.Cut(mt, "/")
		rank := -1
		switch {
		case t == typ && s == sub:
			rank = 2
		case t == typ && s == "*":
			rank = 1
		case t == "*" && s == "*":
			rank = 0
		}
		if rank < bestRank || rank < 0 {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				continue
			}
			q = f
		}
		if rank > bestRank || q > best {
			best, bestRank = q, rank
		}
	}
	return best
}
