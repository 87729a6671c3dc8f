package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Obviously fake values; the tests check that none of them is ever printed.
const (
	fakePassword = "fake-password-Zq81"
	fakeAPIKey   = "fake_upstream_key_9c2e"
	fakeIdent    = "fake-ident@example.invalid"
	fakeHS256    = "fake-hs256-secret-0123456789abcdefXYZ"
	fakeWebhook  = "fake-webhook-secret-77"
	fakeCallKey  = "fake-caller-key-abcdef123456"
	fakeRedisPw  = "fake-redis-pw-31"
)

var fakeEncKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func validEnv() map[string]string {
	return map[string]string{
		"INBOXHUB_BASE_URL":   "https://inboxhub.example.invalid",
		"INBOXHUB_IDENTIFIER": fakeIdent,
		"INBOXHUB_PASSWORD":   fakePassword,
		"INBOXHUB_API_KEY":    fakeAPIKey,
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(validEnv()))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Addr != ":8080" {
		t.Errorf("Addr = %q, want :8080", c.Addr)
	}
	if got := c.Upstream.RateAuth; got != (Rate{N: 5, Per: 15 * time.Minute}) {
		t.Errorf("RateAuth = %v", got)
	}
	if got := c.Upstream.RateRead; got != (Rate{N: 30, Per: time.Minute}) {
		t.Errorf("RateRead = %v", got)
	}
	if got := c.Upstream.RateSend; got != (Rate{N: 10, Per: time.Minute}) {
		t.Errorf("RateSend = %v", got)
	}
	if got := c.CallerRate; got != (Rate{N: 600, Per: time.Minute}) {
		t.Errorf("CallerRate = %v", got)
	}
	if c.TokenRefreshAt != 0.8 {
		t.Errorf("TokenRefreshAt = %v", c.TokenRefreshAt)
	}
	if c.RedisURL.IsSet() || c.TokenEncryption.CurrentID != "" {
		t.Errorf("unexpected redis/encryption defaults: %+v", c)
	}
	if c.Upstream.Password.Reveal() != fakePassword {
		t.Errorf("password not read")
	}
}

func TestLoadFileVariants(t *testing.T) {
	m := validEnv()
	delete(m, "INBOXHUB_PASSWORD")
	delete(m, "INBOXHUB_API_KEY")
	m["INBOXHUB_PASSWORD_FILE"] = writeFile(t, fakePassword+"\n")
	m["INBOXHUB_API_KEY_FILE"] = writeFile(t, fakeAPIKey)
	m["TOKEN_ENCRYPTION_KEY_FILE"] = writeFile(t, fakeEncKey+"\n")
	m["TOKEN_ENCRYPTION_KEY_ID"] = "2026-11"
	m["TOKEN_ENCRYPTION_OLD_KEYS"] = "old1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	c, err := Load(env(m))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Upstream.Password.Reveal() != fakePassword || c.Upstream.APIKey.Reveal() != fakeAPIKey {
		t.Errorf("secrets from files not read (trailing newline must be dropped)")
	}
	if c.TokenEncryption.CurrentID != "2026-11" || len(c.TokenEncryption.Keys) != 2 {
		t.Errorf("encryption = id %q, %d keys", c.TokenEncryption.CurrentID, len(c.TokenEncryption.Keys))
	}
}

func TestLoadDemoNeedsNoCredentials(t *testing.T) {
	c, err := Load(env(map[string]string{"GATEWAY_DEMO": "1"}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !c.Demo {
		t.Error("Demo not set")
	}
}

func TestLoadAPIKeys(t *testing.T) {
	m := validEnv()
	m["GATEWAY_API_KEYS_FILE"] = writeFile(t, `[
		{"name": "crm", "sha256": "`+strings.Repeat("ab", 32)+`", "scopes": ["sessions:read", "sync"]},
		{"name": "dev", "key": "`+fakeCallKey+`", "scopes": ["admin"]}]`)
	c, err := Load(env(m))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.APIKeys) != 2 || c.APIKeys[0].Name != "crm" || !c.APIKeys[1].Plain || c.APIKeys[0].Plain {
		t.Fatalf("APIKeys = %+v", c.APIKeys)
	}
}

// TestLoadProblems covers every error path: each case must be reported, naming its variable.
func TestLoadProblems(t *testing.T) {
	badKeys := func(content string) string { return writeFile(t, content) }
	cases := []struct {
		name    string
		set     map[string]string
		unset   []string
		wantVar string
		wantMsg string
	}{
		{"missing base url", nil, []string{"INBOXHUB_BASE_URL"}, "INBOXHUB_BASE_URL", "missing"},
		{"base url not http", map[string]string{"INBOXHUB_BASE_URL": "ftp://x"}, nil, "INBOXHUB_BASE_URL", "not an http(s) URL"},
		{"base url with /api", map[string]string{"INBOXHUB_BASE_URL": "https://x.invalid/api"}, nil, "INBOXHUB_BASE_URL", "must not end in /api"},
		{"base url with userinfo", map[string]string{"INBOXHUB_BASE_URL": "https://u:" + fakePassword + "@x.invalid"}, nil, "INBOXHUB_BASE_URL", "credentials"},
		{"missing identifier", nil, []string{"INBOXHUB_IDENTIFIER"}, "INBOXHUB_IDENTIFIER", "missing"},
		{"missing password", nil, []string{"INBOXHUB_PASSWORD"}, "INBOXHUB_PASSWORD", "missing"},
		{"missing api key", nil, []string{"INBOXHUB_API_KEY"}, "INBOXHUB_API_KEY", "missing"},
		{"secret set twice", map[string]string{"INBOXHUB_PASSWORD_FILE": "/nonexistent"}, nil, "INBOXHUB_PASSWORD", "set both"},
		{"secret file unreadable", map[string]string{"INBOXHUB_API_KEY_FILE": "/nonexistent/key"}, []string{"INBOXHUB_API_KEY"}, "INBOXHUB_API_KEY_FILE", "cannot read"},
		{"secret file empty", map[string]string{"INBOXHUB_API_KEY_FILE": writeFile(t, "\n")}, []string{"INBOXHUB_API_KEY"}, "INBOXHUB_API_KEY_FILE", "empty"},
		{"bad addr", map[string]string{"GATEWAY_ADDR": "8080"}, nil, "GATEWAY_ADDR", "listen address"},
		{"bad demo bool", map[string]string{"GATEWAY_DEMO": "yes please"}, nil, "GATEWAY_DEMO", "boolean"},
		{"bad log level", map[string]string{"GATEWAY_LOG_LEVEL": "loud"}, nil, "GATEWAY_LOG_LEVEL", "debug, info"},
		{"bad shutdown timeout", map[string]string{"GATEWAY_SHUTDOWN_TIMEOUT": "-1s"}, nil, "GATEWAY_SHUTDOWN_TIMEOUT", "positive duration"},
		{"bad upstream timeout", map[string]string{"UPSTREAM_TIMEOUT": "soon"}, nil, "UPSTREAM_TIMEOUT", "positive duration"},
		{"bad trusted proxy", map[string]string{"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,nope"}, nil, "GATEWAY_TRUSTED_PROXIES", "nope"},
		{"bad body limit", map[string]string{"GATEWAY_MAX_BODY_BYTES": "12"}, nil, "GATEWAY_MAX_BODY_BYTES", "between"},
		{"bad rate syntax", map[string]string{"UPSTREAM_RATE_READ": "lots"}, nil, "UPSTREAM_RATE_READ", "N/duration"},
		{"bad rate count", map[string]string{"UPSTREAM_RATE_AUTH": "-5/15m"}, nil, "UPSTREAM_RATE_AUTH", "count"},
		{"bad rate period", map[string]string{"UPSTREAM_RATE_SEND": "10/fortnight"}, nil, "UPSTREAM_RATE_SEND", "period"},
		{"bad caller rate", map[string]string{"GATEWAY_CALLER_RATE": "600/0s"}, nil, "GATEWAY_CALLER_RATE", "period"},
		{"bad reserve", map[string]string{"UPSTREAM_RATE_RESERVE": "1.5"}, nil, "UPSTREAM_RATE_RESERVE", "between"},
		{"bad sync workers", map[string]string{"GATEWAY_SYNC_WORKERS": "-1"}, nil, "GATEWAY_SYNC_WORKERS", "between"},
		{"bad sync item ttl", map[string]string{"GATEWAY_SYNC_ITEM_TTL": "forever"}, nil, "GATEWAY_SYNC_ITEM_TTL", "positive duration"},
		{"bad sync batch", map[string]string{"GATEWAY_SYNC_SINK_BATCH": "0"}, nil, "GATEWAY_SYNC_SINK_BATCH", "between"},
		{"bad sync on connect", map[string]string{"GATEWAY_SYNC_ON_CONNECT": "sometimes"}, nil, "GATEWAY_SYNC_ON_CONNECT", "boolean"},
		{"bad webhook workers", map[string]string{"GATEWAY_WEBHOOK_WORKERS": "many"}, nil, "GATEWAY_WEBHOOK_WORKERS", "between"},
		{"bad dedupe ttl", map[string]string{"GATEWAY_WEBHOOK_DEDUPE_TTL": "0s"}, nil, "GATEWAY_WEBHOOK_DEDUPE_TTL", "positive duration"},
		{"bad event attempts", map[string]string{"GATEWAY_EVENTS_MAX_ATTEMPTS": "0"}, nil, "GATEWAY_EVENTS_MAX_ATTEMPTS", "between"},
		{"bad event backoff", map[string]string{"GATEWAY_EVENTS_BACKOFF": "x"}, nil, "GATEWAY_EVENTS_BACKOFF", "positive duration"},
		{"bad event max backoff", map[string]string{"GATEWAY_EVENTS_MAX_BACKOFF": "-1m"}, nil, "GATEWAY_EVENTS_MAX_BACKOFF", "positive duration"},
		{"bad poll interval", map[string]string{"GATEWAY_STATUS_POLL_INTERVAL": "soon"}, nil, "GATEWAY_STATUS_POLL_INTERVAL", "positive duration"},
		{"bad quota fallback", map[string]string{"UPSTREAM_QUOTA_FALLBACK": "2"}, nil, "UPSTREAM_QUOTA_FALLBACK", "between"},
		{"bad refresh fraction", map[string]string{"TOKEN_REFRESH_AT": "1.2"}, nil, "TOKEN_REFRESH_AT", "between"},
		{"keys file unreadable", map[string]string{"GATEWAY_API_KEYS_FILE": "/nonexistent/keys.json"}, nil, "GATEWAY_API_KEYS_FILE", "cannot read"},
		{"keys file not json", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`{"name":`)}, nil, "GATEWAY_API_KEYS_FILE", "not a JSON list"},
		{"keys unknown field", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"name":"a","key":"` + fakeCallKey + `","scopes":["sync"],"extra":1}]`)}, nil, "GATEWAY_API_KEYS_FILE", "unknown field"},
		{"keys missing name", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"key":"` + fakeCallKey + `","scopes":["sync"]}]`)}, nil, "GATEWAY_API_KEYS_FILE", "name is missing"},
		{"keys duplicate name", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"name":"a","key":"` + fakeCallKey + `","scopes":["sync"]},{"name":"a","key":"` + fakeCallKey + `x","scopes":["sync"]}]`)}, nil, "GATEWAY_API_KEYS_FILE", "used twice"},
		{"keys duplicate key", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"name":"a","key":"` + fakeCallKey + `","scopes":["sync"]},{"name":"b","key":"` + fakeCallKey + `","scopes":["sync"]}]`)}, nil, "GATEWAY_API_KEYS_FILE", "listed twice"},
		{"keys both hash and key", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"name":"a","key":"` + fakeCallKey + `","sha256":"` + strings.Repeat("ab", 32) + `","scopes":["sync"]}]`)}, nil, "GATEWAY_API_KEYS_FILE", "not both"},
		{"keys bad hash", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"name":"a","sha256":"xyz","scopes":["sync"]}]`)}, nil, "GATEWAY_API_KEYS_FILE", "64 hex"},
		{"keys short key", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"name":"a","key":"short","scopes":["sync"]}]`)}, nil, "GATEWAY_API_KEYS_FILE", "shorter than 16"},
		{"keys no key", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"name":"a","scopes":["sync"]}]`)}, nil, "GATEWAY_API_KEYS_FILE", "is missing"},
		{"keys no scopes", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"name":"a","key":"` + fakeCallKey + `"}]`)}, nil, "GATEWAY_API_KEYS_FILE", "scopes is empty"},
		{"keys unknown scope", map[string]string{"GATEWAY_API_KEYS_FILE": badKeys(`[{"name":"a","key":"` + fakeCallKey + `","scopes":["root"]}]`)}, nil, "GATEWAY_API_KEYS_FILE", "unknown scope"},
		{"jwt secret short", map[string]string{"GATEWAY_JWT_HS256_SECRET": "short"}, nil, "GATEWAY_JWT_HS256_SECRET", "too short"},
		{"jwt both algorithms", map[string]string{"GATEWAY_JWT_HS256_SECRET": fakeHS256, "GATEWAY_JWT_RS256_PUBLIC_KEY_FILE": writeFile(t, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")}, nil, "GATEWAY_JWT_HS256_SECRET", "choose one"},
		{"jwt rs256 file unreadable", map[string]string{"GATEWAY_JWT_RS256_PUBLIC_KEY_FILE": "/nonexistent/pub.pem"}, nil, "GATEWAY_JWT_RS256_PUBLIC_KEY_FILE", "cannot read"},
		{"jwt rs256 not pem", map[string]string{"GATEWAY_JWT_RS256_PUBLIC_KEY_FILE": writeFile(t, "hello")}, nil, "GATEWAY_JWT_RS256_PUBLIC_KEY_FILE", "PEM"},
		{"cors wildcard", map[string]string{"GATEWAY_CORS_ORIGINS": "*"}, nil, "GATEWAY_CORS_ORIGINS", "not allowed"},
		{"cors not origin", map[string]string{"GATEWAY_CORS_ORIGINS": "https://crm.example.invalid/app"}, nil, "GATEWAY_CORS_ORIGINS", "not an origin"},
		{"encryption key not base64", map[string]string{"TOKEN_ENCRYPTION_KEY": "!!!"}, nil, "TOKEN_ENCRYPTION_KEY", "32 bytes"},
		{"encryption key too short", map[string]string{"TOKEN_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString([]byte("sixteen bytes!!!"))}, nil, "TOKEN_ENCRYPTION_KEY", "32 bytes"},
		{"encryption key id bad", map[string]string{"TOKEN_ENCRYPTION_KEY_ID": "a b"}, nil, "TOKEN_ENCRYPTION_KEY_ID", "characters"},
		{"old keys malformed", map[string]string{"TOKEN_ENCRYPTION_KEY": fakeEncKey, "TOKEN_ENCRYPTION_OLD_KEYS": "nocolon"}, nil, "TOKEN_ENCRYPTION_OLD_KEYS", "entry 1"},
		{"old keys without current", map[string]string{"TOKEN_ENCRYPTION_OLD_KEYS": "old:" + fakeEncKey}, nil, "TOKEN_ENCRYPTION_KEY", "missing while"},
		{"sink url bad", map[string]string{"CRM_SINK_URL": "not a url", "CRM_SIGNING_SECRET": fakeWebhook}, nil, "CRM_SINK_URL", "http(s) URL"},
		{"public url bad", map[string]string{"GATEWAY_PUBLIC_URL": "gateway.example.invalid"}, nil, "GATEWAY_PUBLIC_URL", "http(s) URL"},
		{"events url without secret", map[string]string{"CRM_EVENTS_URL": "https://crm.example.invalid/events"}, nil, "CRM_SIGNING_SECRET", "required when"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := validEnv()
			for _, k := range tc.unset {
				delete(m, k)
			}
			for k, v := range tc.set {
				m[k] = v
			}
			_, err := Load(env(m))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load error = %v, want *config.Error", err)
			}
			found := false
			for _, p := range ce.Problems {
				if p.Var == tc.wantVar && strings.Contains(p.Msg, tc.wantMsg) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem %s containing %q in:\n%v", tc.wantVar, tc.wantMsg, err)
			}
			assertNoSecrets(t, err.Error())
		})
	}
}

// TestLoadAppliesChecks gives Load a rule of another package (as cmd/gateway gives the one on
// REDIS_URL): it must run on the value however it is set (directly or through _FILE), never on an
// unset variable, and its problem must come in its variable's place among the others.
func TestLoadAppliesChecks(t *testing.T) {
	var seen []string
	refuse := func(v string) error {
		seen = append(seen, v)
		return errors.New("not a URL the store can open")
	}
	checks := []Check{{Var: "REDIS_URL", Valid: refuse}, {Var: "GATEWAY_PUBLIC_URL", Valid: refuse}}

	if _, err := Load(env(validEnv()), checks...); err != nil || len(seen) != 0 {
		t.Fatalf("unset variables: Load = %v, checks ran on %q", err, seen)
	}

	m := validEnv()
	m["GATEWAY_ADDR"] = "nope"
	m["REDIS_URL_FILE"] = writeFile(t, "redis://:"+fakeRedisPw+"@h:6379\n")
	m["GATEWAY_PUBLIC_URL"] = "https://gateway.example.invalid"
	m["GATEWAY_CALLER_RATE"] = "x"
	_, err := Load(env(m), checks...)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load error = %v, want *config.Error", err)
	}
	var vars []string
	for _, p := range ce.Problems {
		vars = append(vars, p.Var)
	}
	want := []string{"GATEWAY_ADDR", "REDIS_URL", "GATEWAY_CALLER_RATE", "GATEWAY_PUBLIC_URL"}
	if !slices.Equal(vars, want) {
		t.Errorf("problems of %q, want %q:\n%v", vars, want, err)
	}
	if !strings.Contains(err.Error(), "REDIS_URL: not a URL the store can open") {
		t.Errorf("the check's message is missing:\n%v", err)
	}
	if len(seen) != 2 || seen[0] != "redis://:"+fakeRedisPw+"@h:6379" {
		t.Errorf("checks ran %d times, first on the file's value: %v", len(seen), len(seen) > 0 && seen[0] == "redis://:"+fakeRedisPw+"@h:6379")
	}
	assertNoSecrets(t, err.Error())

	if _, err := Load(env(validEnv()), Check{Var: "REDIS_URL", Valid: func(string) error { return nil }}); err != nil {
		t.Errorf("a passing check: %v", err)
	}
}

func TestLoadReportsAllProblemsTogether(t *testing.T) {
	_, err := Load(env(map[string]string{
		"GATEWAY_ADDR":        "nope",
		"UPSTREAM_RATE_READ":  "x",
		"INBOXHUB_IDENTIFIER": fakeIdent,
	}))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load error = %v", err)
	}
	want := []string{"GATEWAY_ADDR", "INBOXHUB_BASE_URL", "INBOXHUB_PASSWORD", "INBOXHUB_API_KEY", "UPSTREAM_RATE_READ"}
	msg := err.Error()
	for _, v := range want {
		if !strings.Contains(msg, v) {
			t.Errorf("message does not name %s:\n%s", v, msg)
		}
	}
	if len(ce.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(ce.Problems), len(want), msg)
	}
	if !strings.HasPrefix(msg, fmt.Sprintf("invalid configuration (%d problems):", len(want))) {
		t.Errorf("message header: %q", strings.SplitN(msg, "\n", 2)[0])
	}
}

// TestEffectiveConfigLogMasksSecrets logs a configuration holding every secret and checks that no
// secret value appears in the log line, in any form.
func TestEffectiveConfigLogMasksSecrets(t *testing.T) {
	m := validEnv()
	m["GATEWAY_JWT_HS256_SECRET"] = fakeHS256
	m["INBOXHUB_WEBHOOK_SECRET"] = fakeWebhook
	m["CRM_SIGNING_SECRET"] = fakeWebhook + "crm"
	m["CRM_SINK_URL"] = "https://crm.example.invalid/sink?token=" + fakeWebhook
	m["REDIS_URL"] = "redis://:" + fakeRedisPw + "@127.0.0.1:6379/0"
	m["TOKEN_ENCRYPTION_KEY"] = fakeEncKey
	m["GATEWAY_API_KEYS_FILE"] = writeFile(t, `[{"name":"crm","key":"`+fakeCallKey+`","scopes":["sync"]}]`)
	c, err := Load(env(m))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("config", "config", c)
	out := buf.String()
	assertNoSecrets(t, out)
	if !strings.Contains(out, `"upstream_password":"***"`) || !strings.Contains(out, `"api_keys":["crm"]`) {
		t.Errorf("log line lacks the masked fields: %s", out)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		assertNoSecrets(t, s)
	}
	js, _ := json.Marshal(c)
	assertNoSecrets(t, string(js))
}

func assertNoSecrets(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{fakePassword, fakeAPIKey, fakeIdent, fakeHS256, fakeWebhook, fakeCallKey, fakeRedisPw, fakeEncKey} {
		if strings.Contains(s, secret) {
			t.Errorf("secret %q leaked into: %s", secret[:6]+"...", s)
		}
	}
}

func TestLoadWebhookSpool(t *testing.T) {
	load := func(extra map[string]string) (WebhookSpoolConfig, error) {
		e := validEnv()
		for k, v := range extra {
			e[k] = v
		}
		c, err := Load(env(e))
		return c.WebhookSpool, err
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"XDG_STATE_HOME":       {map[string]string{"XDG_STATE_HOME": "/var/state", "HOME": "/home/gw"}, "/var/state/inboxhub-gateway/webhook-spool"},
		"HOME":                 {map[string]string{"HOME": "/home/gw"}, "/home/gw/.local/state/inboxhub-gateway/webhook-spool"},
		"neither":              {nil, filepath.Join(os.TempDir(), "inboxhub-gateway-webhook-spool")},
		"set":                  {map[string]string{"GATEWAY_WEBHOOK_SPOOL_DIR": "/data/spool", "HOME": "/home/gw"}, "/data/spool"},
		"max bytes, 0 disable": {map[string]string{"GATEWAY_WEBHOOK_SPOOL_MAX_BYTES": "0", "HOME": "/h"}, "/h/.local/state/inboxhub-gateway/webhook-spool"},
	} {
		c, err := load(tc.env)
		if err != nil || c.Dir != tc.want {
			t.Errorf("%s: %+v %v, want dir %s", name, c, err, tc.want)
		}
	}
	if c, _ := load(nil); c.MaxBytes != 64<<20 {
		t.Errorf("default max bytes %d", c.MaxBytes)
	}
	if c, _ := load(map[string]string{"GATEWAY_WEBHOOK_SPOOL_MAX_BYTES": "0"}); c.MaxBytes != 0 {
		t.Errorf("max bytes 0 read as %d", c.MaxBytes)
	}
	for v, val := range map[string]string{"GATEWAY_WEBHOOK_SPOOL_DIR": "relative/spool", "GATEWAY_WEBHOOK_SPOOL_MAX_BYTES": "-1"} {
		_, err := load(map[string]string{v: val})
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), v) {
			t.Errorf("%s=%s: %v", v, val, err)
		}
	}
}

// TestLoadJWTCallerClaim: GATEWAY_JWT_CALLER_CLAIM takes a claim name; a claim naming a person
// (sub, email) or anything that is not a plain name is refused, naming the variable.
func TestLoadJWTCallerClaim(t *testing.T) {
	e := validEnv()
	e["GATEWAY_JWT_CALLER_CLAIM"] = "site"
	c, err := Load(env(e))
	if err != nil || c.JWT.CallerClaim != "site" {
		t.Fatalf("site: %q, %v", c.JWT.CallerClaim, err)
	}
	for _, bad := range []string{"sub", "email", "a b", "si/te", strings.Repeat("x", 65), "ß"} {
		e["GATEWAY_JWT_CALLER_CLAIM"] = bad
		if _, err := Load(env(e)); err == nil || !strings.Contains(err.Error(), "GATEWAY_JWT_CALLER_CLAIM") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}
