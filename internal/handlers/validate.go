package handlers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/jid"
	"github.com/inboxhub-gateway/gateway/internal/jsonbody"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// Bounds of the list routes' query parameters: checked before any upstream call, so that bad input
// gets a 400 and never reaches Inbox Hub.
const (
	// MaxPage is the highest page a list route accepts; deeper pages are a sync's job.
	MaxPage = 100_000
	// MaxSearchChars bounds the contacts search text.
	MaxSearchChars = 100
	// MaxTextChars bounds the text of a sent message.
	MaxTextChars = 4096
	// MaxIdempotencyKeyBytes bounds the Idempotency-Key header.
	MaxIdempotencyKeyBytes = 128
)

// HeaderIdempotencyKey names the header that makes a send safe to retry.
const HeaderIdempotencyKey = "Idempotency-Key"

// queryParams returns the request's query, answering 400 when it cannot be parsed, names a
// parameter not in allowed, or repeats one. Every route of the API rejects what it does not
// understand rather than ignore it: a typo such as ?limt=10 would otherwise pass silently.
func queryParams(c *gin.Context, allowed ...string) (url.Values, bool) {
	q, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		middleware.Fail(c, problem.Invalid("The query string is not valid URL encoding."))
		return nil, false
	}
	var fields []problem.FieldError
	for _, name := range sortedKeys(q) {
		switch {
		case !slices.Contains(allowed, name):
			fields = append(fields, problem.Field(clip.Runes(name, 64, clip.Ellipsis), "unknown query parameter"+allowedHint(allowed)))
		case len(q[name]) > 1:
			fields = append(fields, problem.Field(name, "given more than once"))
		}
	}
	if len(fields) > 0 {
		middleware.Fail(c, problem.Invalid("The query string has parameters this route does not take.", fields...))
		return nil, false
	}
	return q, true
}

func allowedHint(allowed []string) string {
	if len(allowed) == 0 {
		return " (this route takes none)"
	}
	return " (this route takes " + strings.Join(allowed, ", ") + ")"
}

func sortedKeys(q url.Values) []string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// listParams validates the pagination (and, when search is allowed, the search text) of a list
// route: page 1..MaxPage (default 1), limit 1..upstream.MaxLimit (default defLimit). It answers
// 400 naming every offending parameter.
func listParams(c *gin.Context, defLimit int, withSearch bool) (upstream.ListParams, bool) {
	allowed := []string{"page", "limit"}
	if withSearch {
		allowed = append(allowed, "search")
	}
	q, ok := queryParams(c, allowed...)
	if !ok {
		return upstream.ListParams{}, false
	}
	p := upstream.ListParams{Page: 1, Limit: defLimit}
	var fields []problem.FieldError
	if v, ok := q["page"]; ok {
		n, good := boundedInt(v[0], 1, MaxPage)
		if !good {
			fields = append(fields, problem.Field("page", fmt.Sprintf("must be a whole number from 1 to %d", MaxPage)))
		}
		p.Page = n
	}
	if v, ok := q["limit"]; ok {
		n, good := boundedInt(v[0], 1, upstream.MaxLimit)
		if !good {
			fields = append(fields, problem.Field("limit", fmt.Sprintf("must be a whole number from 1 to %d", upstream.MaxLimit)))
		}
		p.Limit = n
	}
	if v, ok := q["search"]; ok {
		if msg := checkSearch(v[0]); msg != "" {
			fields = append(fields, problem.Field("search", msg))
		}
		p.Search = v[0]
	}
	if len(fields) > 0 {
		middleware.Fail(c, problem.Invalid("The pagination or search parameters are not valid.", fields...))
		return upstream.ListParams{}, false
	}
	return p, true
}

// boundedInt reads a plain decimal number (ASCII digits only: no sign, spaces, exponent or hex)
// within lo..hi.
func boundedInt(s string, lo, hi int) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// checkSearch says what is wrong with a search text, or "" when it is acceptable.
func checkSearch(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "must be UTF-8 text"
	case utf8.RuneCountInString(s) > MaxSearchChars:
		return fmt.Sprintf("must be at most %d characters", MaxSearchChars)
	case strings.IndexFunc(s, isControl) >= 0:
		return "must not contain control characters"
	}
	return ""
}

func isControl(r rune) bool { return unicode.IsControl(r) || r == '\uFFFD' }

// chatIDPattern is a chat's JID: a user part of WhatsApp id characters and one of the servers
// the upstream uses (docs/upstream.md: phone JIDs, groups, @lid ids; older @c.us; broadcast lists
// and channels).
var chatIDPattern = regexp.MustCompile(`^[0-9A-Za-z._:-]{1,64}@(s\.whatsapp\.net|g\.us|lid|c\.us|broadcast|newsletter)$`)

// chatIDParam returns the validated chatId path parameter, or answers 400.
func chatIDParam(c *gin.Context) (string, bool) {
	id := c.Param("chatId")
	if !chatIDPattern.MatchString(id) {
		middleware.Fail(c, problem.Invalid("The chatId is not valid.",
			problem.Field("chatId", "must be a WhatsApp JID such as 34600111222@s.whatsapp.net, 120363012345678901@g.us or 123456789012345@lid")))
		return "", false
	}
	return id, true
}

// bindJSON decodes a JSON request body into v: the Content-Type must be application/json (415
// otherwise), the body one JSON value whose members match v's fields exactly, none unknown and
// none named twice in any case (jsonbody.Decode; 400). A body over the configured limit fails
// with the *http.MaxBytesError that the error mapping answers 413.
func bindJSON(c *gin.Context, v any) bool {
	if msg := checkJSONContentType(c.Request.Header.Values("Content-Type")); msg != "" {
		middleware.Fail(c, problem.New(http.StatusUnsupportedMediaType, problem.CodeUnsupportedMediaType, msg))
		return false
	}
	if c.Request.Body == nil {
		middleware.Fail(c, problem.Invalid("The request body is missing: send a JSON object."))
		return false
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			middleware.Fail(c, err)
		} else {
			middleware.Fail(c, problem.Invalid("The request body could not be read."))
		}
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		middleware.Fail(c, problem.Invalid("The request body is empty: send a JSON object."))
		return false
	}
	if err := jsonbody.Decode(body, v); err != nil {
		middleware.Fail(c, err)
		return false
	}
	return true
}

// checkJSONContentType says why a Content-Type is not JSON, or "" when it is application/json
// (with no charset or charset=utf-8).
func checkJSONContentType(values []string) string {
	const want = "Send the body as JSON with Content-Type: application/json."
	if len(values) != 1 {
		return want
	}
	mt, params, err := mime.ParseMediaType(values[0])
	if err != nil || mt != "application/json" {
		return want
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return want + " The only parameter accepted is charset=utf-8."
		}
	}
	return ""
}

// idempotencyKey returns the Idempotency-Key header ("" when absent), or answers 400 when it is
// repeated, empty, longer than MaxIdempotencyKeyBytes or not printable ASCII.
func idempotencyKey(c *gin.Context) (string, bool) {
	values := c.Request.Header.Values(HeaderIdempotencyKey)
	switch {
	case len(values) == 0:
		return "", true
	case len(values) > 1:
		middleware.Fail(c, problem.Invalid("Send the Idempotency-Key header once.",
			problem.Field(HeaderIdempotencyKey, "given more than once")))
		return "", false
	}
	k := values[0]
	ok := k != "" && len(k) <= MaxIdempotencyKeyBytes
	for i := 0; ok && i < len(k); i++ {
		ok = k[i] >= ' ' && k[i] <= '~'
	}
	if !ok {
		middleware.Fail(c, problem.Invalid("The Idempotency-Key header is not valid.",
			problem.Field(HeaderIdempotencyKey, fmt.Sprintf("must be 1 to %d printable ASCII characters (a UUID is a good choice)", MaxIdempotencyKeyBytes))))
		return "", false
	}
	return k, true
}

// errRecipient is why a recipient cannot be turned into a JID.
type errRecipient string

func (e errRecipient) Error() string { return string(e) }

// Separators accepted inside a phone number and dropped before it is read.
const phoneSeparators = " -.()"

// NormalizeRecipient turns the "to" of a send into the JID the upstream takes:
//
//   - a phone number in any common international format ("+34 657 03 29 85", "0034657032985",
//     "(+34) 657-03-29-85", "34.657.032.985"): spaces, dashes, dots and parentheses are dropped,
//     then a leading "+" or "00" (the international call prefix); what remains must be 8 to 15
//     digits not starting with 0 (a country code never does, so national formats such as
//     "0657..." are refused rather than guessed), giving <digits>@s.whatsapp.net;
//   - a JID: <8..15 digits>@s.whatsapp.net (a device suffix such as ":71" is dropped), the older
//     <digits>@c.us (rewritten to @s.whatsapp.net), a group <digits>[-<digits>]@g.us, or an
//     <digits>@lid id. The server part is compared case-insensitively.
func NormalizeRecipient(to string) (string, error) {
	to = strings.TrimSpace(to)
	if to == "" {
		return "", errRecipient("is required: a phone number with its country code, or a WhatsApp JID")
	}
	if len(to) > 64 {
		return "", errRecipient("is too long for a phone number or a JID")
	}
	if j, ok := jid.Parse(to); ok {
		return recipientJID(j)
	}
	digits, err := phoneDigits(to)
	if err != nil {
		return "", err
	}
	return digits + "@s.whatsapp.net", nil
}

// recipientJID checks that a JID given as a recipient is one the upstream takes (a device suffix
// of a phone JID is dropped, one of an @lid id refused) and returns its stable form.
func recipientJID(j jid.JID) (string, error) {
	switch j.Server {
	case jid.ServerPhone, jid.ServerLegacyPhone:
		if !jid.Digits(j.User, 8, 15) || j.User[0] == '0' {
			return "", errRecipient("must be 8 to 15 digits (country code first) before @" + j.Server)
		}
	case jid.ServerGroup:
		owner, created, dash := strings.Cut(j.User, "-")
		if !jid.Digits(owner, 5, 20) || (dash && !jid.Digits(created, 5, 20)) {
			return "", errRecipient("is not a valid group JID (digits, or digits-digits, before @g.us)")
		}
	case jid.ServerLID:
		if j.HasDevice() || !jid.Digits(j.User, 5, 20) {
			return "", errRecipient("is not a valid @lid id (digits before @lid)")
		}
	default:
		return "", errRecipient("must be a phone number or a JID at s.whatsapp.net, c.us, g.us or lid")
	}
	return j.Stable(), nil
}

func phoneDigits(s string) (string, error) {
	var b strings.Builder
	plus := false
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && b.Len() == 0 && !plus && strings.Trim(s[:i], phoneSeparators) == "":
			plus = true
		case strings.ContainsRune(phoneSeparators, r):
		default:
			return "", errRecipient("must be a phone number (digits, with optional +, spaces, dashes, dots and parentheses) or a WhatsApp JID")
		}
	}
	digits := b.String()
	if !plus {
		if rest, ok := strings.CutPrefix(digits, "00"); ok {
			digits = rest
		}
	}
	switch {
	case len(digits) < 8 || len(digits) > 15:
		return "", errRecipient("must have 8 to 15 digits including the country code")
	case digits[0] == '0':
		return "", errRecipient("must start with the country code (as +34... or 0034...), not a national 0 prefix")
	}
	return digits, nil
}

// checkText says what is wrong with the text of a message, or "" when it can be sent.
func checkText(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "is required and must not be blank"
	case utf8.RuneCountInString(s) > MaxTextChars:
		return fmt.Sprintf("must be at most %d characters", MaxTextChars)
	case strings.IndexFunc(s, func(r rune) bool { return r != '\n' && r != '\r' && r != '\t' && unicode.IsControl(r) }) >= 0:
		return "must not contain control characters other than line breaks and tabs"
	}
	return ""
}
