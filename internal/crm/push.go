package crm

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/noredirect"
	"github.com/inboxhub-gateway/gateway/internal/retrydelay"
)

// Headers of a sink delivery.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of timestamp + "." + body under the
	// signing secret.
	HeaderSignature = "X-Gateway-Signature"
	// HeaderTimestamp is the Unix time (seconds) the delivery was signed at; receivers should
	// refuse old ones.
	HeaderTimestamp = "X-Gateway-Timestamp"
	// HeaderDelivery names the batch ("<jobId>/<resource>/<offset>"): a batch delivered again after
	// a takeover has the same name.
	HeaderDelivery = "X-Gateway-Delivery"
)

// Defaults of SinkConfig.
const (
	DefaultSinkAttempts = 8
	DefaultSinkBackoff  = time.Second
	DefaultSinkMaxWait  = 30 * time.Second
	DefaultSinkTimeout  = 30 * time.Second
)

// Batch is the JSON body of one sink delivery.
type Batch struct {
	JobID     string `json:"jobId"`
	SessionID string `json:"sessionId"`
	Resource  string `json:"resource"`
	// Offset is the position of the first item among the job's items of the resource.
	Offset int               `json:"offset"`
	Items  []json.RawMessage `json:"items"`
}

// encode writes the batch as JSON without re-validating the items (they are the engine's own
// canonical JSON).
func (b Batch) encode() []byte {
	head, _ := json.Marshal(struct {
		JobID     string `json:"jobId"`
		SessionID string `json:"sessionId"`
		Resource  string `json:"resource"`
		Offset    int    `json:"offset"`
	}{b.JobID, b.SessionID, b.Resource, b.Offset})
	n := len(head) + 16
	for _, it := range b.Items {
		n += len(it) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, head[:len(head)-1]...)
	out = append(out, `,"items":[`...)
	for i, it := range b.Items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, it...)
	}
	return append(out, "]}"...)
}

// SinkConfig configures a Sink.
type SinkConfig struct {
	URL    string
	Secret string
	// Client sends the batches (default: an http.Client with a DefaultSinkTimeout timeout); a copy
	// of it that never follows redirects is used (a 3xx is a failed push).
	Client *http.Client
	// Attempts, Backoff and MaxWait: exponential backoff with full jitter, each wait at most MaxWait;
	// a Retry-After answer is honoured up to MaxWait.
	Attempts int
	Backoff  time.Duration
	MaxWait  time.Duration
	Clock    func() time.Time
}

// Sink pushes batches of items to the CRM, signed, retrying transient failures.
type Sink struct {
	cfg SinkConfig
}

// NewSink checks the configuration and returns a sink.
func NewSink(cfg SinkConfig) (*Sink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("crm: the sink URL must be an absolute http(s) URL")
	}
	if cfg.Secret == "" {
		return nil, errors.New("crm: the sink needs a signing secret")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultSinkTimeout}
	}
	cfg.Client = noredirect.Client(cfg.Client) // a redirect must not carry the signed batch elsewhere
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultSinkAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultSinkBackoff
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultSinkMaxWait
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Sink{cfg: cfg}, nil
}

// Sign returns the signature header value of body signed at timestamp (Unix seconds, as sent in
// X-Gateway-Timestamp): "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether signature is the right one for body and timestamp (constant time); a
// receiver also checks that the timestamp is recent.
func Verify(secret, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// errPermanent: the sink refused the batch for good (a 4xx other than 408, 425 and 429).
var errPermanent = errors.New("the sink refused the batch")

// Deliver sends one batch and returns once the sink answered 2xx, or the error of the last attempt.
// Every attempt is signed anew.
func (s *Sink) Deliver(ctx context.Context, b Batch) error {
	body := b.encode()
	delivery := b.JobID + "/" + b.Resource + "/" + strconv.Itoa(b.Offset)
	var last error
	for attempt := 1; ; attempt++ {
		retryAfter, err := s.attempt(ctx, body, delivery)
		if err == nil {
			return nil
		}
		last = err
		if errors.Is(err, errPermanent) || ctx.Err() != nil || attempt >= s.cfg.Attempts {
			return fmt.Errorf("%d attempts: %w", attempt, last)
		}
		wait := retrydelay.FullJitter(retrydelay.Exponential(s.cfg.Backoff, s.cfg.MaxWait, attempt))
		if retryAfter > 0 {
			wait = min(max(wait, retryAfter), s.cfg.MaxWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// attempt posts the body once; it returns the wait the sink asked for, if any.
func (s *Sink) attempt(ctx context.Context, body []byte, delivery string) (time.Duration, error) {
	wait, err := PostSigned(ctx, s.cfg.Client, SignedPost{
		URL: s.cfg.URL, Secret: s.cfg.Secret, Body: body, Now: s.cfg.Clock(),
		Headers: map[string]string{"User-Agent": "inboxhub-gateway-sync", HeaderDelivery: delivery},
	})
	if errors.Is(err, ErrRejected) {
		return 0, fmt.Errorf("%w: %v", errPermanent, err)
	}
	return wait, err
}

// SignedPost is one POST of a JSON body to the CRM, signed with X-Gateway-Timestamp and
// X-Gateway-Signature (see Sign).
type SignedPost struct {
	URL, Secret string
	Body        []byte
	Now         time.Time
	// Headers are added to the request (User-Agent, X-Gateway-Delivery, ...).
	Headers map[string]string
}

// ErrRejected marks an answer that sending again cannot change: a 4xx other than 408, 425 and
// 429, or a request that cannot be built.
var ErrRejected = errors.New("rejected for good")

// PostSigned posts p.Body once with X-Gateway-Timestamp and X-Gateway-Signature. A 2xx is
// success; 408, 425, 429 and 5xx are errors worth retrying, with the wait the CRM asked for
// (Retry-After); a 3xx is an error worth retrying too (client should come from noredirect, so that
// the signed body never follows the redirect); other answers match ErrRejected. Errors never quote
// the URL, which may carry a token, nor a redirect's Location.
func PostSigned(ctx context.Context, client *http.Client, p SignedPost) (time.Duration, error) {
	ts := strconv.FormatInt(p.Now.Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(p.Body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range p.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(p.Secret, ts, p.Body))
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("post failed: %v", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return 0, nil
	case code >= 300 && code < 400:
		return 0, fmt.Errorf("the CRM answered %d, a redirect (not followed)", code)
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests, code >= 500:
		return retryAfterOf(resp.Header.Get("Retry-After")), fmt.Errorf("the CRM answered %d", code)
	default:
		return 0, fmt.Errorf("%w: the CRM answered %d", ErrRejected, code)
	}
}

func retryAfterOf(v string) time.Duration {
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 0
}
