// Package auth says who is calling the gateway and whether they may: callers authenticate with an
// API key in X-API-Key (stored as SHA-256 hashes, each with a name and scopes) or with a JWT in
// Authorization: Bearer (HS256 or RS256, algorithm pinned); Require guards a route with a scope;
// CORS admits the configured origins only; CallerLimiter limits each caller's requests fleet-wide
// in Redis; FailureThrottle locks out client addresses that fail authentication too often.
//
// Decisions callers can rely on:
//   - Exactly one credential per request. A request with both X-API-Key and Authorization, or
//     with either header repeated, is refused with 401: guessing which one was meant would let a
//     stray header decide who the caller is.
//   - Scopes are exact: "admin" is a scope of its own (for administrative routes) and does not
//     imply any other. A caller that needs everything lists every scope.
//   - A JWT's scopes come from the "scope" claim, a space-separated string (RFC 8693) or a JSON
//     array of strings, and from "scp" in the same two forms (as some issuers write it); the
//     caller holds the union. Scopes the gateway does not know are ignored; a scope claim of any
//     other JSON type makes the token invalid.
//   - A JWT caller's name is "jwt:" followed by its "sub" claim, which is required; an API key
//     caller's name is the key's configured name.
//   - A JWT with a "session_id" claim (ClaimSession) is bound to that WhatsApp session: it reaches
//     only routes whose session (the :sessionId, or the passthrough path's session segment) is
//     that one, and the sync-job routes; elsewhere it is refused with 403. API keys are not bound.
//   - A JWT's claims must read one way only: a claim given twice (in any case) or a claim the
//     gateway reads spelled in another case ("eXp", "Sub") makes the token invalid, and so does a
//     date claim (exp, nbf, iat) before 1970 or beyond what int64 seconds hold.
//
// Credentials never reach a log line, an error, a metric or the context: the caller is known
// afterwards by name only.
//
// It must not call Inbox Hub or see its credentials: it decides who the caller is and what the
// caller may do, nothing about the upstream.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/jsonbody"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/promreg"
)

// Methods of authentication, as Caller.Method reports them.
const (
	MethodAPIKey = "api_key"
	MethodJWT    = "jwt"
)

// Headers that carry a credential.
const (
	HeaderAPIKey        = "X-API-Key"
	HeaderAuthorization = "Authorization"
)

// Limits on credentials, checked before any hashing or parsing.
const (
	// MaxAPIKeyBytes is the longest X-API-Key accepted.
	MaxAPIKeyBytes = 256
	// MaxTokenBytes is the longest bearer token accepted.
	MaxTokenBytes = 8 << 10
	// MaxSubjectBytes is the longest JWT subject accepted (it names the caller in logs and metrics).
	MaxSubjectBytes = 200
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat unless Options says otherwise.
	DefaultLeeway = 30 * time.Second
)

// realm names the gateway in WWW-Authenticate challenges.
const realm = "inboxhub-gateway"

// Caller is an authenticated client of the gateway.
type Caller struct {
	// Name identifies the caller in rate limits and idempotency: the API key's name, or "jwt:"
	// and the token's subject.
	Name string
	// Label names the caller in metrics and the access log, from a bounded set: the API key's
	// name; for a JWT the value of the configured caller claim (config.JWT.CallerClaim, such as
	// the CRM site) when it is a short plain name, else "jwt". Never the subject (a person).
	Label string
	// Scopes are what the caller may do (config.Scopes).
	Scopes []string
	// Method is how the caller authenticated: MethodAPIKey or MethodJWT.
	Method string
	// Session, when set (a JWT with the ClaimSession claim), is the one WhatsApp session the
	// caller may reach; empty means any.
	Session string `json:",omitempty"`

	// limitKey is the caller's key in the per-caller limit: method and name together, so that an
	// API key named like a JWT subject never shares its budget.
	limitKey string
	// boxedLabel is Label as the gin context holds it, boxed once for an API key's caller (made
	// once, at New), so that storing it costs a request no allocation; nil for a JWT's caller.
	boxedLabel any
}

// labelValue is Label for the gin context: the value boxed once when there is one.
func (c *Caller) labelValue() any {
	if c.boxedLabel != nil {
		return c.boxedLabel
	}
	return c.Label
}

func newCaller(name string, scopes []string, method, session string) Caller {
	return Caller{Name: name, Label: name, Scopes: scopes, Method: method, Session: session, limitKey: method + "/" + name}
}

// Has reports whether the caller holds scope. Scopes are exact: "admin" implies no other scope.
func (c Caller) Has(scope string) bool { return slices.Contains(c.Scopes, scope) }

// Options configure an Authenticator.
type Options struct {
	// APIKeys are the accepted API keys, by SHA-256.
	APIKeys []config.APIKey
	// JWT says how bearer tokens are verified; with neither an HS256 secret nor an RS256 key set,
	// bearer tokens are refused.
	JWT config.JWT
	// Clock is the time JWTs are checked against; nil means time.Now.
	Clock func() time.Time
	// Leeway is the clock skew allowed on exp, nbf and iat: zero means DefaultLeeway, a negative
	// value none.
	Leeway time.Duration
	// Registerer, when set, receives the metric auth_failures_total{reason}.
	Registerer prometheus.Registerer
	// Throttle, when set, counts failed authentications per client address and locks out an
	// address that fails too often, before its credential is checked (see FailureThrottle).
	Throttle *FailureThrottle
}

// Authenticator checks callers' credentials. It is safe for concurrent use.
type Authenticator struct {
	keys     []apiKey
	parser   *jwt.Parser // nil when bearer tokens are not accepted
	verifyBy any         // []byte for HS256, *rsa.PublicKey for RS256
	alg      jwt.SigningMethod
	issuer   string // required iss, if any
	audience string // required aud, if any
	failures *prometheus.CounterVec
	// callerClaim names the claim that labels JWT callers ("": all are "jwt").
	callerClaim string
	throttle    *FailureThrottle // nil: failures are not throttled
}

type apiKey struct {
	hash [32]byte
	// caller is made once: a request authenticated by the key gets a pointer to it (its Scopes
	// are shared and never modified), so that authentication allocates nothing.
	caller *Caller
}

// New returns an Authenticator for the given keys and JWT settings. It parses the RS256 public key
// once and fails on a key it cannot use, on both algorithms configured at once, and on an HS256
// secret shorter than 32 bytes.
func New(o Options) (*Authenticator, error) {
	a := &Authenticator{callerClaim: o.JWT.CallerClaim, throttle: o.Throttle}
	var err error
	if a.keys, err = apiKeys(o.APIKeys); err != nil {
		return nil, err
	}
	if a.alg, a.verifyBy, err = jwtKey(o.JWT); err != nil {
		return nil, err
	}
	if a.alg != nil {
		a.parser = jwtParser(a.alg, o)
		a.issuer, a.audience = o.JWT.Issuer, o.JWT.Audience
	}
	if o.Registerer != nil {
		if a.failures, err = failuresMetric(o.Registerer); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// apiKeys makes each key's caller once; every key must have a name.
func apiKeys(keys []config.APIKey) ([]apiKey, error) {
	var out []apiKey
	for _, k := range keys {
		if k.Name == "" {
			return nil, errors.New("auth: an API key has no name")
		}
		caller := newCaller(k.Name, slices.Clip(slices.Clone(k.Scopes)), MethodAPIKey, "")
		caller.boxedLabel = caller.Label
		out = append(out, apiKey{hash: k.SHA256, caller: &caller})
	}
	return out, nil
}

// jwtKey is the algorithm of bearer tokens and the key that verifies them: an HS256 secret of at
// least 32 bytes or an RS256 public key of at least 2048 bits, never both; nil for neither.
func jwtKey(j config.JWT) (alg jwt.SigningMethod, verifyBy any, err error) {
	hs, rs := j.HS256Secret.IsSet(), len(j.RS256PublicKey) > 0
	switch {
	case hs && rs:
		return nil, nil, errors.New("auth: both an HS256 secret and an RS256 public key are configured: choose one algorithm")
	case hs:
		if len(j.HS256Secret.Reveal()) < 32 {
			return nil, nil, errors.New("auth: the HS256 secret is shorter than 32 bytes")
		}
		return jwt.SigningMethodHS256, []byte(j.HS256Secret.Reveal()), nil
	case rs:
		pub, err := jwt.ParseRSAPublicKeyFromPEM(j.RS256PublicKey)
		if err != nil {
			return nil, nil, fmt.Errorf("auth: the RS256 public key is not a PEM RSA public key: %w", err)
		}
		if pub.N.BitLen() < 2048 {
			return nil, nil, fmt.Errorf("auth: the RS256 public key has %d bits, want at least 2048", pub.N.BitLen())
		}
		return jwt.SigningMethodRS256, pub, nil
	}
	return nil, nil, nil
}

// jwtParser checks a bearer token's algorithm, its required exp, its iat and nbf, and its iss
// and aud when configured, against o's clock with o's leeway; it decodes strictly.
func jwtParser(alg jwt.SigningMethod, o Options) *jwt.Parser {
	clock := o.Clock
	if clock == nil {
		clock = time.Now
	}
	leeway := o.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{alg.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(clock),
		jwt.WithStrictDecoding(),
	}
	if o.JWT.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(o.JWT.Issuer))
	}
	if o.JWT.Audience != "" {
		popts = append(popts, jwt.WithAudience(o.JWT.Audience))
	}
	return jwt.NewParser(popts...)
}

// failuresMetric registers auth_failures_total{reason}.
func failuresMetric(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	failures, err := promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "auth_failures_total",
		Help: "Requests refused with 401 because of their credentials, by reason.",
	}, []string{"reason"}))
	if err != nil {
		return nil, fmt.Errorf("auth: metrics: %w", err)
	}
	return failures, nil
}

// callerKey is the gin context key of the authenticated Caller.
type callerKey struct{}

// Middleware authenticates every request: it stores the Caller (CallerOf) and the caller's name
// under middleware.KeyCaller, or answers 401 UNAUTHENTICATED with a WWW-Authenticate challenge and
// a detail that says what to send, never repeating the credential. With a Throttle, a client
// address locked out for failing too often is answered 429 before its credential is read, and
// every refused credential counts against its address.
func (a *Authenticator) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		if a.throttle != nil && !a.throttle.admit(c) {
			return
		}
		caller, fail := a.authenticate(c.Request.Header)
		if fail != nil {
			// A request without any credential is no guess: it does not count.
			if a.throttle != nil && fail.reason != reasonMissing && !a.throttle.failed(c) {
				return
			}
			a.refuse(c, fail)
			return
		}
		c.Set(callerKey{}, caller)
		c.Set(middleware.KeyCaller, caller.labelValue())
		if !checkSession(c, *caller) {
			return
		}
		c.Next()
	}
}

// CallerOf returns the caller that Middleware authenticated. Its Scopes may be shared with other
// requests of the same caller: read them, never modify them.
func CallerOf(c *gin.Context) (Caller, bool) {
	v, ok := c.Get(callerKey{})
	if !ok {
		return Caller{}, false
	}
	caller, ok := v.(*Caller)
	if !ok {
		return Caller{}, false
	}
	return *caller, true
}

// errNoAuthentication is the cause logged when Require or CallerLimiter run on a route that the
// authentication middleware did not run on: a wiring mistake, answered 500 rather than let through.
var errNoAuthentication = errors.New("auth: no authenticated caller: the authentication middleware must run first")

// Require lets only callers holding scope through, and answers others 403 FORBIDDEN naming the
// missing scope. It must run after Middleware; without an authenticated caller it answers 500.
func Require(scope string) gin.HandlerFunc {
	return func(c *gin.Context) {
		caller, ok := CallerOf(c)
		if !ok {
			middleware.Fail(c, &problem.Error{Status: http.StatusInternalServerError, Code: problem.CodeInternal,
				Detail: "An internal error occurred. Quote the requestId when reporting it.", Cause: errNoAuthentication})
			return
		}
		if !caller.Has(scope) {
			middleware.Fail(c, problem.New(http.StatusForbidden, problem.CodeForbidden,
				fmt.Sprintf("This route needs the scope %q, which the caller %q does not hold.", scope, caller.Name)))
			return
		}
		c.Next()
	}
}

// reasonMissing is the failure of a request that presents no credential at all.
const reasonMissing = "missing"

// failure is why a request is refused: a metric reason and a detail for the caller.
type failure struct {
	reason string
	detail string
	bearer bool // a bearer token was presented (RFC 6750 error="invalid_token")
}

func (a *Authenticator) refuse(c *gin.Context, f *failure) {
	if a.failures != nil {
		a.failures.WithLabelValues(f.reason).Inc()
	}
	h := c.Writer.Header()
	h.Add("WWW-Authenticate", fmt.Sprintf("APIKey realm=%q, header=%q", realm, HeaderAPIKey))
	if a.parser != nil {
		challenge := fmt.Sprintf("Bearer realm=%q", realm)
		if f.bearer {
			challenge += `, error="invalid_token"`
		}
		h.Add("WWW-Authenticate", challenge)
	}
	middleware.Fail(c, problem.New(http.StatusUnauthorized, problem.CodeUnauthenticated, f.detail))
}

// canonicalAPIKey is HeaderAPIKey in the form net/http keys a request's header map by.
var canonicalAPIKey = http.CanonicalHeaderKey(HeaderAPIKey)

// authenticate finds the caller of a request from its headers.
func (a *Authenticator) authenticate(h http.Header) (*Caller, *failure) {
	// The canonical forms, read directly: Values would canonicalise X-API-Key (a new string)
	// on every request.
	keys, authz := h[canonicalAPIKey], h[HeaderAuthorization]
	switch {
	case len(keys) > 0 && len(authz) > 0:
		return nil, &failure{reason: "ambiguous", detail: "Send one credential: either the X-API-Key header or Authorization: Bearer, not both."}
	case len(keys) > 1:
		return nil, &failure{reason: "ambiguous", detail: "Send the X-API-Key header once."}
	case len(authz) > 1:
		return nil, &failure{reason: "ambiguous", detail: "Send the Authorization header once."}
	case len(keys) == 1:
		return a.byAPIKey(keys[0])
	case len(authz) == 1:
		return a.byAuthorization(authz[0])
	}
	detail := "Authentication required: send an API key in the X-API-Key header"
	if a.parser != nil {
		detail += " or a JWT in Authorization: Bearer <token>"
	}
	return nil, &failure{reason: reasonMissing, detail: detail + "."}
}

// byAPIKey looks the key up by its SHA-256. Every configured hash is compared in constant time and
// the loop never stops early, so the time taken says nothing about which key, if any, matched (a
// map lookup on the hash would be safe too, the keys being random, but the scan removes the
// question at the cost of a few microseconds for the handful of keys a gateway has).
func (a *Authenticator) byAPIKey(key string) (*Caller, *failure) {
	switch {
	case key == "":
		return nil, &failure{reason: "malformed_key", detail: "The X-API-Key header is empty."}
	case len(key) > MaxAPIKeyBytes:
		return nil, &failure{reason: "malformed_key", detail: fmt.Sprintf("The X-API-Key header is longer than %d bytes.", MaxAPIKeyBytes)}
	case !visibleASCII(key):
		return nil, &failure{reason: "malformed_key", detail: "The X-API-Key header holds characters no API key has (spaces, control or non-ASCII characters)."}
	}
	var buf [MaxAPIKeyBytes]byte // on the stack: hashing the key allocates nothing
	sum := sha256.Sum256(buf[:copy(buf[:], key)])
	found := -1
	for i := range a.keys {
		eq := subtle.ConstantTimeCompare(sum[:], a.keys[i].hash[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil, &failure{reason: "unknown_key", detail: "The API key is not valid."}
	}
	return a.keys[found].caller, nil
}

// visibleASCII reports whether s holds printable ASCII other than space only (RFC 7230 VCHAR).
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func (a *Authenticator) byAuthorization(v string) (*Caller, *failure) {
	scheme, token, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, &failure{reason: "unsupported_scheme", detail: "The Authorization header must use the Bearer scheme (or send an API key in X-API-Key instead)."}
	}
	if a.parser == nil {
		return nil, &failure{reason: "bearer_not_accepted", detail: "This gateway does not accept bearer tokens: send an API key in the X-API-Key header."}
	}
	token = strings.TrimLeft(token, " ")
	switch {
	case token == "":
		return nil, &failure{reason: "malformed_token", bearer: true, detail: "The Authorization header carries no bearer token."}
	case len(token) > MaxTokenBytes:
		return nil, &failure{reason: "token_too_large", bearer: true, detail: fmt.Sprintf("The bearer token is longer than %d bytes.", MaxTokenBytes)}
	case !compactJWS(token):
		return nil, &failure{reason: "malformed_token", bearer: true, detail: "The bearer token is not a well-formed JWT (three base64url parts separated by dots)."}
	}
	return a.byJWT(token)
}

// compactJWS reports whether s has the shape of a signed JWT: three base64url parts, dot-separated.
func compactJWS(s string) bool {
	dots := 0
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '.':
			dots++
		case ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// tokenClaims are the claims the gateway reads from a caller's JWT.
type tokenClaims struct {
	jwt.RegisteredClaims
	Scope   scopeClaim   `json:"scope"`
	Scp     scopeClaim   `json:"scp"`
	Session sessionClaim `json:"session_id"` // ClaimSession
}

func (a *Authenticator) byJWT(token string) (*Caller, *failure) {
	var claims tokenClaims
	_, err := a.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		// WithValidMethods already refused every other algorithm; this keeps the key tied to it.
		if t.Method != a.alg {
			return nil, errors.New("unexpected signing method")
		}
		return a.verifyBy, nil
	})
	if err != nil {
		return nil, a.tokenFailure(err, &claims)
	}
	if !claimsReadOneWay(token) {
		return nil, &failure{reason: "ambiguous_claims", bearer: true,
			detail: "The bearer token's claims can be read more than one way (a claim given twice, or a claim name spelled in another case)."}
	}
	if !datesInRange(&claims.RegisteredClaims) {
		return nil, &failure{reason: "invalid_date", bearer: true, detail: "The bearer token has a date claim (exp, nbf or iat) out of range."}
	}
	sub := claims.Subject
	switch {
	case sub == "":
		return nil, &failure{reason: "missing_claim", bearer: true, detail: "The bearer token has no subject (sub): it must name the caller."}
	case len(sub) > MaxSubjectBytes || !printable(sub):
		return nil, &failure{reason: "invalid_subject", bearer: true, detail: fmt.Sprintf("The bearer token's subject (sub) must be printable text of at most %d bytes.", MaxSubjectBytes)}
	}
	if claims.Session.present && !validSessionClaim(claims.Session.value) {
		return nil, &failure{reason: "invalid_session", bearer: true,
			detail: fmt.Sprintf("The bearer token's %s claim must be a session id: 1 to %d characters of A-Z, a-z, 0-9, _ and -.", ClaimSession, MaxSessionClaimBytes)}
	}
	caller := newCaller("jwt:"+sub, knownScopes(claims.Scope, claims.Scp), MethodJWT, claims.Session.value)
	caller.Label = a.jwtLabel(token)
	return &caller, nil
}

// claimNames are the JSON names of the claims tokenClaims reads (its json tags, those of the
// embedded jwt.RegisteredClaims included).
var claimNames = jsonNames(reflect.TypeFor[tokenClaims]())

func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && f.Type.Kind() == reflect.Struct && name == "":
			out = append(out, jsonNames(f.Type)...)
		case name != "" && name != "-":
			out = append(out, name)
		}
	}
	return out
}

// claimsReadOneWay reports whether a verified token's claims can be read one way only: no member
// named twice, exactly or in another case (jsonbody.Check), and every claim the gateway reads
// spelled exactly. golang-jwt decodes claims with encoding/json, which matches names without
// regard to case and keeps the last of repeated ones: {"eXp": ...} would be an exp here and no exp
// at all to the CRM's own JWT library, {"sub": "a", "Sub": "b"} caller b here and a there.
func claimsReadOneWay(token string) bool {
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || jsonbody.Check(payload) != nil {
		return false
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(payload, &members) != nil {
		return false
	}
	for name := range members {
		for _, exact := range claimNames {
			if name != exact && strings.EqualFold(name, exact) {
				return false
			}
		}
	}
	return true
}

// datesInRange reports whether exp, nbf and iat, where present, are on or after 1970. golang-jwt
// converts a date's seconds to int64 unchecked: beyond 2^63 (nbf 9e99) the conversion wraps on
// amd64 to a date long past, so that a token "not valid before the end of time" would be valid
// now. No date the CRM issues is before 1970.
func datesInRange(c *jwt.RegisteredClaims) bool {
	for _, d := range []*jwt.NumericDate{c.ExpiresAt, c.NotBefore, c.IssuedAt} {
		if d != nil && d.Before(time.Unix(0, 0)) {
			return false
		}
	}
	return true
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' {
			return false
		}
	}
	return true
}

// tokenFailure says why golang-jwt refused a token, without quoting it. The claims are read only
// for a missing claim, which golang-jwt reports after it has verified the signature.
func (a *Authenticator) tokenFailure(err error, claims *tokenClaims) *failure {
	f := func(reason, detail string) *failure { return &failure{reason: reason, detail: detail, bearer: true} }
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return f("malformed_token", "The bearer token is not a well-formed JWT.")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return f("bad_signature", "The bearer token's algorithm or signature is not accepted.")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		var missing []string
		if claims.ExpiresAt == nil {
			missing = append(missing, "exp")
		}
		if a.issuer != "" && claims.Issuer == "" {
			missing = append(missing, "iss")
		}
		if a.audience != "" && len(claims.Audience) == 0 {
			missing = append(missing, "aud")
		}
		return f("missing_claim", "The bearer token lacks a required claim ("+strings.Join(missing, ", ")+").")
	case errors.Is(err, jwt.ErrTokenExpired):
		return f("expired", "The bearer token has expired.")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return f("not_yet_valid", "The bearer token is not valid yet (nbf).")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return f("issued_in_future", "The bearer token was issued in the future (iat).")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return f("wrong_issuer", "The bearer token was not issued by the expected issuer (iss).")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return f("wrong_audience", "The bearer token is not meant for this gateway (aud).")
	}
	return f("invalid_token", "The bearer token is not valid.")
}

// JWTLabel is the metrics and log label of JWT callers without a usable caller claim.
const JWTLabel = "jwt"

// labelValue is what a caller claim's value must be to become a label.
var labelValue = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// jwtLabel is a verified token's label: its caller claim's value when that is a short plain
// name (a site, an application), else JWTLabel. An e-mail address or anything with spaces or
// odd characters is never a label.
func (a *Authenticator) jwtLabel(token string) string {
	if a.callerClaim == "" {
		return JWTLabel
	}
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return JWTLabel
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(payload, &members) != nil {
		return JWTLabel
	}
	var v string
	if json.Unmarshal(members[a.callerClaim], &v) != nil || !labelValue.MatchString(v) {
		return JWTLabel
	}
	return v
}
