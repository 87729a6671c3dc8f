package app_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/inboxhub-gateway/gateway/internal/app"
	"github.com/inboxhub-gateway/gateway/internal/config"
)

// TestConfigChecksRefuseBadRedisURL loads configurations with REDIS_URLs the store could not open,
// through the checks cmd/gateway gives config.Load: each must be a problem of REDIS_URL that says
// why, without repeating the password.
func TestConfigChecksRefuseBadRedisURL(t *testing.T) {
	t.Parallel()
	const pw = "fake-redis-pw-31"
	base := map[string]string{
		"INBOXHUB_BASE_URL":   "https://inboxhub.example.invalid",
		"INBOXHUB_IDENTIFIER": "fake-ident@example.invalid",
		"INBOXHUB_PASSWORD":   "fake-password-Zq81",
		"INBOXHUB_API_KEY":    "fake_upstream_key_9c2e",
	}
	load := func(redisURL string) error {
		_, err := config.Load(func(k string) string {
			if k == "REDIS_URL" {
				return redisURL
			}
			return base[k]
		}, app.ConfigChecks()...)
		return err
	}
	for _, tc := range []struct{ url, want string }{
		{"http://:" + pw + "@h:6379", "scheme"},
		{"redis-sentinel://h1:26379,h2:26379", "master"},
		{"redis-cluster://:" + pw + "@h1:7000?read_only=true", "replicas"},
	} {
		err := load(tc.url)
		var ce *config.Error
		if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Var != "REDIS_URL" || !strings.Contains(ce.Problems[0].Msg, tc.want) {
			t.Errorf("REDIS_URL %s: %v, want one REDIS_URL problem containing %q", strings.ReplaceAll(tc.url, pw, "***"), err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), pw) || strings.HasPrefix(ce.Problems[0].Msg, "REDIS_URL") {
			t.Errorf("problem repeats the password or the variable: %q", strings.ReplaceAll(ce.Problems[0].Msg, pw, "***"))
		}
	}
	for _, ok := range []string{"", "redis://:" + pw + "@127.0.0.1:6379/0", "redis-sentinel://s1:26379?master_name=m"} {
		if err := load(ok); err != nil {
			t.Errorf("REDIS_URL accepted before: %v", err)
		}
	}
}
