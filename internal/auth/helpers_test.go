package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
)

func init() { gin.SetMode(gin.TestMode) }

// now is the fixed time of the tests' clock.
var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	testIssuer   = "https://crm.example.com"
	testAudience = "inboxhub-gateway"
)

// fixture holds credentials made for one test run: API keys, an HS256 secret and an RSA key pair.
type fixture struct {
	readKey    string // "crm": sessions:read
	adminKey   string // "ops": admin only
	jwtLikeKey string // named "jwt:alice", to show it never shares a JWT caller's budget
	hsSecret   string
	rsaKey     *rsa.PrivateKey
	otherRSA   *rsa.PrivateKey
	pubPEM     []byte
	keys       []config.APIKey
}

var rsaKeys = sync.OnceValues(func() (*rsa.PrivateKey, *rsa.PrivateKey) {
	a, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	b, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return a, b
})

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		readKey:    "crm_" + randomHex(t, 24),
		adminKey:   "ops_" + randomHex(t, 24),
		jwtLikeKey: "odd_" + randomHex(t, 24),
		hsSecret:   randomHex(t, 32),
	}
	f.rsaKey, f.otherRSA = rsaKeys()
	der, err := x509.MarshalPKIXPublicKey(&f.rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	f.pubPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	f.keys = []config.APIKey{
		{Name: "crm", SHA256: sha256.Sum256([]byte(f.readKey)), Scopes: []string{"sessions:read"}},
		{Name: "ops", SHA256: sha256.Sum256([]byte(f.adminKey)), Scopes: []string{"admin"}},
		{Name: "jwt:alice", SHA256: sha256.Sum256([]byte(f.jwtLikeKey)), Scopes: []string{"sessions:read"}},
	}
	return f
}

// hsOptions are Options accepting the API keys and HS256 tokens of iss testIssuer, aud testAudience.
func (f *fixture) hsOptions() Options {
	return Options{APIKeys: f.keys, JWT: config.JWT{HS256Secret: config.NewSecret(f.hsSecret), Issuer: testIssuer, Audience: testAudience},
		Clock: func() time.Time { return now }}
}

// rsOptions are Options accepting the API keys and RS256 tokens signed by f.rsaKey.
func (f *fixture) rsOptions() Options {
	return Options{APIKeys: f.keys, JWT: config.JWT{RS256PublicKey: f.pubPEM, Issuer: testIssuer, Audience: testAudience},
		Clock: func() time.Time { return now }}
}

// claims returns valid claims for subject alice; edit them to break one thing.
func claims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub":   "alice",
		"iss":   testIssuer,
		"aud":   testAudience,
		"exp":   now.Add(time.Hour).Unix(),
		"iat":   now.Add(-time.Minute).Unix(),
		"scope": "sessions:read messages:send",
	}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	c[k] = v
	return c
}

func without(c jwt.MapClaims, k string) jwt.MapClaims {
	delete(c, k)
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) hs(t testing.TB, c jwt.MapClaims) string {
	return sign(t, jwt.SigningMethodHS256, []byte(f.hsSecret), c)
}

func (f *fixture) rs(t testing.TB, c jwt.MapClaims) string {
	return sign(t, jwt.SigningMethodRS256, f.rsaKey, c)
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLogger(logs *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// router is the gateway's middleware order in small: request id, access log, errors, CORS on the
// engine; then /v1 with the given middleware (authentication, limits) and three routes.
func router(logs *syncBuffer, origins []string, v1 ...gin.HandlerFunc) *gin.Engine {
	logger := newLogger(logs)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(middleware.RequestID(), middleware.AccessLog(logger, nil), middleware.Errors(logger), CORS(origins))
	r.NoRoute(middleware.NotFound())
	r.NoMethod(middleware.MethodNotAllowed())
	g := r.Group("/v1", v1...)
	whoami := func(c *gin.Context) {
		caller, ok := CallerOf(c)
		c.JSON(http.StatusOK, gin.H{"ok": ok, "caller": caller, "keyCaller": c.GetString(middleware.KeyCaller)})
	}
	g.GET("/whoami", whoami)
	g.GET("/sessions", Require("sessions:read"), whoami)
	g.POST("/messages", Require("messages:send"), whoami)
	return r
}

type answer struct {
	status int
	header http.Header
	body   string
}

// do sends one request; headers are set verbatim (several values of one name become repeated
// headers), bypassing the checks a real client would make.
func do(h http.Handler, method, path string, headers map[string][]string) answer {
	req := httptest.NewRequest(method, path, nil)
	for k, vs := range headers {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

func hdr(kv ...string) map[string][]string {
	m := map[string][]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = append(m[kv[i]], kv[i+1])
	}
	return m
}

// problemOf decodes a problem answer, failing the test unless it is one with the wanted status
// and code.
func problemOf(t *testing.T, a answer, status int, code string) problem.Details {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d; body %s", a.status, status, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("Content-Type %q, want %q", ct, problem.ContentType)
	}
	var d problem.Details
	if err := json.Unmarshal([]byte(a.body), &d); err != nil {
		t.Fatalf("body %q: %v", a.body, err)
	}
	if d.Code != code || d.Status != status || d.Detail == "" || d.RequestID == "" {
		t.Errorf("problem %+v, want code %s, status %d, a detail and a request id", d, code, status)
	}
	return d
}

type whoamiBody struct {
	OK        bool   `json:"ok"`
	Caller    Caller `json:"caller"`
	KeyCaller string `json:"keyCaller"`
}

func callerIn(t *testing.T, a answer) whoamiBody {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", a.status, a.body)
	}
	var w whoamiBody
	if err := json.Unmarshal([]byte(a.body), &w); err != nil {
		t.Fatal(err)
	}
	return w
}

// metricValue returns the value of the counter name with the given labels in reg (0 if absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// leaks reports which of the secrets appear in text.
func leaks(text string, secrets ...string) []string {
	var out []string
	for _, s := range secrets {
		if len(s) >= 8 && strings.Contains(text, s) {
			out = append(out, s)
		}
	}
	return out
}
