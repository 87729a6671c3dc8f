package sim

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestLogin(t *testing.T) {
	s, c := startSim(t, testOptions())
	tests := []struct {
		name       string
		identifier string
		password   string
		status     int
		code       string
	}{
		{"good credentials", testIdentifier, testPassword, http.StatusOK, ""},
		{"wrong password", testIdentifier, "wrong", http.StatusUnauthorized, codeAuthFailed},
		{"wrong identifier", "someone@example.test", testPassword, http.StatusUnauthorized, codeAuthFailed},
		{"missing password", testIdentifier, "", http.StatusBadRequest, codeValidation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.do(http.MethodPost, "/api/auth/login", map[string]string{"identifier": tt.identifier, "password": tt.password})
			if tt.status != http.StatusOK {
				r.mustError(t, tt.status, tt.code)
				return
			}
			var d tokenData
			r.must(t, http.StatusOK, &d)
			if !r.env.Success || r.env.Message != "Login exitoso" {
				t.Errorf("envelope: success %v message %q", r.env.Success, r.env.Message)
			}
			if d.AccessToken == "" || d.RefreshToken == "" || d.ExpiresIn != "24h" {
				t.Errorf("tokens: %+v", d)
			}
			for _, f := range []string{"id", "username", "email", "firstName", "lastName", "globalRole", "role", "isActive"} {
				if _, ok := d.User[f]; !ok {
					t.Errorf("user lacks %q: %v", f, d.User)
				}
			}
			if d.User["email"] != testIdentifier {
				t.Errorf("user email %v, want %s", d.User["email"], testIdentifier)
			}
		})
	}
	got := s.Counters()
	if got.Logins != 1 || got.LoginFailures != 3 {
		t.Errorf("counters: logins %d failures %d, want 1 and 3", got.Logins, got.LoginFailures)
	}
}

// parseUnverified reads the claims of a token without checking it, as the gateway does.
func parseUnverified(t *testing.T, raw string) (*jwt.Token, jwt.MapClaims) {
	t.Helper()
	claims := jwt.MapClaims{}
	tok, _, err := jwt.NewParser().ParseUnverified(raw, claims)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return tok, claims
}

func TestTokenLifetimeMatchesExpAndExpiresIn(t *testing.T) {
	tests := []struct {
		lifetime  time.Duration
		expiresIn string
	}{
		{2 * time.Second, "2s"},
		{15 * time.Minute, "15m"},
		{24 * time.Hour, "24h"},
		{7 * 24 * time.Hour, "7d"},
	}
	for _, tt := range tests {
		t.Run(tt.expiresIn, func(t *testing.T) {
			o := testOptions()
			o.TokenLifetime = tt.lifetime
			_, c := startSim(t, o)
			first, second := c.login(), c.login()
			if first.ExpiresIn != tt.expiresIn {
				t.Errorf("expiresIn %q, want %q", first.ExpiresIn, tt.expiresIn)
			}
			tok, claims := parseUnverified(t, first.AccessToken)
			if tok.Method.Alg() != "HS256" {
				t.Errorf("alg %s, want HS256", tok.Method.Alg())
			}
			exp, _ := claims.GetExpirationTime()
			iat, _ := claims.GetIssuedAt()
			if exp == nil || iat == nil || exp.Sub(iat.Time) != tt.lifetime {
				t.Errorf("exp %v - iat %v, want %v", exp, iat, tt.lifetime)
			}
			if sub, _ := claims.GetSubject(); sub == "" {
				t.Error("no sub claim")
			}
			_, claims2 := parseUnverified(t, second.AccessToken)
			if claims["jti"] == nil || claims["jti"] == claims2["jti"] {
				t.Errorf("jti not unique: %v and %v", claims["jti"], claims2["jti"])
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	tests := []struct {
		name   string
		rotate bool
		omit   bool
	}{
		{"same refresh token back", false, false},
		{"rotation", true, false},
		{"only accessToken", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			o.RotateRefreshTokens, o.OmitRefreshFields = tt.rotate, tt.omit
			s, c := startSim(t, o)
			first := c.login()
			r := c.do(http.MethodPost, "/api/auth/refresh-token", map[string]string{"refreshToken": first.RefreshToken})
			var fields map[string]string
			r.must(t, http.StatusOK, &fields)
			if fields["accessToken"] == "" || fields["accessToken"] == first.AccessToken {
				t.Fatalf("no new access token: %v", fields)
			}
			c.with("", fields["accessToken"]).get("/api/auth/profile").must(t, http.StatusOK, nil)

			switch {
			case tt.omit:
				if len(fields) != 1 {
					t.Errorf("answered %v, want only accessToken", fields)
				}
			case tt.rotate:
				if fields["refreshToken"] == "" || fields["refreshToken"] == first.RefreshToken {
					t.Errorf("refreshToken not rotated: %v", fields)
				}
				c.do(http.MethodPost, "/api/auth/refresh-token", map[string]string{"refreshToken": first.RefreshToken}).
					mustError(t, http.StatusUnauthorized, codeInvalidToken)
				c.do(http.MethodPost, "/api/auth/refresh-token", map[string]string{"refreshToken": fields["refreshToken"]}).
					must(t, http.StatusOK, nil)
			default:
				if fields["refreshToken"] != first.RefreshToken || fields["expiresIn"] != "24h" {
					t.Errorf("answered %v, want the same refresh token and expiresIn 24h", fields)
				}
			}
			if got := s.Counters(); got.Refreshes < 1 {
				t.Errorf("refreshes counted %d", got.Refreshes)
			}
		})
	}
}

func TestRefreshRefusals(t *testing.T) {
	s, c := startSim(t, testOptions())
	tok := c.login()
	tests := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"access token as refresh token", map[string]string{"refreshToken": tok.AccessToken}, http.StatusUnauthorized, codeInvalidToken},
		{"garbage", map[string]string{"refreshToken": "not.a.jwt"}, http.StatusUnauthorized, codeInvalidToken},
		{"missing", map[string]string{}, http.StatusBadRequest, codeValidation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.do(http.MethodPost, "/api/auth/refresh-token", tt.body).mustError(t, tt.status, tt.code)
		})
	}
	if got := s.Counters().RefreshFailures; got != int64(len(tests)) {
		t.Errorf("refresh failures %d, want %d", got, len(tests))
	}
}

func TestTokenExpiry(t *testing.T) {
	clock := newTestClock()
	o := testOptions()
	o.Clock, o.TokenLifetime = clock.Now, 2*time.Second
	_, c := startSim(t, o)
	authed := c.with(testAPIKey, c.login().AccessToken)
	authed.get("/api/auth/profile").must(t, http.StatusOK, nil)
	clock.Advance(2 * time.Second)
	authed.get("/api/auth/profile").mustError(t, http.StatusUnauthorized, codeInvalidToken)
	authed.get("/api/sessions").mustError(t, http.StatusUnauthorized, codeInvalidToken)
}

func TestRevokeAllTokens(t *testing.T) {
	s, c := startSim(t, testOptions())
	tok := c.login()
	authed := c.with(testAPIKey, tok.AccessToken)
	authed.get("/api/auth/profile").must(t, http.StatusOK, nil)
	authed.get("/api/sessions").must(t, http.StatusOK, nil)

	s.RevokeAllTokens()
	authed.get("/api/auth/profile").mustError(t, http.StatusUnauthorized, codeInvalidToken)
	authed.get("/api/sessions").mustError(t, http.StatusUnauthorized, codeInvalidToken)
	c.do(http.MethodPost, "/api/auth/refresh-token", map[string]string{"refreshToken": tok.RefreshToken}).
		mustError(t, http.StatusUnauthorized, codeInvalidToken)
	c.get("/api/sessions").must(t, http.StatusOK, nil) // the API key alone still works

	fresh := c.with(testAPIKey, c.login().AccessToken)
	fresh.get("/api/sessions").must(t, http.StatusOK, nil)
}

func TestLogout(t *testing.T) {
	_, c := startSim(t, testOptions())
	authed := c.with("", c.login().AccessToken)
	authed.do(http.MethodPost, "/api/auth/logout", nil).must(t, http.StatusOK, nil)
	authed.get("/api/auth/profile").mustError(t, http.StatusUnauthorized, codeInvalidToken)
}

func TestCredentialChecks(t *testing.T) {
	_, c := startSim(t, testOptions())
	valid := c.login().AccessToken
	tests := []struct {
		name   string
		path   string
		apiKey string
		bearer string
		status int
		code   string
	}{
		{"no API key", "/api/sessions", "", "", http.StatusUnauthorized, codeMissingAPIKey},
		{"wrong API key", "/api/sessions", "wrong-key", "", http.StatusUnauthorized, codeInvalidAPIKey},
		{"API key with bad Bearer", "/api/contacts/demo_session", testAPIKey, "bad.token.here", http.StatusUnauthorized, codeInvalidToken},
		{"API key with good Bearer", "/api/contacts/demo_session", testAPIKey, valid, http.StatusOK, ""},
		{"API key alone", "/api/messages/demo_session/chats", testAPIKey, "", http.StatusOK, ""},
		{"profile without Bearer", "/api/auth/profile", testAPIKey, "", http.StatusUnauthorized, codeMissingToken},
		{"profile with bad Bearer", "/api/auth/profile", "", "bad", http.StatusUnauthorized, codeInvalidToken},
		{"profile with Bearer", "/api/auth/profile", "", valid, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.with(tt.apiKey, tt.bearer).get(tt.path)
			if tt.code == "" {
				r.must(t, tt.status, nil)
				return
			}
			r.mustError(t, tt.status, tt.code)
		})
	}
}

func TestTokenSignedWithConfiguredSecret(t *testing.T) {
	o := testOptions()
	o.JWTSecret = []byte("0123456789abcdef0123456789abcdef")
	_, c := startSim(t, o)
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(c.login().AccessToken, claims, func(*jwt.Token) (any, error) { return o.JWTSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		t.Fatalf("token does not verify with the configured secret: %v", err)
	}
	for _, k := range []string{"exp", "iat", "sub", "jti"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim %s missing: %v", k, claims)
		}
	}
}
