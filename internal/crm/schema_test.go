package crm_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

func TestNormalizeItems(t *testing.T) {
	c := crm.NormalizeContact(upstream.Contact{ID: "34657032985:2@s.whatsapp.net", Name: " María ", Notify: "Mari", IsWAContact: true})
	if c.ID != "34657032985@s.whatsapp.net" || c.Phone != "34657032985" || c.Type != "person" || c.Name != "María" || c.PushName != "Mari" {
		t.Errorf("contact: %+v", c)
	}
	g := crm.NormalizeContact(upstream.Contact{ID: "120363000000000001@g.us", IsGroup: true})
	if g.Type != "group" || g.Phone != "" || g.IDKind != crm.IDKindGroup {
		t.Errorf("group: %+v", g)
	}
	madrid := time.FixedZone("CET", 3600)
	ch := crm.NormalizeChat(upstream.Chat{ChatID: "987654321098765@lid", Name: "X", MessageCount: 4,
		LastMessage: &upstream.LastMessage{Body: "hola", Timestamp: time.Date(2025, 11, 7, 12, 0, 0, 0, madrid)}})
	if ch.Phone != "" || ch.IDKind != crm.IDKindLID || ch.LastMessageAt == nil || ch.LastMessageAt.Location() != time.UTC ||
		ch.LastMessageAt.Hour() != 11 {
		t.Errorf("chat: %+v", ch)
	}
	m := crm.NormalizeMessage("120363000000000001@g.us", upstream.Message{ID: "77", From: "34600000001@s.whatsapp.net",
		Type: "Document", Body: "factura.pdf", Timestamp: time.Unix(1699332304, 0)})
	if m.ID != "upstream:77" || m.ChatType != "group" || m.FromPhone != "34600000001" || m.Type != "document" ||
		m.Media == nil || m.Media.FileName != "factura.pdf" || m.Timestamp.Format(time.RFC3339) != "2023-11-07T04:45:04Z" {
		t.Errorf("message: %+v", m)
	}
	raw, _ := json.Marshal(m)
	if !strings.Contains(string(raw), `"timestamp":"2023-11-07T04:45:04Z"`) {
		t.Errorf("timestamp not RFC 3339 UTC: %s", raw)
	}
	text := crm.NormalizeMessage("34600000001@s.whatsapp.net", upstream.Message{WhatsappMessageID: "3EB0AA", Body: "hi"})
	if text.ID != "3EB0AA" || text.Type != "text" || text.Media != nil || text.ChatID != "34600000001@s.whatsapp.net" {
		t.Errorf("text message: %+v", text)
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"jobId":"j","items":[]}`)
	// HMAC-SHA256("secret", "1700000000.{...}") computed independently (Python hmac).
	sig := crm.Sign("secret", "1700000000", body)
	if sig != "sha256=901b7c0aa768c5e079f997ad937007d481619f84e7b84e70e08c9b46537c4ddc" {
		t.Fatalf("signature %q", sig)
	}
	if !crm.Verify("secret", "1700000000", body, sig) {
		t.Error("a good signature does not verify")
	}
	for _, bad := range []struct{ secret, ts, body string }{
		{"other", "1700000000", string(body)}, {"secret", "1700000001", string(body)}, {"secret", "1700000000", `{}`},
	} {
		if crm.Verify(bad.secret, bad.ts, []byte(bad.body), sig) {
			t.Errorf("verified with %+v", bad)
		}
	}
}
