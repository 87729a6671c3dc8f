package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var sentinels = []error{ErrUnauthorized, ErrAuthFailed, ErrRateLimited, ErrSessionNotFound,
	ErrSessionNotConnected, ErrNotFound, ErrConflict, ErrUnavailable, ErrTimeout, ErrBadResponse}

// matched lists the sentinels err matches.
func matched(err error) []error {
	var out []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		header      map[string]string
		body        string
		want        error // nil: no sentinel
		wantCode    string
		wantMessage string
		wantRetry   time.Duration
	}{
		{name: "401 invalid token", status: 401, body: `{"success":false,"error":"Token inválido","code":"INVALID_TOKEN"}`,
			want: ErrUnauthorized, wantCode: "INVALID_TOKEN", wantMessage: "Token inválido"},
		{name: "401 invalid api key", status: 401, body: `{"success":false,"error":"API key inválida","code":"INVALID_API_KEY"}`,
			want: ErrAuthFailed, wantCode: "INVALID_API_KEY"},
		{name: "401 missing api key in message shape", status: 401, body: `{"success":false,"message":"Falta API key","code":"MISSING_API_KEY"}`,
			want: ErrAuthFailed, wantCode: "MISSING_API_KEY", wantMessage: "Falta API key"},
		{name: "403 invalid api key", status: 403, body: `{"success":false,"error":"x","code":"INVALID_API_KEY"}`, want: ErrAuthFailed},
		{name: "403 authorization failed", status: 403, body: `{"success":false,"error":"no","code":"AUTHORIZATION_FAILED"}`, want: nil},
		{name: "404 session not found", status: 404, body: `{"success":false,"message":"Sesión no encontrada","code":"SESSION_NOT_FOUND"}`,
			want: ErrSessionNotFound, wantMessage: "Sesión no encontrada"},
		{name: "404 other", status: 404, body: `{"success":false,"error":"Not found"}`, want: ErrNotFound},
		{name: "404 without body", status: 404, body: ``, want: ErrNotFound, wantMessage: "Not Found"},
		{name: "400 not connected", status: 400, body: `{"success":false,"error":"La sesión debe estar conectada","code":"SESSION_NOT_CONNECTED"}`,
			want: ErrSessionNotConnected, wantMessage: "La sesión debe estar conectada"},
		{name: "409 disconnected", status: 409, body: `{"success":false,"error":"x","code":"SESSION_DISCONNECTED"}`, want: ErrSessionNotConnected},
		{name: "409 conflict", status: 409, body: `{"success":false,"error":"exists"}`, want: ErrConflict},
		{name: "429 retry-after", status: 429, header: map[string]string{"Retry-After": "7"},
			body: `{"success":false,"error":"Too many","code":"RATE_LIMIT_EXCEEDED"}`, want: ErrRateLimited, wantRetry: 7 * time.Second},
		{name: "429 ratelimit-reset", status: 429, header: map[string]string{"RateLimit-Reset": "30"}, body: `{}`,
			want: ErrRateLimited, wantRetry: 30 * time.Second},
		{name: "429 without headers", status: 429, body: `{}`, want: ErrRateLimited, wantRetry: time.Second},
		{name: "500 internal", status: 500, body: `{"success":false,"error":"column missing","code":"INTERNAL_ERROR"}`, want: ErrUnavailable},
		{name: "502 html", status: 502, body: `<html>Bad Gateway</html>`, want: ErrUnavailable, wantMessage: "Bad Gateway"},
		{name: "503", status: 503, header: map[string]string{"Retry-After": "3"}, body: `{}`, want: ErrUnavailable, wantRetry: 3 * time.Second},
		{name: "422 validation", status: 422, body: `{"success":false,"error":"bad","code":"VALIDATION_ERROR"}`, want: nil},
		{name: "both texts: message first", status: 400, body: `{"success":false,"message":"from message","error":"from error"}`,
			wantMessage: "from message"},
		{name: "error object", status: 400, body: `{"success":false,"error":{"message":"inner","code":"SESSION_NOT_CONNECTED"}}`,
			want: ErrSessionNotConnected, wantCode: "SESSION_NOT_CONNECTED", wantMessage: "inner"},
		{name: "200 success false", status: 200, body: `{"success":false,"error":"no","code":"SESSION_NOT_CONNECTED"}`,
			want: ErrSessionNotConnected},
		{name: "200 not json", status: 200, body: `<html></html>`, want: ErrBadResponse},
		{name: "200 wrong data", status: 200, body: `{"success":true,"data":{"contacts":"nope"}}`, want: ErrBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.mux.HandleFunc("GET /api/contacts/{sessionId}", func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			c := f.client(WithRetry(1, time.Millisecond, time.Millisecond))
			_, err := c.Contacts(context.Background(), "abc_123", ListParams{})
			if err == nil {
				t.Fatal("no error")
			}
			got := matched(err)
			switch {
			case tt.want == nil && len(got) != 0:
				t.Errorf("matches %v, want no sentinel", got)
			case tt.want != nil && (len(got) != 1 || got[0] != tt.want):
				t.Errorf("matches %v, want exactly %v (err %v)", got, tt.want, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not an *Error: %T", err)
			}
			if e.Route != "/api/contacts/:sessionId" || e.Method != http.MethodGet {
				t.Errorf("route %q method %q", e.Route, e.Method)
			}
			if strings.Contains(err.Error(), "abc_123") {
				t.Errorf("error names the real path: %v", err)
			}
			if tt.wantCode != "" && e.Code != tt.wantCode {
				t.Errorf("code %q, want %q", e.Code, tt.wantCode)
			}
			if tt.wantMessage != "" && e.Message != tt.wantMessage {
				t.Errorf("message %q, want %q", e.Message, tt.wantMessage)
			}
			if tt.wantRetry != 0 && (e.RetryAfter < tt.wantRetry-time.Second || e.RetryAfter > tt.wantRetry) {
				t.Errorf("RetryAfter %v, want %v", e.RetryAfter, tt.wantRetry)
			}
			if tt.want == ErrRateLimited {
				var rle *RateLimitError
				if !errors.As(err, &rle) || rle.Source != "upstream" || rle.RetryAfter != e.RetryAfter {
					t.Errorf("errors.As RateLimitError: %+v", rle)
				}
			}
		})
	}
}

func TestLoginErrorsAreAuthFailed(t *testing.T) {
	for _, status := range []int{401, 403} {
		f := newFake(t)
		f.mux.HandleFunc("POST /api/auth/login", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, status, fail("AUTHENTICATION_FAILED", "Credenciales inválidas"))
		})
		c := f.client()
		_, err := c.Login(context.Background())
		if got := matched(err); len(got) != 1 || got[0] != ErrAuthFailed {
			t.Errorf("%d: matches %v, want ErrAuthFailed", status, got)
		}
		if f.hits() != 1 {
			t.Errorf("%d: %d login attempts, want 1", status, f.hits())
		}
	}
}

// TestNoSecretInErrors makes the fake upstream echo the credentials, the token and the request body
// in its error text, for every kind of failure, and checks that none reaches the error string.
func TestNoSecretInErrors(t *testing.T) {
	const token, refresh = "eyJhbGciOiJIUzI1NiJ9.token-value.sig", "refresh-token-value-42"
	secrets := []string{testCreds.APIKey, testCreds.Password, testCreds.Identifier, token, refresh}
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body := make([]byte, 4096)
			n, _ := r.Body.Read(body)
			text := "key=" + r.Header.Get("X-API-Key") + " auth=" + r.Header.Get("Authorization") + " body=" + string(body[:n])
			writeJSON(w, status, map[string]any{"success": false, "message": text, "error": text,
				"code": r.Header.Get("X-API-Key")})
		}
	}
	for _, status := range []int{200, 400, 401, 404, 409, 429, 500, 503} {
		f := newFake(t)
		f.mux.Handle("POST /api/auth/login", echo(status))
		f.mux.Handle("POST /api/auth/refresh-token", echo(status))
		f.mux.Handle("GET /api/contacts/{id}", echo(status))
		f.mux.Handle("GET /api/auth/profile", echo(status))
		c := f.client(WithTokenSource(newTokens(token)), WithRetry(1, time.Millisecond, time.Millisecond))
		ctx := context.Background()
		calls := map[string]func() error{
			"login":    func() error { _, err := c.Login(ctx); return err },
			"refresh":  func() error { _, err := c.RefreshToken(ctx, refresh); return err },
			"contacts": func() error { _, err := c.Contacts(ctx, "abc_123", ListParams{}); return err },
			"profile":  func() error { _, err := c.Profile(ctx); return err },
			"raw": func() error {
				_, err := c.Do(ctx, RawRequest{Method: "GET", Path: "/api/auth/profile"})
				return err
			},
		}
		for name, fn := range calls {
			err := fn()
			if err == nil {
				if name != "raw" || status == 401 {
					t.Errorf("%s %d: no error", name, status)
				}
				continue
			}
			for _, form := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
				for _, s := range secrets {
					if strings.Contains(form, s) {
						t.Errorf("%s %d: error contains a secret: %s", name, status, form)
					}
				}
			}
		}
	}
}

func TestCredentialsPrintMasked(t *testing.T) {
	forms := []string{
		fmt.Sprint(testCreds), fmt.Sprintf("%v %+v %#v %s", testCreds, testCreds, testCreds, testCreds),
		fmt.Sprintf("%v", &testCreds),
	}
	var b strings.Builder
	logger := slogJSON(&b)
	logger.Info("config", "creds", testCreds)
	forms = append(forms, b.String())
	j, _ := testCreds.MarshalJSON()
	forms = append(forms, string(j))
	for _, f := range forms {
		for _, s := range []string{testCreds.APIKey, testCreds.Password, testCreds.Identifier} {
			if strings.Contains(f, s) {
				t.Errorf("credentials printed: %s", f)
			}
		}
		if !strings.Contains(f, "redacted") {
			t.Errorf("no masked value in %s", f)
		}
	}
	if got := fmt.Sprint(Credentials{}); !strings.Contains(got, "<unset>") {
		t.Errorf("empty credentials print %s", got)
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		base string
		cr   Credentials
		opts []Option
	}{
		{base: "https://api.inbox-hub.com/api", cr: testCreds},
		{base: "https://api.inbox-hub.com/api/", cr: testCreds},
		{base: "https://user:pw@api.inbox-hub.com", cr: testCreds},
		{base: "api.inbox-hub.com", cr: testCreds},
		{base: "https://api.inbox-hub.com", cr: Credentials{Identifier: "a", Password: "b"}},
		{base: "https://api.inbox-hub.com", cr: testCreds, opts: []Option{WithTimeout(0)}},
		{base: "https://api.inbox-hub.com", cr: testCreds, opts: []Option{WithRetry(0, time.Second, time.Second)}},
		{base: "https://api.inbox-hub.com", cr: testCreds, opts: []Option{WithBreaker(0, time.Second)}},
		{base: "https://api.inbox-hub.com", cr: testCreds, opts: []Option{WithMaxBodyBytes(0)}},
	}
	for _, tt := range tests {
		_, err := New(tt.base, tt.cr, tt.opts...)
		if err == nil {
			t.Errorf("New(%q) accepted", tt.base)
			continue
		}
		for _, s := range []string{testCreds.APIKey, testCreds.Password, "pw"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("New error contains a secret: %v", err)
			}
		}
	}
	if _, err := New("https://api.inbox-hub.com/", testCreds); err != nil {
		t.Errorf("New: %v", err)
	}
}

// FuzzDecodeError feeds arbitrary answers to the error decoding: it must not panic, must match at
// most one sentinel, must keep the secrets out and must produce bounded, valid text.
func FuzzDecodeError(f *testing.F) {
	seeds := []struct {
		status int
		body   string
	}{
		{401, `{"success":false,"error":"Token inválido","code":"INVALID_TOKEN"}`},
		{401, `{"success":false,"message":"API key","code":"INVALID_API_KEY"}`},
		{404, `{"success":false,"message":"Sesión no encontrada","code":"SESSION_NOT_FOUND"}`},
		{400, `{"success":false,"error":{"message":"x","code":"SESSION_NOT_CONNECTED"}}`},
		{429, `{"success":false,"error":"Too many","code":"RATE_LIMIT_EXCEEDED","details":{"retryAfter":60}}`},
		{500, `<html>oops</html>`},
		{200, `{"success":false,"code":12}`},
		{400, `{"success":false,"error":"key-0123456789abcdef s3cret-Passw0rd! tok-secret-xyz"}`},
		{400, "{\"error\":\"key-0123456789abc\xffdef\"}"},
		{409, `{"message":null,"error":["a"],"code":{"x":1}}`},
		{0, ``},
	}
	for _, s := range seeds {
		f.Add(s.status, []byte(s.body), "7")
	}
	secrets := []string{testCreds.APIKey, testCreds.Password, testCreds.Identifier, "tok-secret-xyz"}
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		cl := &call{method: "GET", route: "/api/contacts/:sessionId"}
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		e := answerError(cl, status, h, body, time.Now(), secrets...)
		if n := len(matched(e)); n > 1 {
			t.Fatalf("matches %d sentinels: %v", n, matched(e))
		}
		msg := e.Error()
		if !utf8.ValidString(msg) {
			t.Fatalf("invalid UTF-8: %q", msg)
		}
		if len(e.Message) > maxMessageBytes+len("...") {
			t.Fatalf("message of %d bytes", len(e.Message))
		}
		for _, s := range secrets {
			if strings.Contains(msg, s) {
				t.Fatalf("secret in %q", msg)
			}
		}
		if e.RetryAfter < 0 || e.RetryAfter > maxServerWait {
			t.Fatalf("RetryAfter %v", e.RetryAfter)
		}
	})
}
