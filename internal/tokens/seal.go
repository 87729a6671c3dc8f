package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Fingerprint names a token in logs and on /readyz without revealing it: the first 8 bytes of its
// SHA-256, in hex.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

// sealer encrypts the stored token record with AES-256-GCM under the current key and decrypts it
// with whichever known key the stored key id names. A nil *sealer stores plain text.
type sealer struct {
	current string
	aeads   map[string]cipher.AEAD
}

func newSealer(current string, keys map[string][]byte) (*sealer, error) {
	if current == "" && len(keys) == 0 {
		return nil, nil
	}
	var errs []error
	if current == "" {
		errs = append(errs, errors.New("encryption keys given without a current key id"))
	}
	if _, ok := keys[current]; current != "" && !ok {
		errs = append(errs, fmt.Errorf("current encryption key id %q is not among the keys", current))
	}
	s := &sealer{current: current, aeads: make(map[string]cipher.AEAD, len(keys))}
	for id, k := range keys {
		if id == "" || strings.ContainsAny(id, " \t\r\n") {
			errs = append(errs, fmt.Errorf("encryption key id %q is empty or has blanks", id))
			continue
		}
		if len(k) != 32 {
			errs = append(errs, fmt.Errorf("encryption key %q has %d bytes, want 32", id, len(k)))
			continue
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("encryption key %q: %w", id, err))
			continue
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			errs = append(errs, fmt.Errorf("encryption key %q: %w", id, err))
			continue
		}
		s.aeads[id] = aead
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// seal returns the key id to store beside the data and the data: the plain text when no key is
// configured, else a random nonce followed by the ciphertext, authenticated together with aad.
func (s *sealer) seal(plain, aad []byte) (string, []byte) {
	if s == nil {
		return "", plain
	}
	return s.current, s.aeads[s.current].Seal(nil, nil, plain, aad)
}

// open reverses seal. A record without a key id is plain text (written before a key was
// configured) and is read as it is; the next write encrypts it.
func (s *sealer) open(kid string, data, aad []byte) ([]byte, error) {
	if kid == "" {
		return data, nil
	}
	if s == nil {
		return nil, fmt.Errorf("stored token is encrypted with key %q but no encryption key is configured", kid)
	}
	aead, ok := s.aeads[kid]
	if !ok {
		return nil, fmt.Errorf("stored token is encrypted with unknown key %q", kid)
	}
	plain, err := aead.Open(nil, nil, data, aad)
	if err != nil {
		return nil, fmt.Errorf("stored token does not decrypt with key %q: %w", kid, err)
	}
	return plain, nil
}
