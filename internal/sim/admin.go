package sim

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// adminRoutes registers the /_sim routes: the Server's methods over HTTP, in plain JSON (no
// upstream envelope), neither counted nor rate limited.
func (s *Server) adminRoutes() {
	for pattern, h := range map[string]func(r *http.Request) (any, error){
		"GET /_sim/counters":        func(*http.Request) (any, error) { return s.Counters(), nil },
		"POST /_sim/counters/reset": func(*http.Request) (any, error) { s.ResetCounters(); return ok(), nil },
		"GET /_sim/faults":          func(*http.Request) (any, error) { return s.CurrentFaults(), nil },
		"PUT /_sim/faults":          s.adminSetFaults,
		"POST /_sim/revoke":         func(*http.Request) (any, error) { s.RevokeAllTokens(); return ok(), nil },
		"POST /_sim/ratelimits/reset": func(*http.Request) (any, error) {
			s.ResetRateLimits()
			return ok(), nil
		},
		"POST /_sim/sessions/{sessionId}/status":                  s.adminSetStatus,
		"POST /_sim/sessions/{sessionId}/scan":                    s.adminScan,
		"POST /_sim/sessions/{sessionId}/mutate-contacts":         s.adminMutateContacts,
		"POST /_sim/sessions/{sessionId}/chats/{chatId}/messages": s.adminAddMessages,
	} {
		s.mux.Handle(pattern, s.serveAdmin(h))
	}
}

// adminError is an admin answer that is not a 200.
type adminError struct {
	status int
	err    error
}

func (e *adminError) Error() string { return e.err.Error() }

func badRequest(err error) error { return &adminError{http.StatusBadRequest, err} }

func ok() map[string]bool { return map[string]bool{"ok": true} }

// serveAdmin checks the admin key and writes h's result, or {"error": "..."} with 400, 401 or
// 404 (unknown session).
func (s *Server) serveAdmin(h func(r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.AdminKey != "" &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Sim-Admin-Key")), []byte(s.opts.AdminKey)) != 1 {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong X-Sim-Admin-Key"})
			return
		}
		out, err := h(r)
		if err == nil {
			writeJSON(w, http.StatusOK, out)
			return
		}
		status := http.StatusBadRequest
		var ae *adminError
		switch {
		case errors.Is(err, ErrUnknownSession):
			status = http.StatusNotFound
		case errors.As(err, &ae):
			status = ae.status
		}
		writeJSON(w, status, map[string]string{"error": err.Error()})
	})
}

// decodeAdmin reads a JSON body of at most 64 KiB into v, refusing unknown fields.
func decodeAdmin(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest(err)
	}
	return nil
}

func (s *Server) adminSetFaults(r *http.Request) (any, error) {
	var f Faults
	if err := decodeAdmin(r, &f); err != nil {
		return nil, err
	}
	s.SetFaults(f)
	return s.CurrentFaults(), nil
}

func (s *Server) adminSetStatus(r *http.Request) (any, error) {
	var body struct {
		Status string `json:"status"`
	}
	if err := decodeAdmin(r, &body); err != nil {
		return nil, err
	}
	if err := s.SetSessionStatus(r.PathValue("sessionId"), body.Status); err != nil {
		return nil, err
	}
	return ok(), nil
}

func (s *Server) adminScan(r *http.Request) (any, error) {
	if err := s.ScanQR(r.PathValue("sessionId")); err != nil {
		if errors.Is(err, ErrUnknownSession) {
			return nil, err
		}
		return nil, &adminError{http.StatusConflict, err}
	}
	return ok(), nil
}

func (s *Server) adminMutateContacts(r *http.Request) (any, error) {
	var body struct {
		N int `json:"n"`
	}
	if err := decodeAdmin(r, &body); err != nil {
		return nil, err
	}
	ids, err := s.MutateContacts(r.PathValue("sessionId"), body.N)
	if err != nil {
		return nil, err
	}
	return map[string][]string{"ids": ids}, nil
}

func (s *Server) adminAddMessages(r *http.Request) (any, error) {
	var body struct {
		N int `json:"n"`
	}
	if err := decodeAdmin(r, &body); err != nil {
		return nil, err
	}
	if err := s.AddMessages(r.PathValue("sessionId"), r.PathValue("chatId"), body.N); err != nil {
		return nil, err
	}
	return ok(), nil
}
