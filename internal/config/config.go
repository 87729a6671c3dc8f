// Package config reads the gateway's configuration from the environment, once, at startup.
//
// Every setting is a named environment variable (the README's table); secrets may instead be given
// as a file through the same name with a _FILE suffix, for Docker and Kubernetes secrets. Load
// collects every problem it finds and reports them together, naming each variable and never
// repeating a secret's value.
//
// It owns the names, defaults and validation of every setting and the typed Config the rest of the
// program receives. It must not read the environment after Load, print a Secret's value, or start
// anything; no other package reads the environment (cmd/gateway passes os.Getenv to Load). It
// imports no package of the gateway, so that any package may import it: its types are plain values
// (Rate, Secret) that the wiring converts, and a rule that belongs to another package (the syntax
// of REDIS_URL) comes in as a Check given to Load.
package config

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scopes a caller may hold; each route of the API needs one (see docs/swagger.yaml).
// claimName is what GATEWAY_JWT_CALLER_CLAIM may be.
var claimName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

var Scopes = []string{"sessions:read", "sessions:write", "messages:read", "messages:send", "sync", "admin"}

// Config is the gateway's whole configuration, typed and validated.
type Config struct {
	Addr            string        // GATEWAY_ADDR
	Demo            bool          // GATEWAY_DEMO
	LogLevel        slog.Level    // GATEWAY_LOG_LEVEL
	ShutdownTimeout time.Duration // GATEWAY_SHUTDOWN_TIMEOUT
	TrustedProxies  []string      // GATEWAY_TRUSTED_PROXIES
	MaxBodyBytes    int64         // GATEWAY_MAX_BODY_BYTES

	Upstream Upstream
	RedisURL Secret // REDIS_URL: may carry a password

	APIKeys        []APIKey // GATEWAY_API_KEYS_FILE
	APIKeysFile    string
	JWT            JWT
	CORSOrigins    []string // GATEWAY_CORS_ORIGINS
	CallerRate     Rate     // GATEWAY_CALLER_RATE
	TokenRefreshAt float64  // TOKEN_REFRESH_AT

	TokenEncryption TokenEncryption

	Sync SyncConfig

	Webhooks WebhookConfig

	WebhookSpool WebhookSpoolConfig

	PublicURL        string // GATEWAY_PUBLIC_URL: the gateway's externally reachable base URL
	WebhookSecret    Secret // INBOXHUB_WEBHOOK_SECRET
	CRMSinkURL       Secret // CRM_SINK_URL: a URL may carry a token in its query
	CRMEventsURL     Secret // CRM_EVENTS_URL
	CRMSigningSecret Secret // CRM_SIGNING_SECRET

	// Operations: where operators look, how a replica leaves, how strangers are slowed down.
	AdminAddr       string        // GATEWAY_ADMIN_ADDR: listener of /metrics and the detailed readiness; "" = none
	DrainDelay      time.Duration // GATEWAY_DRAIN_DELAY: how long a stopping replica keeps serving while reported not ready
	AuthFailureRate Rate          // GATEWAY_AUTH_FAILURE_RATE: failed authentications per client address
}

// AdminAddrOff is the value of GATEWAY_ADMIN_ADDR that turns the admin listener off (Getenv reads
// the variable set to the empty string as it too).
const AdminAddrOff = "off"

// SyncConfig tunes "sync now" (docs/design.md, "Sync now").
type SyncConfig struct {
	Workers   int           // GATEWAY_SYNC_WORKERS: jobs this replica runs at once; 0 = API-only replica
	ItemTTL   time.Duration // GATEWAY_SYNC_ITEM_TTL: how long a job's new and changed items are kept
	SinkBatch int           // GATEWAY_SYNC_SINK_BATCH: items per batch pushed to CRM_SINK_URL
	OnConnect bool          // GATEWAY_SYNC_ON_CONNECT: queue a sync when a session becomes connected
}

// WebhookSpoolConfig is the local spool that keeps webhook deliveries while Redis is unreachable.
type WebhookSpoolConfig struct {
	Dir      string // GATEWAY_WEBHOOK_SPOOL_DIR: a directory of this replica's, created private
	MaxBytes int64  // GATEWAY_WEBHOOK_SPOOL_MAX_BYTES: the most it holds; 0 = no spool
}

// WebhookConfig tunes webhooks in and events out (docs/design.md, "Webhooks and events").
type WebhookConfig struct {
	Workers         int           // GATEWAY_WEBHOOK_WORKERS: event tasks this replica runs at once; 0 = it neither processes, forwards nor polls
	DedupeTTL       time.Duration // GATEWAY_WEBHOOK_DEDUPE_TTL: how long a received event is remembered against repeats
	EventAttempts   int           // GATEWAY_EVENTS_MAX_ATTEMPTS: tries of an event before it becomes a dead letter
	EventBackoff    time.Duration // GATEWAY_EVENTS_BACKOFF: first wait between tries (doubling, with jitter)
	EventMaxBackoff time.Duration // GATEWAY_EVENTS_MAX_BACKOFF: longest wait between tries
	PollInterval    time.Duration // GATEWAY_STATUS_POLL_INTERVAL: how often the leader replica polls session status
}

// Upstream is where Inbox Hub is and how the gateway may talk to it.
type Upstream struct {
	BaseURL    string        // INBOXHUB_BASE_URL, without a trailing /api
	Identifier Secret        // INBOXHUB_IDENTIFIER
	Password   Secret        // INBOXHUB_PASSWORD
	APIKey     Secret        // INBOXHUB_API_KEY
	Timeout    time.Duration // UPSTREAM_TIMEOUT, per attempt
	RateAuth   Rate          // UPSTREAM_RATE_AUTH
	RateRead   Rate          // UPSTREAM_RATE_READ
	RateSend   Rate          // UPSTREAM_RATE_SEND
	Reserve    float64       // UPSTREAM_RATE_RESERVE: share of each quota kept for interactive calls
	// QuotaFallback (UPSTREAM_QUOTA_FALLBACK) is the share of each quota one replica may use on its
	// own while Redis is unreachable; 0 refuses upstream calls instead.
	QuotaFallback float64
}

// JWT says how callers' bearer tokens are verified. At most one of HS256Secret and RS256PublicKey
// is set; neither means JWT callers are not accepted.
type JWT struct {
	HS256Secret    Secret // GATEWAY_JWT_HS256_SECRET
	RS256PublicKey []byte // PEM read from GATEWAY_JWT_RS256_PUBLIC_KEY_FILE
	Issuer         string // GATEWAY_JWT_ISSUER
	Audience       string // GATEWAY_JWT_AUDIENCE
	// CallerClaim names the claim (such as the CRM site) whose value labels a JWT caller in
	// metrics and the access log (GATEWAY_JWT_CALLER_CLAIM); empty: every JWT caller is "jwt".
	// Never the subject: it names a person.
	CallerClaim string
}

// TokenEncryption holds the AES-256 keys for upstream tokens at rest in Redis. CurrentID is empty
// when no key is configured (tokens are then stored in plaintext, which startup warns about).
type TokenEncryption struct {
	CurrentID string
	Keys      map[string][]byte
}

func (te TokenEncryption) String() string {
	if te.CurrentID == "" {
		return "none"
	}
	return fmt.Sprintf("current=%s (%d keys)", te.CurrentID, len(te.Keys))
}

// GoString masks the keys in %#v.
func (te TokenEncryption) GoString() string { return strconv.Quote(te.String()) }

// MarshalJSON masks the keys in JSON.
func (te TokenEncryption) MarshalJSON() ([]byte, error) { return json.Marshal(te.String()) }

// APIKey is one caller application's key, stored as the SHA-256 of the key.
type APIKey struct {
	Name   string
	SHA256 [32]byte
	Scopes []string
	// Plain is true when the file gave the key itself ("key"), which is for development only.
	Plain bool
}

// Secret is a configuration value that must never be printed: it formats and logs as "***" when
// set and "" when not. Reveal returns the value for the one place that needs it.
type Secret struct{ value string }

// NewSecret wraps a value as a Secret.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether the secret has a value.
func (s Secret) IsSet() bool { return s.value != "" }

func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return "***"
}

// GoString masks the value in %#v too.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue masks the value in slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON masks the value in JSON.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Problem is one invalid or missing setting.
type Problem struct {
	Var string
	Msg string
}

// Error lists every problem found in the configuration.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  - %s: %s", p.Var, p.Msg)
	}
	return b.String()
}

// Check is a rule about one variable that belongs to a package config does not import (config
// imports nothing of the gateway, so that every package may import it): REDIS_URL, for example,
// must be a URL the Redis client can open. Load applies it to the variable's value whenever the
// variable is set, and reports its error as a problem of Var among the others. The error must not
// repeat the value, which may be a secret.
type Check struct {
	Var   string
	Valid func(value string) error
}

// Load reads the configuration through getenv (os.Getenv in production) and validates it, with
// checks for the rules of other packages. The returned error, if any, is an *Error naming every
// bad variable.
func Load(getenv func(string) string, checks ...Check) (Config, error) {
	r := reader{getenv: getenv, checks: checks}
	var c Config
	r.server(&c)
	r.upstream(&c)
	r.redis(&c)
	r.callers(&c)
	r.sync(&c)
	r.webhooks(&c)
	r.crm(&c)
	r.operations(&c)
	if len(r.problems) > 0 {
		return Config{}, &Error{Problems: r.problems}
	}
	return c, nil
}

// server reads the public listener and the HTTP limits.
func (r *reader) server(c *Config) {
	c.Addr = r.str("GATEWAY_ADDR", ":8080")
	if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
		r.bad("GATEWAY_ADDR", fmt.Sprintf("%q is not a listen address such as :8080 or 127.0.0.1:8080", c.Addr))
	}
	c.Demo = r.boolean("GATEWAY_DEMO", false)
	c.LogLevel = r.level("GATEWAY_LOG_LEVEL")
	c.ShutdownTimeout = r.duration("GATEWAY_SHUTDOWN_TIMEOUT", 15*time.Second)
	c.TrustedProxies = r.list("GATEWAY_TRUSTED_PROXIES")
	for _, p := range c.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				r.bad("GATEWAY_TRUSTED_PROXIES", fmt.Sprintf("%q is neither an IP address nor a CIDR range", p))
			}
		}
	}
	c.MaxBodyBytes = int64(r.integer("GATEWAY_MAX_BODY_BYTES", 1<<20, 1024, 64<<20))
}

// upstream reads where Inbox Hub is, the gateway's credentials there and its limits. The
// credentials are required unless the demo supplies its own simulator (so server runs first).
func (r *reader) upstream(c *Config) {
	required := !c.Demo
	c.Upstream.BaseURL = strings.TrimRight(r.str("INBOXHUB_BASE_URL", ""), "/")
	switch {
	case c.Upstream.BaseURL == "" && required:
		r.bad("INBOXHUB_BASE_URL", "missing (the upstream base URL, e.g. https://api.inbox-hub.com)")
	case c.Upstream.BaseURL != "":
		if msg := checkHTTPURL(c.Upstream.BaseURL); msg != "" {
			r.bad("INBOXHUB_BASE_URL", msg)
		} else if strings.HasSuffix(c.Upstream.BaseURL, "/api") {
			r.bad("INBOXHUB_BASE_URL", "must not end in /api: the gateway adds it")
		}
	}
	c.Upstream.Identifier = r.secret("INBOXHUB_IDENTIFIER", required)
	c.Upstream.Password = r.secret("INBOXHUB_PASSWORD", required)
	c.Upstream.APIKey = r.secret("INBOXHUB_API_KEY", required)
	c.Upstream.Timeout = r.duration("UPSTREAM_TIMEOUT", 10*time.Second)
	c.Upstream.RateAuth = r.rate("UPSTREAM_RATE_AUTH", "5/15m")
	c.Upstream.RateRead = r.rate("UPSTREAM_RATE_READ", "30/1m")
	c.Upstream.RateSend = r.rate("UPSTREAM_RATE_SEND", "10/1m")
	c.Upstream.Reserve = r.fraction("UPSTREAM_RATE_RESERVE", 0.2, 0, 0.9)
	c.Upstream.QuotaFallback = r.fraction("UPSTREAM_QUOTA_FALLBACK", 0.25, 0, 1)
}

// redis reads REDIS_URL; its syntax is checked by the Check the caller passes (unset: embedded).
func (r *reader) redis(c *Config) {
	c.RedisURL = r.secret("REDIS_URL", false)
}

// callers reads how callers are authenticated and limited, and how upstream tokens are kept.
func (r *reader) callers(c *Config) {
	c.APIKeysFile = r.str("GATEWAY_API_KEYS_FILE", "")
	if c.APIKeysFile != "" {
		c.APIKeys = r.apiKeys("GATEWAY_API_KEYS_FILE", c.APIKeysFile)
	}
	c.JWT = r.jwt()
	c.CORSOrigins = r.list("GATEWAY_CORS_ORIGINS")
	for _, o := range c.CORSOrigins {
		if msg := checkOrigin(o); msg != "" {
			r.bad("GATEWAY_CORS_ORIGINS", msg)
		}
	}
	c.CallerRate = r.rate("GATEWAY_CALLER_RATE", "600/1m")
	c.TokenRefreshAt = r.fraction("TOKEN_REFRESH_AT", 0.8, 0.1, 0.95)
	c.TokenEncryption = r.encryption()
}

// jwt reads how callers' bearer tokens are verified: one algorithm at most.
func (r *reader) jwt() JWT {
	var j JWT
	j.HS256Secret = r.secret("GATEWAY_JWT_HS256_SECRET", false)
	if j.HS256Secret.IsSet() && len(j.HS256Secret.Reveal()) < 32 {
		r.bad("GATEWAY_JWT_HS256_SECRET", "too short: use at least 32 bytes")
	}
	if path := r.str("GATEWAY_JWT_RS256_PUBLIC_KEY_FILE", ""); path != "" {
		pem, err := os.ReadFile(path)
		switch {
		case err != nil:
			r.bad("GATEWAY_JWT_RS256_PUBLIC_KEY_FILE", "cannot read "+path+": "+pathError(err))
		case !strings.Contains(string(pem), "PUBLIC KEY-----"):
			r.bad("GATEWAY_JWT_RS256_PUBLIC_KEY_FILE", path+" does not hold a PEM public key")
		default:
			j.RS256PublicKey = pem
		}
	}
	if j.HS256Secret.IsSet() && j.RS256PublicKey != nil {
		r.bad("GATEWAY_JWT_HS256_SECRET", "set together with GATEWAY_JWT_RS256_PUBLIC_KEY_FILE: choose one algorithm")
	}
	j.Issuer = r.str("GATEWAY_JWT_ISSUER", "")
	j.Audience = r.str("GATEWAY_JWT_AUDIENCE", "")
	j.CallerClaim = r.str("GATEWAY_JWT_CALLER_CLAIM", "")
	switch {
	case j.CallerClaim == "":
	case !claimName.MatchString(j.CallerClaim):
		r.bad("GATEWAY_JWT_CALLER_CLAIM", "must be a claim name: 1 to 64 characters of A-Z, a-z, 0-9, _, - and .")
	case j.CallerClaim == "sub" || j.CallerClaim == "email":
		r.bad("GATEWAY_JWT_CALLER_CLAIM", "must not name a person (sub, email): metrics labels must stay bounded and impersonal")
	}
	return j
}

// sync reads the tuning of "sync now".
func (r *reader) sync(c *Config) {
	c.Sync.Workers = r.integer("GATEWAY_SYNC_WORKERS", 2, 0, 64)
	c.Sync.ItemTTL = r.duration("GATEWAY_SYNC_ITEM_TTL", 24*time.Hour)
	c.Sync.SinkBatch = r.integer("GATEWAY_SYNC_SINK_BATCH", 500, 1, 5000)
	c.Sync.OnConnect = r.boolean("GATEWAY_SYNC_ON_CONNECT", true)
}

// webhooks reads the tuning of webhooks in and events out, and the local spool.
func (r *reader) webhooks(c *Config) {
	c.Webhooks.Workers = r.integer("GATEWAY_WEBHOOK_WORKERS", 8, 0, 256)
	c.Webhooks.DedupeTTL = r.duration("GATEWAY_WEBHOOK_DEDUPE_TTL", 24*time.Hour)
	c.Webhooks.EventAttempts = r.integer("GATEWAY_EVENTS_MAX_ATTEMPTS", 8, 1, 100)
	c.Webhooks.EventBackoff = r.duration("GATEWAY_EVENTS_BACKOFF", time.Second)
	c.Webhooks.EventMaxBackoff = r.duration("GATEWAY_EVENTS_MAX_BACKOFF", time.Minute)
	c.Webhooks.PollInterval = r.duration("GATEWAY_STATUS_POLL_INTERVAL", 30*time.Second)
	c.WebhookSpool = r.webhookSpool()
}

// crm reads the gateway's public URL, the webhook secret and where (and how signed) the CRM
// receives sync items and events.
func (r *reader) crm(c *Config) {
	c.PublicURL = strings.TrimRight(r.str("GATEWAY_PUBLIC_URL", ""), "/")
	if c.PublicURL != "" {
		if msg := checkHTTPURL(c.PublicURL); msg != "" {
			r.bad("GATEWAY_PUBLIC_URL", msg)
		}
	}
	c.WebhookSecret = r.secret("INBOXHUB_WEBHOOK_SECRET", false)
	c.CRMSinkURL = r.optionalURL("CRM_SINK_URL")
	c.CRMEventsURL = r.optionalURL("CRM_EVENTS_URL")
	c.CRMSigningSecret = r.secret("CRM_SIGNING_SECRET", false)
	if (c.CRMSinkURL.IsSet() || c.CRMEventsURL.IsSet()) && !c.CRMSigningSecret.IsSet() {
		r.bad("CRM_SIGNING_SECRET", "missing: required when CRM_SINK_URL or CRM_EVENTS_URL is set")
	}
}

// operations reads the admin listener, the drain delay and the failed-authentication throttle
// (after server: the admin address must differ from GATEWAY_ADDR).
func (r *reader) operations(c *Config) {
	c.AdminAddr = r.str("GATEWAY_ADMIN_ADDR", "127.0.0.1:9090")
	switch _, port, err := net.SplitHostPort(c.AdminAddr); {
	case c.AdminAddr == AdminAddrOff:
		c.AdminAddr = ""
	case err != nil || port == "":
		r.bad("GATEWAY_ADMIN_ADDR", fmt.Sprintf("%q is not a listen address such as 127.0.0.1:9090 (or off)", c.AdminAddr))
	case c.AdminAddr == c.Addr && port != "0":
		r.bad("GATEWAY_ADMIN_ADDR", "the same address as GATEWAY_ADDR: the admin listener must be a separate one")
	}
	c.DrainDelay = r.nonNegativeDuration("GATEWAY_DRAIN_DELAY", 5*time.Second)
	c.AuthFailureRate = r.rate("GATEWAY_AUTH_FAILURE_RATE", "30/1m")
}

// Getenv is os.Getenv for Load, except that GATEWAY_ADMIN_ADDR set to the empty string reads as
// AdminAddrOff: for it, "set and empty" (no admin listener) differs from "unset" (the default).
func Getenv(name string) string {
	v, set := os.LookupEnv(name)
	if name == "GATEWAY_ADMIN_ADDR" && set && strings.TrimSpace(v) == "" {
		return AdminAddrOff
	}
	return v
}

// LogValue is the effective configuration with every secret masked, for the startup log line.
func (c Config) LogValue() slog.Value {
	keyNames := make([]string, 0, len(c.APIKeys))
	for _, k := range c.APIKeys {
		keyNames = append(keyNames, k.Name)
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.Bool("demo", c.Demo),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("upstream_base_url", c.Upstream.BaseURL),
		slog.String("upstream_identifier", c.Upstream.Identifier.String()),
		slog.String("upstream_password", c.Upstream.Password.String()),
		slog.String("upstream_api_key", c.Upstream.APIKey.String()),
		slog.String("upstream_timeout", c.Upstream.Timeout.String()),
		slog.String("upstream_rate_auth", c.Upstream.RateAuth.String()),
		slog.String("upstream_rate_read", c.Upstream.RateRead.String()),
		slog.String("upstream_rate_send", c.Upstream.RateSend.String()),
		slog.Float64("upstream_rate_reserve", c.Upstream.Reserve),
		slog.Float64("upstream_quota_fallback", c.Upstream.QuotaFallback),
		slog.String("redis", redisLogValue(c.RedisURL)),
		slog.Any("api_keys", keyNames),
		slog.Bool("jwt_hs256", c.JWT.HS256Secret.IsSet()),
		slog.Bool("jwt_rs256", c.JWT.RS256PublicKey != nil),
		slog.String("jwt_issuer", c.JWT.Issuer),
		slog.String("jwt_audience", c.JWT.Audience),
		slog.Any("cors_origins", c.CORSOrigins),
		slog.String("caller_rate", c.CallerRate.String()),
		slog.Float64("token_refresh_at", c.TokenRefreshAt),
		slog.String("token_encryption_key_id", c.TokenEncryption.CurrentID),
		slog.Int("sync_workers", c.Sync.Workers),
		slog.String("sync_item_ttl", c.Sync.ItemTTL.String()),
		slog.Int("sync_sink_batch", c.Sync.SinkBatch),
		slog.Bool("sync_on_connect", c.Sync.OnConnect),
		slog.Int("webhook_workers", c.Webhooks.Workers),
		slog.String("webhook_dedupe_ttl", c.Webhooks.DedupeTTL.String()),
		slog.Int("events_max_attempts", c.Webhooks.EventAttempts),
		slog.String("events_backoff", c.Webhooks.EventBackoff.String()),
		slog.String("events_max_backoff", c.Webhooks.EventMaxBackoff.String()),
		slog.String("status_poll_interval", c.Webhooks.PollInterval.String()),
		slog.String("webhook_spool_dir", c.WebhookSpool.Dir),
		slog.Int64("webhook_spool_max_bytes", c.WebhookSpool.MaxBytes),
		slog.String("public_url", c.PublicURL),
		slog.String("webhook_secret", c.WebhookSecret.String()),
		slog.String("crm_sink_url", redactURL(c.CRMSinkURL.Reveal())),
		slog.String("crm_events_url", redactURL(c.CRMEventsURL.Reveal())),
		slog.String("crm_signing_secret", c.CRMSigningSecret.String()),
		slog.String("admin_addr", c.AdminAddr),
		slog.String("drain_delay", c.DrainDelay.String()),
		slog.String("auth_failure_rate", c.AuthFailureRate.String()),
	)
}

func redisLogValue(s Secret) string {
	if !s.IsSet() {
		return "embedded"
	}
	return redactURL(s.Reveal())
}

// redactURL drops the user information (which may hold a password) from a URL.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	if u.User != nil {
		u.User = url.User("***")
	}
	u.RawQuery = ""
	return u.String()
}

// DefaultWebhookSpoolDir is where webhook deliveries wait while Redis is unreachable, unless
// GATEWAY_WEBHOOK_SPOOL_DIR says otherwise: under $XDG_STATE_HOME, else $HOME/.local/state, else
// the system's temporary directory.
func DefaultWebhookSpoolDir(getenv func(string) string) string {
	base := getenv("XDG_STATE_HOME")
	if base == "" {
		if home := getenv("HOME"); home != "" {
			base = filepath.Join(home, ".local", "state")
		}
	}
	if base == "" {
		return filepath.Join(os.TempDir(), "inboxhub-gateway-webhook-spool")
	}
	return filepath.Join(base, "inboxhub-gateway", "webhook-spool")
}

// webhookSpool reads GATEWAY_WEBHOOK_SPOOL_DIR and GATEWAY_WEBHOOK_SPOOL_MAX_BYTES.
func (r *reader) webhookSpool() WebhookSpoolConfig {
	c := WebhookSpoolConfig{
		Dir:      r.str("GATEWAY_WEBHOOK_SPOOL_DIR", DefaultWebhookSpoolDir(r.getenv)),
		MaxBytes: int64(r.integer("GATEWAY_WEBHOOK_SPOOL_MAX_BYTES", 64<<20, 0, 1<<40)),
	}
	if !filepath.IsAbs(c.Dir) {
		r.bad("GATEWAY_WEBHOOK_SPOOL_DIR", fmt.Sprintf("%q is not an absolute path", c.Dir))
	}
	return c
}

// reader collects problems while reading variables.
type reader struct {
	getenv   func(string) string
	checks   []Check
	problems []Problem
}

func (r *reader) bad(name, msg string) {
	r.problems = append(r.problems, Problem{Var: name, Msg: msg})
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		r.check(name, v)
		return v
	}
	return def
}

// check applies the callers' checks of the variable name to its value, which is set.
func (r *reader) check(name, value string) {
	for _, c := range r.checks {
		if c.Var != name {
			continue
		}
		if err := c.Valid(value); err != nil {
			r.bad(name, err.Error())
		}
	}
}

// secret reads NAME or the file named by NAME_FILE (one trailing newline is dropped). Setting both
// is an error, since it is unclear which one wins.
func (r *reader) secret(name string, required bool) Secret {
	v := r.getenv(name)
	path := strings.TrimSpace(r.getenv(name + "_FILE"))
	switch {
	case v != "" && path != "":
		r.bad(name, "set both directly and through "+name+"_FILE: set only one")
		return Secret{}
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			r.bad(name+"_FILE", "cannot read "+path+": "+pathError(err))
			return Secret{}
		}
		v = strings.TrimRight(string(b), "\r\n")
		if v == "" {
			r.bad(name+"_FILE", path+" is empty")
			return Secret{}
		}
	}
	switch {
	case v == "" && required:
		r.bad(name, "missing (set "+name+" or "+name+"_FILE)")
	case v != "":
		r.check(name, v)
	}
	return Secret{value: v}
}

func (r *reader) boolean(name string, def bool) bool {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.bad(name, fmt.Sprintf("%q is not a boolean (use 1/0 or true/false)", v))
		return def
	}
	return b
}

func (r *reader) integer(name string, def, lo, hi int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.bad(name, fmt.Sprintf("%q is not an integer between %d and %d", v, lo, hi))
		return def
	}
	return n
}

func (r *reader) fraction(name string, def, lo, hi float64) float64 {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < lo || f > hi {
		r.bad(name, fmt.Sprintf("%q is not a number between %g and %g", v, lo, hi))
		return def
	}
	return f
}

// nonNegativeDuration reads a duration that may be zero ("0s": none).
func (r *reader) nonNegativeDuration(name string, def time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.bad(name, fmt.Sprintf("%q is not a duration such as 5s, or 0s for none", v))
		return def
	}
	return d
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.bad(name, fmt.Sprintf("%q is not a positive duration such as 10s or 1m", v))
		return def
	}
	return d
}

func (r *reader) level(name string) slog.Level {
	v := r.str(name, "info")
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.bad(name, fmt.Sprintf("%q is not one of debug, info, warn, error", v))
		return slog.LevelInfo
	}
	return l
}

func (r *reader) list(name string) []string {
	var out []string
	for _, part := range strings.Split(r.getenv(name), ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (r *reader) rate(name, def string) Rate {
	v := r.str(name, def)
	rate, err := ParseRate(v)
	if err != nil {
		r.bad(name, err.Error())
		rate, _ = ParseRate(def)
	}
	return rate
}

func (r *reader) optionalURL(name string) Secret {
	v := r.str(name, "")
	if v == "" {
		return Secret{}
	}
	if msg := checkHTTPURL(v); msg != "" {
		r.bad(name, msg)
	}
	return Secret{value: v}
}

// encryption reads TOKEN_ENCRYPTION_KEY (current key, id from TOKEN_ENCRYPTION_KEY_ID) and
// TOKEN_ENCRYPTION_OLD_KEYS ("id:base64,id:base64", keys that can still decrypt during a rotation).
func (r *reader) encryption() TokenEncryption {
	te := TokenEncryption{Keys: map[string][]byte{}}
	cur := r.secret("TOKEN_ENCRYPTION_KEY", false)
	id := r.str("TOKEN_ENCRYPTION_KEY_ID", "k1")
	if !validKeyID(id) {
		r.bad("TOKEN_ENCRYPTION_KEY_ID", fmt.Sprintf("%q must be 1..32 characters of [A-Za-z0-9_-]", id))
	}
	if cur.IsSet() {
		key, ok := decodeKey(cur.Reveal())
		if !ok {
			r.bad("TOKEN_ENCRYPTION_KEY", "not the base64 of exactly 32 bytes (make one with: openssl rand -base64 32)")
		} else {
			te.CurrentID = id
			te.Keys[id] = key
		}
	}
	old := r.secret("TOKEN_ENCRYPTION_OLD_KEYS", false)
	for i, entry := range strings.Split(old.Reveal(), ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		oid, enc, found := strings.Cut(entry, ":")
		key, ok := decodeKey(enc)
		if !found || !validKeyID(oid) || !ok {
			r.bad("TOKEN_ENCRYPTION_OLD_KEYS", fmt.Sprintf("entry %d is not id:<base64 of 32 bytes>", i+1))
			continue
		}
		if _, dup := te.Keys[oid]; !dup {
			te.Keys[oid] = key
		}
	}
	if len(te.Keys) > 0 && te.CurrentID == "" {
		r.bad("TOKEN_ENCRYPTION_KEY", "missing while TOKEN_ENCRYPTION_OLD_KEYS is set: new tokens need a current key")
	}
	return te
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, ch := range id {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-') {
			return false
		}
	}
	return true
}

func decodeKey(s string) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		return nil, false
	}
	return b, true
}

type apiKeyEntry struct {
	Name   string   `json:"name"`
	SHA256 string   `json:"sha256"`
	Key    string   `json:"key"`
	Scopes []string `json:"scopes"`
}

// apiKeys reads the callers' key file. Problems name the entry by its position and name, never by
// its key.
func (r *reader) apiKeys(name, path string) []APIKey {
	entries, ok := r.apiKeyEntries(name, path)
	if !ok {
		return nil
	}
	var keys []APIKey
	seenName := map[string]bool{}
	seenHash := map[[32]byte]bool{}
	for i, e := range entries {
		where := fmt.Sprintf("%s entry %d", path, i+1)
		if e.Name != "" {
			where += fmt.Sprintf(" (%q)", e.Name)
		}
		var problems []string
		switch {
		case e.Name == "":
			problems = append(problems, "name is missing")
		case seenName[e.Name]:
			problems = append(problems, "name is used twice")
		}
		k, keyProblems := e.apiKey()
		problems = append(problems, keyProblems...)
		if len(problems) == 0 && seenHash[k.SHA256] {
			problems = append(problems, "the same key is listed twice")
		}
		for _, p := range problems {
			r.bad(name, where+": "+p)
		}
		if len(problems) == 0 {
			seenName[e.Name] = true
			seenHash[k.SHA256] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// apiKeyEntries reads the key file as a JSON list of entries; ok is false (the problem reported)
// when it cannot be read or is not such a list.
func (r *reader) apiKeyEntries(name, path string) (entries []apiKeyEntry, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		r.bad(name, "cannot read "+path+": "+pathError(err))
		return nil, false
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		r.bad(name, path+" is not a JSON list of {name, sha256|key, scopes}: "+jsonProblem(err))
		return nil, false
	}
	return entries, true
}

// apiKey is the key an entry gives (its secret's hash and its scopes), with what is wrong with its
// secret and scopes, never quoting the secret.
func (e apiKeyEntry) apiKey() (k APIKey, problems []string) {
	k = APIKey{Name: e.Name}
	switch {
	case e.SHA256 != "" && e.Key != "":
		problems = append(problems, "give sha256 or key, not both")
	case e.SHA256 != "":
		h, err := hex.DecodeString(e.SHA256)
		if err != nil || len(h) != 32 {
			problems = append(problems, "sha256 is not 64 hex digits")
		}
		copy(k.SHA256[:], h)
	case e.Key != "":
		if len(e.Key) < 16 {
			problems = append(problems, "key is shorter than 16 characters")
		}
		k.SHA256 = sha256.Sum256([]byte(e.Key))
		k.Plain = true
	default:
		problems = append(problems, "sha256 (or key, for development) is missing")
	}
	if len(e.Scopes) == 0 {
		problems = append(problems, "scopes is empty")
	}
	for _, s := range e.Scopes {
		if !slices.Contains(Scopes, s) {
			problems = append(problems, fmt.Sprintf("unknown scope %q (known: %s)", s, strings.Join(Scopes, ", ")))
		}
	}
	k.Scopes = slices.Clone(e.Scopes)
	return k, problems
}

func checkHTTPURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("%q is not an http(s) URL", redactURL(raw))
	}
	if u.User != nil {
		return "must not carry credentials in the URL"
	}
	return ""
}

func checkOrigin(o string) string {
	if o == "*" {
		return "\"*\" is not allowed: list the CRM's origins"
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Sprintf("%q is not an origin such as https://crm.example.com", o)
	}
	return ""
}

// pathError describes a file error without repeating the path (already in the message).
func pathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// jsonProblem describes a JSON error without quoting the document (which may hold keys).
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return "malformed JSON"
	}
}
