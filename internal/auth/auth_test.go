package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// credentials401 are requests that must all be refused with 401, each with the secrets that must
// not come back in the answer or the log.
type credentials401 struct {
	name    string
	headers map[string][]string
	reason  string // the auth_failures_total reason counted
	detail  string // a fragment of the detail
}

func hostile(t *testing.T, f *fixture) []credentials401 {
	valid := f.hs(t, claims())
	parts := strings.Split(valid, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "sessions:read", "admin", 1)))
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	bearer := func(tok string) map[string][]string { return hdr("Authorization", "Bearer "+tok) }
	return []credentials401{
		{"no credential", nil, "missing", "X-API-Key header or a JWT in Authorization: Bearer"},
		{"empty key", hdr("X-API-Key", ""), "malformed_key", "empty"},
		{"wrong key", hdr("X-API-Key", "crm_"+randomHex(t, 24)), "unknown_key", "not valid"},
		{"key of another case", hdr("X-API-Key", strings.ToUpper(f.readKey)), "unknown_key", "not valid"},
		{"key with a space inside", hdr("X-API-Key", f.readKey[:10]+" "+f.readKey[10:]), "malformed_key", "characters"},
		{"key with a leading space", hdr("X-API-Key", " "+f.readKey), "malformed_key", "characters"},
		{"key with a NUL", hdr("X-API-Key", f.readKey+"\x00"), "malformed_key", "characters"},
		{"key with a newline", hdr("X-API-Key", f.readKey+"\r\nX-Admin: 1"), "malformed_key", "characters"},
		{"key with a tab", hdr("X-API-Key", "\t"+f.readKey), "malformed_key", "characters"},
		{"non-ASCII key", hdr("X-API-Key", "ключ-"+f.readKey), "malformed_key", "characters"},
		{"over-long key", hdr("X-API-Key", f.readKey+strings.Repeat("a", 300)), "malformed_key", "longer than 256"},
		{"key sent twice", hdr("X-API-Key", f.readKey, "X-API-Key", f.readKey), "ambiguous", "once"},
		{"key and token", hdr("X-API-Key", f.readKey, "Authorization", "Bearer "+valid), "ambiguous", "not both"},
		{"Authorization sent twice", hdr("Authorization", "Bearer "+valid, "Authorization", "Bearer "+valid), "ambiguous", "once"},
		{"Bearer without token", hdr("Authorization", "Bearer"), "malformed_token", "no bearer token"},
		{"Bearer and spaces", hdr("Authorization", "Bearer    "), "malformed_token", "no bearer token"},
		{"Basic", hdr("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("crm:"+f.readKey))), "unsupported_scheme", "Bearer scheme"},
		{"API key as Authorization", hdr("Authorization", f.readKey), "unsupported_scheme", "Bearer scheme"},
		{"API key as bearer", bearer(f.readKey), "malformed_token", "well-formed"},
		{"alg none", bearer(none), "bad_signature", "algorithm or signature"},
		{"alg none without signature part", bearer(strings.TrimSuffix(none, ".")), "malformed_token", "well-formed"},
		{"signed with another secret", bearer(sign(t, jwt.SigningMethodHS256, []byte(randomHex(t, 32)), claims())), "bad_signature", "algorithm or signature"},
		{"tampered payload", bearer(parts[0] + "." + tamperedPayload + "." + parts[2]), "bad_signature", "algorithm or signature"},
		{"tampered signature", bearer(parts[0] + "." + parts[1] + "." + flipFirst(parts[2])), "bad_signature", "algorithm or signature"},
		{"RS256 token when HS256 is configured", bearer(f.rs(t, claims())), "bad_signature", "algorithm or signature"},
		{"HS512 with the right secret", bearer(sign(t, jwt.SigningMethodHS512, []byte(f.hsSecret), claims())), "bad_signature", "algorithm or signature"},
		{"expired", bearer(f.hs(t, with(claims(), "exp", now.Add(-2*time.Minute).Unix()))), "expired", "expired"},
		{"nbf in the future", bearer(f.hs(t, with(claims(), "nbf", now.Add(5*time.Minute).Unix()))), "not_yet_valid", "not valid yet"},
		{"iat in the future", bearer(f.hs(t, with(claims(), "iat", now.Add(5*time.Minute).Unix()))), "issued_in_future", "issued in the future"},
		{"wrong iss", bearer(f.hs(t, with(claims(), "iss", "https://evil.example.com"))), "wrong_issuer", "issuer"},
		{"no iss", bearer(f.hs(t, without(claims(), "iss"))), "missing_claim", "(iss)"},
		{"wrong aud", bearer(f.hs(t, with(claims(), "aud", "another-service"))), "wrong_audience", "aud"},
		{"no aud", bearer(f.hs(t, without(claims(), "aud"))), "missing_claim", "(aud)"},
		{"missing exp", bearer(f.hs(t, without(claims(), "exp"))), "missing_claim", "(exp)"},
		{"exp as a string", bearer(f.hs(t, with(claims(), "exp", "2099-01-01"))), "malformed_token", "well-formed"},
		{"missing sub", bearer(f.hs(t, without(claims(), "sub"))), "missing_claim", "sub"},
		{"sub with control characters", bearer(f.hs(t, with(claims(), "sub", "alice\n{\"level\":\"ERROR\"}"))), "invalid_subject", "sub"},
		{"sub too long", bearer(f.hs(t, with(claims(), "sub", strings.Repeat("a", 201)))), "invalid_subject", "sub"},
		{"scope as a number", bearer(f.hs(t, with(claims(), "scope", 42))), "malformed_token", "well-formed"},
		{"scope as an object", bearer(f.hs(t, with(claims(), "scope", map[string]any{"admin": true}))), "malformed_token", "well-formed"},
		{"scp with a number inside", bearer(f.hs(t, with(claims(), "scp", []any{"admin", 1}))), "malformed_token", "well-formed"},
		{"garbage", bearer("!!!.@@@.###"), "malformed_token", "well-formed"},
		{"garbage base64", bearer("aaaa.bbbb.cccc"), "malformed_token", "well-formed"},
		{"padded base64", bearer(parts[0] + "==." + parts[1] + "." + parts[2]), "malformed_token", "well-formed"},
		{"two parts", bearer(parts[0] + "." + parts[1]), "malformed_token", "well-formed"},
		{"five parts (JWE)", bearer(valid + ".aaaa.bbbb"), "malformed_token", "well-formed"},
		{"10 KiB token", bearer(f.hs(t, with(claims(), "pad", strings.Repeat("x", 10<<10)))), "token_too_large", "8192"},
		{"token with a trailing quote", bearer(valid + `"`), "malformed_token", "well-formed"},
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	o := f.hsOptions()
	o.Registerer = reg
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	r := router(logs, nil, a.Middleware())
	cases := hostile(t, f)
	if len(cases) < 25 {
		t.Fatalf("only %d hostile cases", len(cases))
	}
	reasons := map[string]int{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ans := do(r, http.MethodGet, "/v1/whoami", tc.headers)
			d := problemOf(t, ans, http.StatusUnauthorized, problem.CodeUnauthenticated)
			if !strings.Contains(d.Detail, tc.detail) {
				t.Errorf("detail %q does not say %q", d.Detail, tc.detail)
			}
			challenges := ans.header.Values("WWW-Authenticate")
			if !slices.ContainsFunc(challenges, func(s string) bool { return strings.HasPrefix(s, "APIKey ") }) ||
				!slices.ContainsFunc(challenges, func(s string) bool { return strings.HasPrefix(s, "Bearer ") }) {
				t.Errorf("WWW-Authenticate %q, want an APIKey and a Bearer challenge", challenges)
			}
			var secrets []string
			for _, vs := range tc.headers {
				for _, v := range vs {
					secrets = append(secrets, v, strings.TrimPrefix(v, "Bearer "))
				}
			}
			secrets = append(secrets, f.readKey, f.hsSecret)
			if l := leaks(ans.body, secrets...); l != nil {
				t.Errorf("the answer repeats a credential: %q", l)
			}
		})
		reasons[tc.reason]++
	}
	if l := leaks(logs.String(), f.readKey, f.adminKey, f.hsSecret); l != nil {
		t.Errorf("the log holds a credential")
	}
	for _, tc := range cases {
		for _, vs := range tc.headers {
			for _, v := range vs {
				if l := leaks(logs.String(), strings.TrimPrefix(v, "Bearer ")); l != nil {
					t.Errorf("%s: the log holds the credential", tc.name)
				}
			}
		}
	}
	for reason, n := range reasons {
		if got := metricValue(t, reg, "auth_failures_total", map[string]string{"reason": reason}); got != float64(n) {
			t.Errorf("auth_failures_total{reason=%q} = %v, want %d", reason, got, n)
		}
	}
}

func TestAuthenticateRS256Refuses(t *testing.T) {
	f := newFixture(t)
	a, err := New(f.rsOptions())
	if err != nil {
		t.Fatal(err)
	}
	r := router(&syncBuffer{}, nil, a.Middleware())
	tests := []struct {
		name  string
		token string
	}{
		// Key confusion: HS256 with the public key (which attackers have) as the secret.
		{"HS256 with the public key PEM as secret", sign(t, jwt.SigningMethodHS256, f.pubPEM, claims())},
		{"HS256 with the public key DER as secret", sign(t, jwt.SigningMethodHS256, x509.MarshalPKCS1PublicKey(&f.rsaKey.PublicKey), claims())},
		{"HS256 with the configured HS secret of another gateway", f.hs(t, claims())},
		{"RS256 by another key", sign(t, jwt.SigningMethodRS256, f.otherRSA, claims())},
		{"PS256 by the right key", sign(t, jwt.SigningMethodPS256, f.rsaKey, claims())},
		{"RS512 by the right key", sign(t, jwt.SigningMethodRS512, f.rsaKey, claims())},
		{"RS256 expired", f.rs(t, with(claims(), "exp", now.Add(-time.Hour).Unix()))},
		{"RS256 without sub", f.rs(t, without(claims(), "sub"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans := do(r, http.MethodGet, "/v1/whoami", hdr("Authorization", "Bearer "+tt.token))
			problemOf(t, ans, http.StatusUnauthorized, problem.CodeUnauthenticated)
			if !slices.Contains(ans.header.Values("WWW-Authenticate"), `Bearer realm="inboxhub-gateway", error="invalid_token"`) {
				t.Errorf("WWW-Authenticate %q, want a Bearer invalid_token challenge", ans.header.Values("WWW-Authenticate"))
			}
		})
	}
}

func TestBearerRefusedWithoutJWTConfigured(t *testing.T) {
	f := newFixture(t)
	a, err := New(Options{APIKeys: f.keys})
	if err != nil {
		t.Fatal(err)
	}
	r := router(&syncBuffer{}, nil, a.Middleware())
	tok := f.hs(t, claims())
	ans := do(r, http.MethodGet, "/v1/whoami", hdr("Authorization", "Bearer "+tok))
	d := problemOf(t, ans, http.StatusUnauthorized, problem.CodeUnauthenticated)
	if !strings.Contains(d.Detail, "does not accept bearer tokens") || strings.Contains(ans.body, tok) {
		t.Errorf("detail %q, want one saying bearer tokens are not accepted", d.Detail)
	}
	if got := ans.header.Values("WWW-Authenticate"); len(got) != 1 || !strings.HasPrefix(got[0], "APIKey ") {
		t.Errorf("WWW-Authenticate %q, want only the APIKey challenge", got)
	}
	ans = do(r, http.MethodGet, "/v1/whoami", nil)
	if d := problemOf(t, ans, http.StatusUnauthorized, problem.CodeUnauthenticated); strings.Contains(d.Detail, "Bearer") {
		t.Errorf("detail %q offers bearer tokens, which are not accepted", d.Detail)
	}
	// API keys still work.
	if w := callerIn(t, do(r, http.MethodGet, "/v1/whoami", hdr("X-API-Key", f.readKey))); w.Caller.Name != "crm" {
		t.Errorf("caller %+v, want crm", w.Caller)
	}
}

func TestAuthenticateAccepts(t *testing.T) {
	f := newFixture(t)
	hs, err := New(f.hsOptions())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := New(f.rsOptions())
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	hsRouter := router(logs, nil, hs.Middleware())
	rsRouter := router(logs, nil, rs.Middleware())
	tests := []struct {
		name    string
		router  *gin.Engine
		headers map[string][]string
		want    Caller
	}{
		{"API key", hsRouter, hdr("X-API-Key", f.readKey), Caller{Name: "crm", Scopes: []string{"sessions:read"}, Method: MethodAPIKey}},
		{"admin API key", hsRouter, hdr("x-api-key", f.adminKey), Caller{Name: "ops", Scopes: []string{"admin"}, Method: MethodAPIKey}},
		{"HS256 token, unknown scope ignored", hsRouter, hdr("Authorization", "Bearer "+f.hs(t, with(claims(), "scope", "messages:send bogus sessions:read  sessions:read"))),
			Caller{Name: "jwt:alice", Scopes: []string{"sessions:read", "messages:send"}, Method: MethodJWT}},
		{"lower-case scheme", hsRouter, hdr("Authorization", "bearer "+f.hs(t, claims())),
			Caller{Name: "jwt:alice", Scopes: []string{"sessions:read", "messages:send"}, Method: MethodJWT}},
		{"scope as an array", hsRouter, hdr("Authorization", "Bearer "+f.hs(t, with(claims(), "scope", []string{"sync", "nope"}))),
			Caller{Name: "jwt:alice", Scopes: []string{"sync"}, Method: MethodJWT}},
		{"scp string and scope array together", hsRouter, hdr("Authorization", "Bearer "+f.hs(t, with(with(claims(), "scope", []string{"sync"}), "scp", "admin"))),
			Caller{Name: "jwt:alice", Scopes: []string{"sync", "admin"}, Method: MethodJWT}},
		{"no scope claim", hsRouter, hdr("Authorization", "Bearer "+f.hs(t, without(claims(), "scope"))),
			Caller{Name: "jwt:alice", Method: MethodJWT}},
		{"aud as an array", hsRouter, hdr("Authorization", "Bearer "+f.hs(t, with(claims(), "aud", []string{"other", testAudience}))),
			Caller{Name: "jwt:alice", Scopes: []string{"sessions:read", "messages:send"}, Method: MethodJWT}},
		{"expired within the leeway", hsRouter, hdr("Authorization", "Bearer "+f.hs(t, with(claims(), "exp", now.Add(-10*time.Second).Unix()))),
			Caller{Name: "jwt:alice", Scopes: []string{"sessions:read", "messages:send"}, Method: MethodJWT}},
		{"nbf passed", hsRouter, hdr("Authorization", "Bearer "+f.hs(t, with(claims(), "nbf", now.Add(-time.Second).Unix()))),
			Caller{Name: "jwt:alice", Scopes: []string{"sessions:read", "messages:send"}, Method: MethodJWT}},
		{"RS256 token", rsRouter, hdr("Authorization", "Bearer "+f.rs(t, claims())),
			Caller{Name: "jwt:alice", Scopes: []string{"sessions:read", "messages:send"}, Method: MethodJWT}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := callerIn(t, do(tt.router, http.MethodGet, "/v1/whoami", tt.headers))
			if !w.OK || w.Caller.Name != tt.want.Name || w.Caller.Method != tt.want.Method || !slices.Equal(w.Caller.Scopes, tt.want.Scopes) {
				t.Errorf("caller %+v (found %v), want %+v", w.Caller, w.OK, tt.want)
			}
			// Metrics and the access log name a JWT caller "jwt" (no caller claim configured),
			// never by its subject.
			label := tt.want.Name
			if tt.want.Method == MethodJWT {
				label = JWTLabel
			}
			if w.KeyCaller != label {
				t.Errorf("middleware.KeyCaller %q, want %q", w.KeyCaller, label)
			}
		})
	}
	if !strings.Contains(logs.String(), `"caller":"jwt"`) || !strings.Contains(logs.String(), `"caller":"crm"`) {
		t.Errorf("the access log does not name the callers:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "alice") {
		t.Errorf("the access log names a JWT subject:\n%s", logs.String())
	}
	if l := leaks(logs.String(), f.readKey, f.adminKey, f.hsSecret); l != nil {
		t.Errorf("the log holds a credential")
	}
}

func TestLeewayOptions(t *testing.T) {
	f := newFixture(t)
	tok := f.hs(t, with(claims(), "exp", now.Add(-10*time.Second).Unix()))
	for _, tt := range []struct {
		leeway time.Duration
		want   int
	}{{0, http.StatusOK}, {time.Second, http.StatusUnauthorized}, {-1, http.StatusUnauthorized}, {time.Minute, http.StatusOK}} {
		o := f.hsOptions()
		o.Leeway = tt.leeway
		a, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if got := do(router(&syncBuffer{}, nil, a.Middleware()), http.MethodGet, "/v1/whoami", hdr("Authorization", "Bearer "+tok)).status; got != tt.want {
			t.Errorf("leeway %v, token expired 10s ago: status %d, want %d", tt.leeway, got, tt.want)
		}
	}
}

func TestRequire(t *testing.T) {
	f := newFixture(t)
	a, err := New(f.hsOptions())
	if err != nil {
		t.Fatal(err)
	}
	r := router(&syncBuffer{}, nil, a.Middleware())
	tests := []struct {
		name    string
		method  string
		path    string
		headers map[string][]string
		status  int
	}{
		{"read key reads", http.MethodGet, "/v1/sessions", hdr("X-API-Key", f.readKey), http.StatusOK},
		{"read key may not send", http.MethodPost, "/v1/messages", hdr("X-API-Key", f.readKey), http.StatusForbidden},
		{"admin does not imply sessions:read", http.MethodGet, "/v1/sessions", hdr("X-API-Key", f.adminKey), http.StatusForbidden},
		{"token with messages:send sends", http.MethodPost, "/v1/messages", hdr("Authorization", "Bearer "+f.hs(t, claims())), http.StatusOK},
		{"token without scopes reads nothing", http.MethodGet, "/v1/sessions", hdr("Authorization", "Bearer "+f.hs(t, without(claims(), "scope"))), http.StatusForbidden},
		{"unknown scope in a token grants nothing", http.MethodPost, "/v1/messages", hdr("Authorization", "Bearer "+f.hs(t, with(claims(), "scope", "messages:send:all messages"))), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans := do(r, tt.method, tt.path, tt.headers)
			if tt.status == http.StatusOK {
				callerIn(t, ans)
				return
			}
			d := problemOf(t, ans, http.StatusForbidden, problem.CodeForbidden)
			scope := map[string]string{"/v1/sessions": "sessions:read", "/v1/messages": "messages:send"}[tt.path]
			if !strings.Contains(d.Detail, `"`+scope+`"`) {
				t.Errorf("detail %q does not name the scope %s", d.Detail, scope)
			}
		})
	}

	// Without authentication Require refuses (a wiring mistake), with a 500 that says nothing more.
	bare := router(&syncBuffer{}, nil)
	ans := do(bare, http.MethodGet, "/v1/sessions", hdr("X-API-Key", f.readKey))
	if d := problemOf(t, ans, http.StatusInternalServerError, problem.CodeInternal); strings.Contains(d.Detail, "middleware") {
		t.Errorf("detail %q tells internals", d.Detail)
	}
}

func TestCallerHas(t *testing.T) {
	c := Caller{Name: "x", Scopes: []string{"admin", "sessions:read"}}
	for scope, want := range map[string]bool{"admin": true, "sessions:read": true, "sessions:write": false, "sessions": false, "": false} {
		if got := c.Has(scope); got != want {
			t.Errorf("Has(%q) = %v, want %v", scope, got, want)
		}
	}
}

func TestNewRefusesBadConfiguration(t *testing.T) {
	f := newFixture(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	privDER := x509.MarshalPKCS1PrivateKey(f.rsaKey)
	tests := []struct {
		name string
		o    Options
	}{
		{"garbage PEM", Options{JWT: config.JWT{RS256PublicKey: []byte("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")}}},
		{"not PEM", Options{JWT: config.JWT{RS256PublicKey: []byte("ssh-rsa AAAA")}}},
		{"private key instead", Options{JWT: config.JWT{RS256PublicKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: privDER})}}},
		{"1024-bit key", Options{JWT: config.JWT{RS256PublicKey: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: smallDER})}}},
		{"both algorithms", Options{JWT: config.JWT{HS256Secret: config.NewSecret(f.hsSecret), RS256PublicKey: f.pubPEM}}},
		{"short HS256 secret", Options{JWT: config.JWT{HS256Secret: config.NewSecret("short")}}},
		{"key without a name", Options{APIKeys: []config.APIKey{{SHA256: f.keys[0].SHA256, Scopes: []string{"admin"}}}}},
	}
	for _, tt := range tests {
		if _, err := New(tt.o); err == nil {
			t.Errorf("%s: New accepted it", tt.name)
		} else if strings.Contains(err.Error(), f.hsSecret) {
			t.Errorf("%s: the error repeats the secret", tt.name)
		}
	}
	if _, err := New(Options{}); err != nil {
		t.Errorf("New without credentials: %v", err)
	}
}

// flipFirst changes the first character of a base64url segment, which changes the bytes it
// decodes to while keeping it well-formed.
func flipFirst(seg string) string {
	if seg[0] == 'A' {
		return "B" + seg[1:]
	}
	return "A" + seg[1:]
}
