package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode"
)

// TestAccessLogHidesPhoneNumbersAndJIDs sends /v1 and passthrough requests whose paths hold a
// phone number and JIDs (matched routes, and paths no route matches) and checks that the
// access-log lines keep the route and the path's shape but no digit of the number or the JID.
func TestAccessLogHidesPhoneNumbersAndJIDs(t *testing.T) {
	t.Parallel()
	e := startV1(t, nil)
	const phone = "5511987654321"
	paths := map[string]string{
		"v1-chat-jid":        "/v1/sessions/demo_session/chats/" + phone + "@s.whatsapp.net/messages",
		"v1-group-jid":       "/v1/sessions/demo_session/chats/120363" + phone + "-1699@g.us/messages",
		"v1-lid":             "/v1/sessions/demo_session/chats/" + phone + ":71@lid/messages",
		"v1-unmatched":       "/v1/nothing/+55%2011%2098765-4321",
		"api-messages-jid":   "/api/messages/demo_session/" + phone + "@s.whatsapp.net",
		"api-contact-phone":  "/api/contacts/demo_session/info/" + phone,
		"api-contact-jid":    "/api/contacts/demo_session/info/" + phone + "%40s.whatsapp.net",
		"api-unmatched":      "/api/unknown/" + phone + "@s.whatsapp.net",
		"fullwidth-digits":   "/v1/sessions/demo_session/chats/%EF%BC%95%EF%BC%95%EF%BC%91%EF%BC%91@s.whatsapp.net/messages",
		"phone-outside-path": "/nowhere/" + phone,
	}
	for id, p := range paths {
		e.gw.request(t, http.MethodGet, p, nil, map[string]string{"X-Request-ID": "accesslog-" + id})
	}

	logs := e.gw.logs.String()
	for _, leak := range []string{phone, "987654321", "98765-4321", "\uff15\uff15\uff11\uff11"} {
		if strings.Contains(logs, leak) {
			t.Errorf("the log holds %q", leak)
		}
	}
	seen := map[string]bool{}
	for line := range strings.SplitSeq(logs, "\n") {
		var l struct{ Msg, RequestID, Route, Path string }
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "request" || !strings.HasPrefix(l.RequestID, "accesslog-") {
			continue
		}
		id := strings.TrimPrefix(l.RequestID, "accesslog-")
		seen[id] = true
		if strings.ContainsFunc(strings.TrimPrefix(l.Path, "/v1/"), unicode.IsDigit) || strings.Contains(l.Path, "whatsapp.net") && !strings.Contains(l.Path, "/*@s.whatsapp.net") {
			t.Errorf("%s: access log path %q holds the number or the JID's user", id, l.Path)
		}
		if l.Route == "" || strings.Contains(l.Route, "@") || strings.Contains(l.Route, "98765") {
			t.Errorf("%s: route %q", id, l.Route)
		}
	}
	for id := range paths {
		if !seen[id] {
			t.Errorf("%s: no access-log line", id)
		}
	}
	// The shape of the path is kept, for the operator reading the log.
	if !strings.Contains(logs, `"path":"/v1/sessions/demo_session/chats/*@s.whatsapp.net/messages"`) ||
		!strings.Contains(logs, `"route":"/v1/sessions/:sessionId/chats/:chatId/messages"`) {
		t.Errorf("the access log lost the route or the masked path:\n%s", logs)
	}
}
