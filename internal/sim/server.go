package sim

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Server is one simulated Inbox Hub: its sessions and their data, tokens, rate limits, faults,
// counters and webhook sender. It is safe for concurrent use. Close stops its goroutines.
type Server struct {
	opts     Options
	clock    func() time.Time
	log      *slog.Logger
	user     user
	tokens   *tokenStore
	limiter  *rateLimiter
	counters *counterSet
	faults   faultState
	hooks    *webhookSender
	mux      *http.ServeMux

	mu       sync.Mutex // guards the session fields below and every session's state and data
	sessions []*session // in id order
	nextID   int

	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New builds a simulator from o, seeds its sessions and starts its background work (QR
// expiry and webhook delivery); call Close when done.
func New(o Options) (*Server, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	secret := o.JWTSecret
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret) // crypto/rand.Read never fails
	}
	s := &Server{
		opts:     o,
		clock:    o.Clock,
		log:      o.Logger,
		user:     newUser(o.Identifier),
		tokens:   newTokenStore(secret, o.Clock),
		limiter:  newRateLimiter(o.Clock),
		counters: newCounterSet(),
		mux:      http.NewServeMux(),
		nextID:   firstSessionID,
	}
	s.hooks = newWebhookSender(o.Logger, s.counters)
	if err := s.seedSessions(); err != nil {
		return nil, err
	}
	s.routes()
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.hooks.run(ctx) }()
	go func() { defer s.wg.Done(); s.tickSessions(ctx) }()
	return s, nil
}

// Handler serves the upstream routes (/api/..., /health) and the admin routes (/_sim/...).
func (s *Server) Handler() http.Handler { return s.mux }

// Close stops the background goroutines and drops undelivered webhooks. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.stop()
		s.wg.Wait()
	})
}

// Counters returns a snapshot of the counters.
func (s *Server) Counters() Counters { return s.counters.snapshot() }

// ResetCounters sets every counter back to zero. Rate limit windows are not touched.
func (s *Server) ResetCounters() { s.counters.reset() }

// ResetRateLimits forgets every rate limit window, as if the server had restarted.
func (s *Server) ResetRateLimits() { s.limiter.resetAll() }

// SetFaults replaces the injected faults. Statuses outside 400..599 are ignored.
func (s *Server) SetFaults(f Faults) { s.faults.set(f) }

// CurrentFaults returns the faults in force, with what is left of the one-shot counts.
func (s *Server) CurrentFaults() Faults { return s.faults.get() }

// RevokeAllTokens invalidates every access and refresh token issued so far: presenting one
// answers 401 INVALID_TOKEN.
func (s *Server) RevokeAllTokens() { s.tokens.revokeAll() }

// routeAuth is what a route demands of the caller.
type routeAuth int

const (
	authNone   routeAuth = iota
	authAPIKey           // X-API-Key, plus a valid Bearer if one is sent
	authBearer           // a valid Bearer access token
)

// apiHandler handles one /api route; the chain around it writes the answer.
type apiHandler func(w http.ResponseWriter, r *http.Request) (reply, error)

// route is one /api route: its pattern (also its counter and fault key), rate limit
// category, authentication and handler.
type route struct {
	pattern string
	cat     category
	auth    routeAuth
	h       apiHandler
}

// routes registers every route on the mux.
func (s *Server) routes() {
	for _, rt := range []route{
		{"POST /api/auth/login", catAuth, authNone, s.login},
		{"POST /api/auth/refresh-token", catAuth, authNone, s.refresh},
		{"GET /api/auth/profile", catNone, authBearer, s.profile},
		{"POST /api/auth/logout", catNone, authBearer, s.logout},

		{"GET /api/sessions", catRead, authAPIKey, s.listSessions},
		{"POST /api/sessions", catNone, authAPIKey, s.createSession},
		{"GET /api/sessions/{id}", catRead, authAPIKey, s.getSession},
		{"GET /api/sessions/{id}/status", catRead, authAPIKey, s.sessionStatus},
		{"POST /api/sessions/{id}/connect", catNone, authAPIKey, s.connectSession},
		{"GET /api/sessions/{id}/qr", catRead, authAPIKey, s.sessionQR},
		{"POST /api/sessions/{id}/disconnect", catNone, authAPIKey, s.disconnectSession},
		{"DELETE /api/sessions/{id}", catNone, authAPIKey, s.deleteSession},
		{"PUT /api/sessions/{id}/webhook", catNone, authAPIKey, s.setWebhook},

		{"GET /api/contacts/{sessionId}", catRead, authAPIKey, s.listContacts},
		{"GET /api/contacts/{sessionId}/info/{contactId}", catRead, authAPIKey, s.contactInfo},
		{"GET /api/messages/{sessionId}/chats", catRead, authAPIKey, s.listChats},
		{"GET /api/messages/{sessionId}/{chatId}", catRead, authAPIKey, s.chatMessages},
		{"GET /api/messages/{sessionId}", catRead, authAPIKey, s.allMessages},
		{"POST /api/messages/{sessionId}/send", catSend, authAPIKey, s.sendMessage},
		{"PUT /api/messages/{sessionId}/{chatId}/read", catNone, authAPIKey, s.markRead},

		{"/api/", catNone, authNone, s.unknownRoute},
	} {
		s.mux.Handle(rt.pattern, s.serveAPI(rt))
	}
	s.mux.HandleFunc("GET /health", s.health)
	s.adminRoutes()
}

// serveAPI wraps an /api handler in the chain every upstream request goes through, in order:
// count, injected drop and latency, injected 429 and statuses, rate limits, authentication.
func (s *Server) serveAPI(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.counters.request(rt.pattern)
		if s.faults.takeDrop() {
			s.dropConnection(w)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if rec.status != 0 {
				s.counters.status(rec.status)
			}
		}()
		if !sleepContext(r.Context(), s.faults.latency()) {
			return
		}
		if e := s.admit(rec, r, rt); e != nil {
			s.writeError(rec, e)
			return
		}
		rep, err := rt.h(rec, r)
		if err != nil {
			s.writeHandlerError(rec, r, err)
			return
		}
		s.writeReply(rec, rep)
	})
}

// admit applies injected faults, rate limits and authentication; nil lets the request through.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, rt route) *apiError {
	if s.faults.take429() {
		return s.forced429(w, rt.cat)
	}
	if code := s.faults.forcedStatus(rt.pattern); code != 0 {
		if code == http.StatusTooManyRequests {
			return s.forced429(w, rt.cat)
		}
		return forcedError(rt.pattern, code)
	}
	if e := s.limit(w, r, rt.cat); e != nil {
		return e
	}
	return s.authenticate(r, rt.auth)
}

// limit counts the request against the global limit and its category's; on success the
// headers of the narrower limit are set.
func (s *Server) limit(w http.ResponseWriter, r *http.Request, cat category) *apiError {
	caller, now := callerOf(r), s.clock()
	var shown *decision
	for _, c := range []category{catGlobal, cat} {
		rate := s.rateOf(c)
		if !rate.limited() {
			continue
		}
		d := s.limiter.hit(c, caller, rate)
		if !d.allowed {
			return s.refuse(w, d, now, c)
		}
		shown = &d
	}
	if shown != nil {
		setRateHeaders(w.Header(), *shown, now)
	}
	return nil
}

func (s *Server) rateOf(c category) Rate {
	switch c {
	case catAuth:
		return s.opts.RateAuth
	case catRead:
		return s.opts.RateRead
	case catSend:
		return s.opts.RateSend
	case catGlobal:
		return s.opts.RateGlobal
	}
	return Rate{}
}

// refuse writes the headers of a refused request and returns its 429 error.
func (s *Server) refuse(w http.ResponseWriter, d decision, now time.Time, cat category) *apiError {
	setRateHeaders(w.Header(), d, now)
	s.counters.add(func(c *Counters) { c.RateLimited++ })
	code := codeRateLimit
	if cat == catSend {
		code = codeMessageRateLimit
	}
	return &apiError{http.StatusTooManyRequests, code, "Demasiadas solicitudes, intente de nuevo más tarde",
		map[string]any{"limit": d.rate.N, "windowMs": d.rate.Per.Milliseconds()}}
}

// forced429 answers an injected 429 that can be retried after one second.
func (s *Server) forced429(w http.ResponseWriter, cat category) *apiError {
	rate := s.rateOf(cat)
	if !rate.limited() {
		rate = Rate{N: 1, Per: time.Second}
	}
	now := s.clock()
	return s.refuse(w, decision{rate: rate, reset: now.Add(time.Second)}, now, cat)
}

// forcedError is the answer of an injected status: the code the upstream uses for it, or
// nginx's HTML page for 502 and 504 (the upstream sits behind nginx).
func forcedError(pattern string, code int) *apiError {
	e := &apiError{status: code, text: http.StatusText(code)}
	switch code {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		e.code = codeValidation
	case http.StatusUnauthorized:
		e.code, e.text = codeInvalidToken, "Token inválido o expirado"
	case http.StatusForbidden:
		e.code = codeAuthorization
	case http.StatusNotFound:
		e.code = codeNotFound
	case http.StatusConflict:
		e.code = "CONFLICT"
	case http.StatusServiceUnavailable:
		e.code = codeUnavailable
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		e.code = "" // answered by nginx, see writeError
	case http.StatusInternalServerError:
		e.code, e.text = codeInternal, "Error interno del servidor"
		switch {
		case strings.HasSuffix(pattern, "/connect"):
			e.code, e.text = codeConnection, "Error al conectar la sesión"
		case strings.HasSuffix(pattern, "/qr"):
			e.code, e.text = codeQRGeneration, "Error al generar el código QR"
		}
	default:
		e.code = codeInternal
	}
	return e
}

// authenticate checks the credentials the route demands.
func (s *Server) authenticate(r *http.Request, auth routeAuth) *apiError {
	switch auth {
	case authAPIKey:
		key := r.Header.Get("X-API-Key")
		if key == "" {
			return &apiError{http.StatusUnauthorized, codeMissingAPIKey, "API key requerida", nil}
		}
		if subtle.ConstantTimeCompare([]byte(key), []byte(s.opts.APIKey)) != 1 {
			return &apiError{http.StatusUnauthorized, codeInvalidAPIKey, "API key inválida", nil}
		}
		if r.Header.Get("Authorization") == "" {
			return nil
		}
		_, e := s.bearer(r)
		return e
	case authBearer:
		_, e := s.bearer(r)
		return e
	}
	return nil
}

// bearer validates the request's Bearer access token and returns its jti.
func (s *Server) bearer(r *http.Request) (string, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", &apiError{http.StatusUnauthorized, codeMissingToken, "Token de acceso requerido", nil}
	}
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if ok {
		if jti, err := s.tokens.validate(strings.TrimSpace(raw), kindAccess); err == nil {
			return jti, nil
		}
	}
	return "", &apiError{http.StatusUnauthorized, codeInvalidToken, "Token inválido o expirado", nil}
}

// callerOf is who a rate limit counts against: the API key when one is sent, else the
// client address.
func callerOf(r *http.Request) string {
	if k := r.Header.Get("X-API-Key"); k != "" {
		return "key:" + k
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

// dropConnection closes the client's connection without answering.
func (s *Server) dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil { // HTTP/2 cannot hijack: the nearest thing is an empty 502
		s.log.Warn("sim: cannot drop connection", "err", err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	_ = conn.Close()
}

// sleepContext waits d or until ctx ends, reporting whether the full wait happened.
func sleepContext(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// statusRecorder remembers the status written, for the counters.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) unknownRoute(http.ResponseWriter, *http.Request) (reply, error) {
	return reply{}, &apiError{http.StatusNotFound, codeNotFound, "Ruta no encontrada", nil}
}

// health answers GET /health, which needs no credentials. It is counted apart from /api
// (Counters.HealthChecks). During an outage injected with Faults.AllStatus 502, 503 or 504 (the
// proxy in front of the upstream answering for a server that is down) it fails too.
func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	s.counters.add(func(c *Counters) { c.HealthChecks++ })
	if code := s.faults.outageStatus(); code != 0 {
		s.writeError(w, &apiError{status: code}) // nginx's page: the server behind it is down
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"success":     true,
		"message":     "Inbox Hub simulator is running",
		"timestamp":   s.clock().UTC().Format(time.RFC3339),
		"version":     "2.0.0-sim",
		"environment": "simulator",
	})
}
