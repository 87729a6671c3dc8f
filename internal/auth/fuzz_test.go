package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// FuzzAuthenticate sends random X-API-Key and Authorization headers (each present or not). No
// input may panic, and none but the one valid key may pass: every refusal is a 401 problem answer
// that does not repeat the credential.
func FuzzAuthenticate(f *testing.F) {
	fx := newFixture(f)
	a, err := New(fx.hsOptions())
	if err != nil {
		f.Fatal(err)
	}
	r := router(&syncBuffer{}, nil, a.Middleware())
	valid := fx.hs(f, claims())
	parts := strings.Split(valid, ".")
	seeds := []struct {
		key, authz         string
		sendKey, sendAuthz bool
	}{
		{"", "", false, false},
		{"", "", true, false},
		{"", "", false, true},
		{"crm_0123456789abcdef0123456789abcdef", "", true, false},
		{"k\x00ey", "", true, false},
		{strings.Repeat("k", 257), "", true, false},
		{"", "Bearer", false, true},
		{"", "Bearer " + parts[0] + "." + parts[1] + ".", false, true},
		{"", "Bearer " + parts[0] + "." + parts[1] + ".AAAA", false, true},
		{"", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", false, true},
		{"", "Basic Zm9vOmJhcg==", false, true},
		{"", "Bearer a.b.c", false, true},
		{"x", "Bearer a.b.c", true, true},
		{"", "bEaReR \t" + parts[1], false, true},
	}
	for _, s := range seeds {
		f.Add(s.key, s.authz, s.sendKey, s.sendAuthz)
	}
	f.Fuzz(func(t *testing.T, key, authz string, sendKey, sendAuthz bool) {
		h := map[string][]string{"X-Request-Id": {"fuzz"}}
		if sendKey {
			h["X-Api-Key"] = []string{key}
		}
		if sendAuthz {
			h["Authorization"] = []string{authz}
		}
		ans := do(r, http.MethodGet, "/v1/whoami", h)
		if sendKey && !sendAuthz && key == fx.readKey {
			return // the one valid credential a fuzzer could send
		}
		if ans.status != http.StatusUnauthorized {
			t.Fatalf("key %q (sent %v), Authorization %q (sent %v): status %d, want 401", key, sendKey, authz, sendAuthz, ans.status)
		}
		var d problem.Details
		if err := json.Unmarshal([]byte(ans.body), &d); err != nil || d.Code != problem.CodeUnauthenticated ||
			ans.header.Get("Content-Type") != problem.ContentType {
			t.Fatalf("answer %q is no UNAUTHENTICATED problem", ans.body)
		}
		for _, secret := range []string{key, authz, strings.TrimPrefix(authz, "Bearer ")} {
			if len(secret) >= 20 && strings.Contains(ans.body, secret) {
				t.Fatalf("the answer repeats the credential %q", secret)
			}
		}
	})
}

// fuzzAPIKey is the one key FuzzAPIKey configures: fixed (so that the corpus under testdata stays
// meaningful between runs) and obviously fake.
const fuzzAPIKey = "crm_fuzz_0000000000000000000000000000dead"

// FuzzAPIKey mutates an X-API-Key around the one configured key. Only that exact key passes, as
// its named caller with its scopes and nothing else; every other value (another case, a space, a
// prefix or suffix, a control character, a longer key) is a 401 UNAUTHENTICATED problem that
// repeats neither the value sent nor the configured key.
// Run: go test ./internal/auth -run '^$' -fuzz '^FuzzAPIKey$' -fuzztime 2m -parallel 1
func FuzzAPIKey(f *testing.F) {
	a, err := New(Options{APIKeys: []config.APIKey{
		{Name: "crm", SHA256: sha256.Sum256([]byte(fuzzAPIKey)), Scopes: []string{"sessions:read", "messages:send"}},
	}})
	if err != nil {
		f.Fatal(err)
	}
	r := router(&syncBuffer{}, nil, a.Middleware())
	for _, s := range []string{
		fuzzAPIKey, strings.ToUpper(fuzzAPIKey), " " + fuzzAPIKey, fuzzAPIKey + " ", fuzzAPIKey + "\x00",
		fuzzAPIKey[:len(fuzzAPIKey)-1], fuzzAPIKey + "f", "Bearer " + fuzzAPIKey, fuzzAPIKey + "\r\nX-Admin: 1",
		strings.Repeat("a", MaxAPIKeyBytes+1), "", "ключ", "crm_fuzz_%30%30",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		ans := do(r, http.MethodGet, "/v1/whoami", map[string][]string{"X-Api-Key": {key}})
		if key == fuzzAPIKey {
			w := callerIn(t, ans)
			if w.Caller.Name != "crm" || w.Caller.Method != MethodAPIKey || !slices.Equal(w.Caller.Scopes, []string{"sessions:read", "messages:send"}) {
				t.Fatalf("the valid key gave caller %+v", w.Caller)
			}
			return
		}
		d := problemOf(t, ans, http.StatusUnauthorized, problem.CodeUnauthenticated)
		text := ans.body + strings.Join(ans.header.Values("WWW-Authenticate"), " ")
		if l := leaks(text, fuzzAPIKey); l != nil || (len(key) >= 8 && strings.Contains(text, key)) {
			t.Fatalf("the refusal of %q repeats a key: %s", key, d.Detail)
		}
	})
}

// FuzzJWT signs fuzzed JOSE headers and claim sets with the configured HS256 secret (or with the
// wrong secret, HS512, or no signature) and sends them as bearer tokens. A token is accepted
// only when an independent reading of it says it must be: signed with HS256 and the right secret,
// header alg exactly HS256, exp present and not past, nbf and iat not in the future, iss and aud
// the configured ones, sub non-empty printable text of at most 200 bytes, scope and scp strings or
// arrays of strings; the caller is then "jwt:"+sub with exactly the known scopes named. Everything
// else is a 401 UNAUTHENTICATED problem (never a 500, never a panic) that does not repeat the
// token or its claims.
// Run: go test ./internal/auth -run '^$' -fuzz '^FuzzJWT$' -fuzztime 2m -parallel 1
func FuzzJWT(f *testing.F) {
	fx := newFixture(f)
	a, err := New(fx.hsOptions())
	if err != nil {
		f.Fatal(err)
	}
	r := router(&syncBuffer{}, nil, a.Middleware())
	secret, other := []byte(fx.hsSecret), []byte(randomHex(f, 32))
	bearer := func(header, payload string, sig uint8) string {
		in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
		var mac hash.Hash
		switch sig % 4 {
		case 0:
			mac = hmac.New(sha256.New, secret)
		case 1:
			mac = hmac.New(sha256.New, other)
		case 2:
			mac = hmac.New(sha512.New, secret)
		default:
			return in + "."
		}
		mac.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	hs256 := `{"alg":"HS256","typ":"JWT"}`
	exp, iat := now.Add(time.Hour).Unix(), now.Add(-time.Minute).Unix()
	valid := fmt.Sprintf(`{"sub":"alice","iss":%q,"aud":%q,"exp":%d,"iat":%d,"scope":"sessions:read messages:send"}`, testIssuer, testAudience, exp, iat)
	// The valid seed must pass, or the property below would hold vacuously.
	if ans := do(r, http.MethodGet, "/v1/whoami", hdr("Authorization", "Bearer "+bearer(hs256, valid, 0))); ans.status != http.StatusOK {
		f.Fatalf("the valid seed token was refused: %d %s", ans.status, ans.body)
	}
	claimsWith := func(edit string) string { return strings.Replace(valid, `"sub":"alice"`, edit, 1) }
	for _, s := range []struct {
		header, payload string
		sig             uint8
	}{
		{hs256, valid, 0}, {hs256, valid, 1}, {hs256, valid, 2}, {hs256, valid, 3},
		{`{"alg":"none"}`, valid, 3}, {`{"alg":"HS512"}`, valid, 2}, {`{"alg":"RS256"}`, valid, 0},
		{`{"alg":"hs256"}`, valid, 0}, {`{"alg":"HS256","alg":"none"}`, valid, 0}, {`{"alg":"HS256","kid":"../../etc/passwd"}`, valid, 0},
		{`{"alg":"HS256","crit":["exp"]}`, valid, 0}, {`[]`, valid, 0}, {`null`, valid, 0}, {hs256, `null`, 0}, {hs256, `[]`, 0},
		{hs256, claimsWith(`"sub":""`), 0}, {hs256, claimsWith(`"sub":"a\u0000b"`), 0}, {hs256, claimsWith(`"sub":5`), 0},
		{hs256, claimsWith(`"sub":"` + strings.Repeat("s", 201) + `"`), 0}, {hs256, claimsWith(`"sub":"alice","scp":["admin"]`), 0},
		{hs256, claimsWith(`"sub":"alice","scope":5`), 0}, {hs256, claimsWith(`"sub":"alice","aud":["x","` + testAudience + `"]`), 0},
		{hs256, claimsWith(`"sub":"alice","nbf":9e99`), 0}, {hs256, claimsWith(`"sub":"alice","exp":1e400`), 0},
		{hs256, claimsWith(`"sub":"alice","exp":"4102444800"`), 0}, {hs256, claimsWith(`"sub":"alice","exp":null`), 0},
		{hs256, claimsWith(`"sub":"alice","sid":"demo_session"`), 0}, {hs256, valid + " ", 0}, {hs256, valid + "{}", 0},
	} {
		f.Add(s.header, s.payload, s.sig)
	}
	f.Fuzz(func(t *testing.T, header, payload string, sig uint8) {
		tok := bearer(header, payload, sig)
		ans := do(r, http.MethodGet, "/v1/whoami", hdr("Authorization", "Bearer "+tok))
		if ans.status != http.StatusOK {
			problemOf(t, ans, http.StatusUnauthorized, problem.CodeUnauthenticated)
			if strings.Contains(ans.body, tok[:len(tok)/2]) || (len(payload) >= 16 && strings.Contains(ans.body, payload)) {
				t.Fatalf("the refusal repeats the token or its claims: %s", ans.body)
			}
			return
		}
		want, why := acceptable(header, payload, sig%4 == 0, now, testIssuer, testAudience)
		if why != "" {
			t.Fatalf("accepted a token that must be refused (%s): header %q claims %q", why, header, payload)
		}
		if got := callerIn(t, ans).Caller; got.Name != want.Name || got.Method != MethodJWT || !slices.Equal(got.Scopes, want.Scopes) {
			t.Fatalf("caller %+v, want %+v (claims %q)", got, want, payload)
		}
	})
}

// acceptable is FuzzJWT's own reading of a token, written without golang-jwt: the caller a token
// stands for, or why it must be refused. Claim names are matched exactly, as the CRM's own
// JWT libraries match them.
func acceptable(header, payload string, rightKey bool, at time.Time, iss, aud string) (Caller, string) {
	if !rightKey {
		return Caller{}, "not signed with HS256 and the secret"
	}
	var h map[string]any
	if json.Unmarshal([]byte(header), &h) != nil || h == nil || h["alg"] != "HS256" {
		return Caller{}, "header alg is not HS256"
	}
	dec := json.NewDecoder(strings.NewReader(payload))
	dec.UseNumber()
	var c map[string]any
	if dec.Decode(&c) != nil || c == nil || dec.More() {
		return Caller{}, "claims are not one JSON object"
	}
	number := func(name string) (float64, bool, bool) { // value, present, well-formed
		v, ok := c[name]
		if !ok || v == nil {
			return 0, false, true
		}
		n, isNum := v.(json.Number)
		if !isNum {
			return 0, true, false
		}
		f, err := n.Float64()
		return f, true, err == nil
	}
	leeway, t := DefaultLeeway.Seconds(), float64(at.Unix())
	switch exp, present, ok := number("exp"); {
	case !present || !ok:
		return Caller{}, "exp missing or not a number"
	case exp < t-leeway-1:
		return Caller{}, "expired"
	}
	for _, name := range []string{"nbf", "iat"} {
		if v, present, ok := number(name); !ok || (present && v > t+leeway+1) {
			return Caller{}, name + " in the future or not a number"
		}
	}
	if c["iss"] != iss {
		return Caller{}, "wrong iss"
	}
	switch v := c["aud"].(type) {
	case string:
		if v != aud {
			return Caller{}, "wrong aud"
		}
	case []any:
		if !slices.Contains(v, any(aud)) {
			return Caller{}, "wrong aud"
		}
	default:
		return Caller{}, "aud missing"
	}
	sub, _ := c["sub"].(string)
	if sub == "" || len(sub) > MaxSubjectBytes || !utf8.ValidString(sub) || strings.ContainsFunc(sub, unicode.IsControl) {
		return Caller{}, "sub missing or not printable"
	}
	var named []string
	for _, name := range []string{"scope", "scp"} {
		switch v := c[name].(type) {
		case nil:
		case string:
			named = append(named, strings.Fields(v)...)
		case []any:
			for _, s := range v {
				str, ok := s.(string)
				if !ok {
					return Caller{}, name + " holds a non-string"
				}
				named = append(named, str)
			}
		default:
			return Caller{}, name + " is neither a string nor an array"
		}
	}
	var scopes []string
	for _, s := range config.Scopes {
		if slices.Contains(named, s) {
			scopes = append(scopes, s)
		}
	}
	return Caller{Name: "jwt:" + sub, Scopes: scopes, Method: MethodJWT}, ""
}

// TestDateClaimsBeyondInt64Refused: a date claim too large for int64 seconds (found by FuzzJWT,
// testdata/fuzz/FuzzJWT) wrapped inside golang-jwt to a date long past on amd64, so a token not
// valid before the end of time was valid now. Such tokens are refused, as are dates before 1970.
func TestDateClaimsBeyondInt64Refused(t *testing.T) {
	fx := newFixture(t)
	a, err := New(fx.hsOptions())
	if err != nil {
		t.Fatal(err)
	}
	r := router(&syncBuffer{}, nil, a.Middleware())
	for name, c := range map[string]jwt.MapClaims{
		"nbf 9e99":  with(claims(), "nbf", 9e99),
		"iat 9e99":  with(claims(), "iat", 9e99),
		"nbf -9e99": with(claims(), "nbf", -9e99),
		"iat -1":    with(claims(), "iat", -1),
	} {
		t.Run(name, func(t *testing.T) {
			ans := do(r, http.MethodGet, "/v1/whoami", hdr("Authorization", "Bearer "+fx.hs(t, c)))
			problemOf(t, ans, http.StatusUnauthorized, problem.CodeUnauthenticated)
		})
	}
}

// TestAmbiguousClaimsRefused: claims that another JWT library would read differently (found by
// FuzzJWT, testdata/fuzz/FuzzJWT) are refused: a claim name in another case, which encoding/json
// matched to the claim, and a claim given twice.
func TestAmbiguousClaimsRefused(t *testing.T) {
	fx := newFixture(t)
	a, err := New(fx.hsOptions())
	if err != nil {
		t.Fatal(err)
	}
	r := router(&syncBuffer{}, nil, a.Middleware())
	rest := fmt.Sprintf(`"iss":%q,"aud":%q,"iat":%d`, testIssuer, testAudience, now.Add(-time.Minute).Unix())
	exp := now.Add(time.Hour).Unix()
	for name, payload := range map[string]string{
		"exp in another case":   fmt.Sprintf(`{"sub":"alice","eXp":%d,%s}`, exp, rest),
		"sub in another case":   fmt.Sprintf(`{"SUB":"alice","exp":%d,%s}`, exp, rest),
		"sub with a long s":     fmt.Sprintf(`{"\u017fub":"alice","exp":%d,%s}`, exp, rest),
		"sub twice":             fmt.Sprintf(`{"sub":"alice","sub":"mallory","exp":%d,%s}`, exp, rest),
		"sub in two cases":      fmt.Sprintf(`{"sub":"alice","Sub":"mallory","exp":%d,%s}`, exp, rest),
		"scope in another case": fmt.Sprintf(`{"sub":"alice","exp":%d,%s,"Scope":"admin"}`, exp, rest),
	} {
		t.Run(name, func(t *testing.T) {
			in := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
			mac := hmac.New(sha256.New, []byte(fx.hsSecret))
			mac.Write([]byte(in))
			tok := in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
			ans := do(r, http.MethodGet, "/v1/whoami", hdr("Authorization", "Bearer "+tok))
			d := problemOf(t, ans, http.StatusUnauthorized, problem.CodeUnauthenticated)
			if !strings.Contains(d.Detail, "more than one way") {
				t.Errorf("detail %q", d.Detail)
			}
		})
	}
}
