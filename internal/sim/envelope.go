package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Error codes of the upstream (docs/upstream.md), plus the few the simulator needs for cases it
// leaves unnamed.
const (
	codeValidation       = "VALIDATION_ERROR"
	codeAuthFailed       = "AUTHENTICATION_FAILED"
	codeAuthorization    = "AUTHORIZATION_FAILED"
	codeMissingAPIKey    = "MISSING_API_KEY"
	codeInvalidAPIKey    = "INVALID_API_KEY"
	codeMissingToken     = "MISSING_TOKEN"
	codeInvalidToken     = "INVALID_TOKEN"
	codeSessionNotFound  = "SESSION_NOT_FOUND"
	codeSessionNotConn   = "SESSION_NOT_CONNECTED"
	codeRateLimit        = "RATE_LIMIT_EXCEEDED"
	codeMessageRateLimit = "MESSAGE_RATE_LIMIT_EXCEEDED"
	codeContactNotFound  = "CONTACT_NOT_FOUND"
	codeInternal         = "INTERNAL_ERROR"
	codeConnection       = "CONNECTION_ERROR"
	codeQRGeneration     = "QR_GENERATION_ERROR"
	codeQRNotReady       = "QR_NOT_READY"
	codeQRNotAvailable   = "QR_NOT_AVAILABLE"
	codeSessionExists    = "SESSION_ALREADY_EXISTS"
	codeNotFound         = "NOT_FOUND"
	codeUnavailable      = "SERVICE_UNAVAILABLE"
)

// apiError is an error answer: status, code, text and optional details.
type apiError struct {
	status  int
	code    string
	text    string
	details any
}

func (e *apiError) Error() string { return e.code + ": " + e.text }

func errValidation(field, reason string) *apiError {
	return &apiError{http.StatusBadRequest, codeValidation, "Error de validación: " + field + " " + reason,
		map[string]string{"field": field, "message": reason}}
}

func errSessionNotFound() *apiError {
	return &apiError{http.StatusNotFound, codeSessionNotFound, "Sesión no encontrada", nil}
}

func errSessionNotConnected() *apiError {
	return &apiError{http.StatusBadRequest, codeSessionNotConn, "La sesión debe estar conectada", nil}
}

// reply is a success answer: status (200 when zero), optional message, and data.
type reply struct {
	status  int
	message string
	data    any
}

type successBody struct {
	Success bool   `json:"success"`
	Message string `json:"message,omitempty"`
	Data    any    `json:"data"`
}

type errorBody struct {
	Success   bool   `json:"success"`
	Error     string `json:"error,omitempty"`
	Message   string `json:"message,omitempty"`
	Code      string `json:"code"`
	Details   any    `json:"details,omitempty"`
	Timestamp string `json:"timestamp"`
}

// writeJSON writes v as the JSON answer with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) writeReply(w http.ResponseWriter, rep reply) {
	status := rep.status
	if status == 0 {
		status = http.StatusOK
	}
	writeJSON(w, status, successBody{Success: true, Message: rep.message, Data: rep.data})
}

// writeError writes an error envelope, with the text in "error" or, under the
// UseMessageField fault, in "message". An error without a code comes from the nginx in front
// of the upstream and is answered as nginx's HTML page.
func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	if e.code == "" {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(e.status)
		_, _ = fmt.Fprintf(w, "<html>\r\n<head><title>%[1]d %[2]s</title></head>\r\n<body>\r\n"+
			"<center><h1>%[1]d %[2]s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
			e.status, http.StatusText(e.status))
		return
	}
	body := errorBody{Code: e.code, Details: e.details, Timestamp: s.clock().UTC().Format(time.RFC3339)}
	if s.faults.useMessageField() {
		body.Message = e.text
	} else {
		body.Error = e.text
	}
	writeJSON(w, e.status, body)
}

// writeHandlerError writes err; anything that is not an *apiError becomes a generic 500 and is
// logged in full.
func (s *Server) writeHandlerError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error("sim: handler failed", "route", r.Pattern, "err", err)
		ae = &apiError{http.StatusInternalServerError, codeInternal, "Error interno del servidor", nil}
	}
	s.writeError(w, ae)
}

// decodeBody reads a JSON body of at most 1 MiB into v; an empty body leaves v as it is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	return &apiError{http.StatusBadRequest, codeValidation, "Cuerpo JSON inválido", nil}
}

// pagination is the "pagination" object of list answers.
type pagination struct {
	Total int `json:"total"`
	Page  int `json:"page"`
	Limit int `json:"limit"`
	Pages int `json:"pages"`
}

// pageRequest is a validated page and limit.
type pageRequest struct{ page, limit int }

// parsePage reads page (default 1) and limit (1..100, default def) from the query.
func parsePage(q url.Values, def int) (pageRequest, error) {
	p := pageRequest{page: 1, limit: def}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, errValidation("page", "must be an integer >= 1")
		}
		p.page = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return p, errValidation("limit", "must be an integer between 1 and 100")
		}
		p.limit = n
	}
	return p, nil
}

// bounds returns the slice bounds of this page within total items.
func (p pageRequest) bounds(total int) (from, to int) {
	if p.page-1 >= (total+p.limit-1)/p.limit {
		return total, total // past the last page; also keeps a huge page from overflowing
	}
	from = (p.page - 1) * p.limit
	return from, min(from+p.limit, total)
}

func (p pageRequest) pagination(total int) pagination {
	return pagination{Total: total, Page: p.page, Limit: p.limit, Pages: (total + p.limit - 1) / p.limit}
}
