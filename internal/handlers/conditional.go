package handlers

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/cache"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
)

// Conditional GETs of the cached reads (RFC 9110 section 13, RFC 9111 section 5.2).
//
// An answer made from one value the read cache keeps carries a strong ETag naming that value's
// version (the cache hashes the encoded value once, when it stores it) and
// Cache-Control: private, max-age=<seconds the value stays fresh here>. A request whose
// If-None-Match names that tag, or is "*", gets 304 with no body. The tag stands for the data:
// meta.cache (how this answer was served, and its age) is not part of what it validates. Errors,
// and answers that the cache did not keep, carry neither header.

// versionETag is the strong entity tag of a cached value's version ("" for none).
func versionETag(version string) string {
	if version == "" {
		return ""
	}
	return `"` + version + `"`
}

// answerConditional sets ETag and Cache-Control for an answer made from the cached value info
// describes (nothing when it has no version) and reports whether the request's If-None-Match
// matches it, in which case it has answered 304 and the caller writes nothing more. etagValue,
// when not nil, is the header value of etag made once (middleware.Shared).
func answerConditional(c *gin.Context, info cache.Info, cached bool, etag string, etagValue []string) bool {
	if !cached || etag == "" {
		return false
	}
	if etagValue == nil {
		etagValue = []string{etag}
	}
	h := c.Writer.Header()
	h["Etag"] = etagValue // the canonical form of ETag
	h["Cache-Control"] = privateMaxAge(freshSeconds(info.FreshUntil, time.Now()))
	if !noneMatchFails(c.Request.Header.Values("If-None-Match"), etag) {
		return false
	}
	c.Status(http.StatusNotModified)
	c.Writer.WriteHeaderNow()
	c.Abort()
	return true
}

// privateMaxAges are the Cache-Control values of the freshness windows up to a minute, made once.
var privateMaxAges = func() (v [61][]string) {
	for i := range v {
		v[i] = middleware.Shared("private, max-age=" + strconv.Itoa(i))
	}
	return v
}()

// privateMaxAge is the Cache-Control value "private, max-age=<seconds>".
func privateMaxAge(seconds int64) []string {
	if seconds >= 0 && seconds < int64(len(privateMaxAges)) {
		return privateMaxAges[seconds]
	}
	return []string{"private, max-age=" + strconv.FormatInt(seconds, 10)}
}

// freshSeconds is how many whole seconds a value fresh until until stays fresh after now (0 when
// it is stale).
func freshSeconds(until, now time.Time) int64 {
	return max(int64(until.Sub(now)/time.Second), 0)
}

// noneMatchFails reports whether an If-None-Match condition is false for a representation whose
// tag is etag, that is whether a GET is answered 304: the field is "*" or lists a tag that
// matches etag by the weak comparison (the opaque tags are equal; a W/ prefix does not count).
// A field that is not a valid list of tags matches nothing.
func noneMatchFails(fields []string, etag string) bool {
	for _, field := range fields {
		for part := range strings.SplitSeq(field, ",") {
			tag := strings.TrimSpace(part)
			if tag == "*" {
				return true
			}
			if strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}
