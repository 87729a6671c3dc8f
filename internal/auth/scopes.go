package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/inboxhub-gateway/gateway/internal/config"
)

// scopeClaim is a JWT's "scope" or "scp" claim: a space-separated string (RFC 8693) or a JSON
// array of strings. null or absent is no scope; any other JSON type fails the token's decoding,
// which makes the token malformed.
type scopeClaim []string

// UnmarshalJSON reads both forms of the claim.
func (s *scopeClaim) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		*s = strings.Fields(str)
		return nil
	case len(b) > 0 && b[0] == '[':
		var list []string
		if err := json.Unmarshal(b, &list); err != nil {
			return err
		}
		*s = list
		return nil
	}
	return errors.New("scope claim is neither a string nor an array of strings")
}

// knownScopes returns the scopes of config.Scopes present in any of the claims, each once, in
// config.Scopes' order; unknown scopes are ignored.
func knownScopes(claims ...scopeClaim) []string {
	var out []string
	for _, known := range config.Scopes {
		for _, c := range claims {
			if slices.Contains(c, known) {
				out = append(out, known)
				break
			}
		}
	}
	return out
}
