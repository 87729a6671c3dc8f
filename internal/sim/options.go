package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Rate is a request quota: at most N requests per window Per, counted per caller.
// The zero Rate means "use the upstream default"; N < 0 (see NoLimit), or N == 0 with a
// non-zero Per, means no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// NoLimit returns a Rate that disables a limit, since the zero Rate selects the default.
func NoLimit() Rate { return Rate{N: -1} }

// limited reports whether the rate actually restricts anything.
func (r Rate) limited() bool { return r.N > 0 && r.Per > 0 }

// String renders the rate as "N/duration", or "0" when it does not limit.
func (r Rate) String() string {
	if !r.limited() {
		return "0"
	}
	return strconv.Itoa(r.N) + "/" + FormatDuration(r.Per)
}

// ParseRate reads a rate written as "N/duration" ("5/15m", "30/1m", "1000/15m", "10/1d").
// "0", "off" and "none" give NoLimit.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "0", "off", "none":
		return NoLimit(), nil
	}
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/duration such as 30/1m", s)
	}
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count < 0 {
		return Rate{}, fmt.Errorf("rate %q: count must be a whole number >= 0", s)
	}
	d, err := ParseDuration(strings.TrimSpace(per))
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("rate %q: window must be a positive duration", s)
	}
	if count == 0 {
		return NoLimit(), nil
	}
	return Rate{N: count, Per: d}, nil
}

// ParseDuration is time.ParseDuration that also accepts whole days ("7d"), the unit the
// upstream uses in expiresIn.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("duration %q: bad day count", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// FormatDuration renders d the way the upstream writes expiresIn: the largest whole unit
// among days (beyond one day), hours, minutes, seconds and milliseconds ("7d", "24h", "15m", "2s").
func FormatDuration(d time.Duration) string {
	units := []struct {
		size   time.Duration
		suffix string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}}
	if d > 24*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	for _, u := range units {
		if d%u.size == 0 {
			return strconv.FormatInt(int64(d/u.size), 10) + u.suffix
		}
	}
	return d.String()
}

// Options configure a simulator. Identifier, Password and APIKey are required; everything else
// has a default. Zero counts take their defaults; a negative count means none.
type Options struct {
	// Identifier, Password and APIKey are the credentials the simulator accepts.
	Identifier, Password, APIKey string
	// JWTSecret signs access and refresh tokens (HS256); random when nil.
	JWTSecret []byte
	// TokenLifetime is the access token lifetime (default 24h), as in the JWT exp and expiresIn.
	TokenLifetime time.Duration
	// RefreshLifetime is the refresh token lifetime (default 7 days).
	RefreshLifetime time.Duration
	// RotateRefreshTokens makes a refresh answer a new refresh token and invalidate the old one.
	RotateRefreshTokens bool
	// OmitRefreshFields makes a refresh answer only accessToken (no refreshToken, no expiresIn).
	OmitRefreshFields bool
	// Seed makes the generated data deterministic: the same seed gives the same data.
	Seed int64
	// Sessions is how many sessions exist at start (default 3).
	Sessions int
	// Contacts, Chats and MessagesPerChat size the data of each connected session
	// (defaults 120, 40, 25). Chats cannot outnumber contacts.
	Contacts, Chats, MessagesPerChat int
	// RateAuth, RateRead, RateSend and RateGlobal are the quotas per caller
	// (defaults 5/15m, 30/1m, 10/1m, 1000/15m).
	RateAuth, RateRead, RateSend, RateGlobal Rate
	// WebhookURL receives webhooks of sessions that have no URL of their own; empty means none.
	WebhookURL string
	// WebhookSecret signs those webhooks (X-Webhook-Signature); empty means unsigned.
	WebhookSecret string
	// LegacyWebhooks sends the older payload shape and event names (message, session_status).
	LegacyWebhooks bool
	// AdminKey, when set, must be sent as X-Sim-Admin-Key on every /_sim route.
	AdminKey string
	// QRDelay is how long a connecting session takes to produce its QR (default 1s).
	QRDelay time.Duration
	// QRLifetime is how long a QR stays valid before it is regenerated (default 60s).
	QRLifetime time.Duration
	// Clock is the time source (default time.Now).
	Clock func() time.Time
	// Logger receives the simulator's own logs (default: discarded).
	Logger *slog.Logger
}

// Defaults of Options, written out once so the documentation and the code agree.
const (
	defaultTokenLifetime   = 24 * time.Hour
	defaultRefreshLifetime = 7 * 24 * time.Hour
	defaultSessions        = 3
	defaultContacts        = 120
	defaultChats           = 40
	defaultMessagesPerChat = 25
	defaultQRDelay         = time.Second
	defaultQRLifetime      = 60 * time.Second
)

// withDefaults validates o and fills in every default.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	for name, v := range map[string]string{"Identifier": o.Identifier, "Password": o.Password, "APIKey": o.APIKey} {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("sim: Options.%s is required", name))
		}
	}
	for name, d := range map[string]time.Duration{"TokenLifetime": o.TokenLifetime, "RefreshLifetime": o.RefreshLifetime,
		"QRDelay": o.QRDelay, "QRLifetime": o.QRLifetime} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("sim: Options.%s must not be negative", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return o, err
	}
	o.TokenLifetime = orDuration(o.TokenLifetime, defaultTokenLifetime)
	o.RefreshLifetime = orDuration(o.RefreshLifetime, defaultRefreshLifetime)
	o.QRDelay = orDuration(o.QRDelay, defaultQRDelay)
	o.QRLifetime = orDuration(o.QRLifetime, defaultQRLifetime)
	o.Sessions = orCount(o.Sessions, defaultSessions)
	o.Contacts = orCount(o.Contacts, defaultContacts)
	o.Chats = min(orCount(o.Chats, defaultChats), o.Contacts)
	o.MessagesPerChat = orCount(o.MessagesPerChat, defaultMessagesPerChat)
	o.RateAuth = orRate(o.RateAuth, Rate{5, 15 * time.Minute})
	o.RateRead = orRate(o.RateRead, Rate{30, time.Minute})
	o.RateSend = orRate(o.RateSend, Rate{10, time.Minute})
	o.RateGlobal = orRate(o.RateGlobal, Rate{1000, 15 * time.Minute})
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// orCount maps 0 to the default and a negative count to none.
func orCount(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

func orRate(r, def Rate) Rate {
	if r == (Rate{}) {
		return def
	}
	return r
}
