package passthrough

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"

	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// WithWebhookTarget makes the sessions created through the relay report to the gateway: the
// gateway's own webhook route (GATEWAY_PUBLIC_URL + /webhooks/inbox-hub), signed with its secret
// (INBOXHUB_WEBHOOK_SECRET), for the events it handles. A create by a caller without the admin
// scope gets this target in place of any webhook settings it sent; an admin's create gets it
// when it names no webhook of its own. The secret is removed from every relayed answer. Without
// a target, webhook settings of callers without the admin scope are dropped.
func WithWebhookTarget(w upstream.Webhook) Option {
	return func(h *Handler) {
		if w.URL != "" {
			h.target = &w
		}
	}
}

// isWebhookField reports whether a member of a session body is about the session's webhook, in
// any case or spelling (webhookUrl, WebhookURL, webhook_secret, WEBHOOK-EVENTS, ...).
func isWebhookField(name string) bool {
	var b strings.Builder
	for _, r := range name {
		if unicode.IsLetter(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return strings.HasPrefix(b.String(), "webhook")
}

// ownWebhook returns the body of a session create as it is relayed (see WithWebhookTarget). The
// body has passed jsonbody.Check, so no member is named twice.
func (h *Handler) ownWebhook(body []byte, admin bool) ([]byte, error) {
	if len(body) == 0 {
		return body, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil || members == nil {
		return nil, problem.Invalid("The request body must be a JSON object.", problem.Field("body", "must be a JSON object"))
	}
	named := false
	for name := range members {
		if isWebhookField(name) {
			named = true
			delete(members, name)
		}
	}
	switch {
	case admin && named:
		return body, nil // an admin chose where this session's events go
	case !named && h.target == nil:
		return body, nil
	}
	if h.target != nil {
		members["webhookUrl"] = mustJSON(h.target.URL)
		if h.target.Secret != "" {
			members["webhookSecret"] = mustJSON(h.target.Secret)
		}
		if len(h.target.Events) > 0 {
			members["webhookEvents"] = mustJSON(h.target.Events)
		}
	}
	return json.Marshal(members)
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v) // strings and string slices always encode
	return b
}

// scrub removes the gateway's webhook secret from an upstream answer, should the upstream echo
// the settings it was given.
func (h *Handler) scrub(body []byte) []byte {
	if h.target == nil || h.target.Secret == "" || !bytes.Contains(body, []byte(h.target.Secret)) {
		return body
	}
	return bytes.ReplaceAll(body, []byte(h.target.Secret), []byte("[redacted]"))
}
