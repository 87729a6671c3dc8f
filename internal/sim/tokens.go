package sim

import (
	"errors"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// tokenKind tells access tokens from refresh tokens, so one cannot stand in for the other.
type tokenKind string

const (
	kindAccess  tokenKind = "access"
	kindRefresh tokenKind = "refresh"
)

// errBadToken is any reason a presented token is not accepted.
var errBadToken = errors.New("invalid or expired token")

// tokenClaims are the claims of both token kinds.
type tokenClaims struct {
	jwt.RegisteredClaims
	Type     tokenKind `json:"type"`
	Username string    `json:"username,omitempty"`
	Role     string    `json:"role,omitempty"`
}

// tokenRecord is what the store remembers of an issued token.
type tokenRecord struct {
	kind    tokenKind
	expires time.Time
}

// issuedToken is a signed token with its expiry.
type issuedToken struct {
	raw     string
	jti     string
	expires time.Time
}

// tokenStore issues HS256 JWTs and remembers the live ones by jti, so that logout, rotation and
// RevokeAllTokens can invalidate tokens whose signature and exp are still good.
type tokenStore struct {
	mu     sync.Mutex
	secret []byte
	clock  func() time.Time
	live   map[string]tokenRecord
}

func newTokenStore(secret []byte, clock func() time.Time) *tokenStore {
	return &tokenStore{secret: secret, clock: clock, live: map[string]tokenRecord{}}
}

// issue signs a token of kind for the user, valid for lifetime. The issue time is truncated to
// whole seconds so that exp - iat equals the lifetime exactly.
func (t *tokenStore) issue(kind tokenKind, u user, lifetime time.Duration) (issuedToken, error) {
	now := t.clock().Truncate(time.Second)
	exp := now.Add(lifetime)
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   u.subject(),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        uuid.NewString(),
			Issuer:    "inboxhub-sim",
		},
		Type:     kind,
		Username: u.Username,
		Role:     u.Role,
	}
	raw, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
	if err != nil {
		return issuedToken{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(t.clock())
	t.live[claims.ID] = tokenRecord{kind: kind, expires: exp}
	return issuedToken{raw: raw, jti: claims.ID, expires: exp}, nil
}

// validate checks signature, algorithm, expiry and that the token is live and of the kind
// wanted. It returns the token's jti.
func (t *tokenStore) validate(raw string, kind tokenKind) (string, error) {
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(t.clock))
	if err != nil {
		return "", errBadToken
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	rec, ok := t.live[claims.ID]
	if !ok || rec.kind != kind || !t.clock().Before(rec.expires) {
		return "", errBadToken
	}
	return claims.ID, nil
}

func (t *tokenStore) revoke(jti string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.live, jti)
}

func (t *tokenStore) revokeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.live)
}

// prune forgets expired tokens once there are many; the caller holds t.mu.
func (t *tokenStore) prune(now time.Time) {
	if len(t.live) < 4096 {
		return
	}
	for id, rec := range t.live {
		if !now.Before(rec.expires) {
			delete(t.live, id)
		}
	}
}
