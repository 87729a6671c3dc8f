package webhooks

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var sentAt = time.Date(2025, 11, 7, 12, 0, 0, 0, time.UTC)

func TestParseShapes(t *testing.T) {
	tests := []struct {
		name        string
		hdrEvent    string
		hdrSession  string
		body        string
		wantType    string
		wantSession string
		check       func(t *testing.T, ev Event)
	}{
		{
			name: "current message.received",
			body: `{"event": "message.received", "data": {"sessionId": "abc_123", "session_db_id": 93,
				"message": {"whatsappMessageId": "3EB0AAA", "content": "Hola", "chatId": "34657032985@s.whatsapp.net",
				"from": "34657032985@s.whatsapp.net", "to": "abc_123", "timestamp": 1699332304, "type": "text",
				"has_attachment": false, "media": null}}}`,
			wantType: TypeMessageReceived, wantSession: "abc_123",
			check: func(t *testing.T, ev Event) {
				m := ev.Data.Message
				if m == nil || m.ID != "3EB0AAA" || m.Text != "Hola" || m.ChatID != "34657032985@s.whatsapp.net" ||
					m.FromPhone != "34657032985" || m.FromMe || m.Type != "text" || m.Timestamp == nil ||
					m.Timestamp.Unix() != 1699332304 {
					t.Errorf("message = %+v", m)
				}
			},
		},
		{
			name: "legacy message (older shape, @c.us, _serialized id)",
			body: `{"event": "message", "sessionId": "legacy_1", "timestamp": 1699332304000,
				"data": {"id": {"_serialized": "false_34600111222@c.us_3EB0LEGACY"}, "body": "Buenas",
				"from": "34600111222@c.us", "fromMe": false, "hasMedia": false, "timestamp": 1699332300}}`,
			wantType: TypeMessageReceived, wantSession: "legacy_1",
			check: func(t *testing.T, ev Event) {
				m := ev.Data.Message
				if m == nil || m.ID != "3EB0LEGACY" || m.UpstreamID != "" || m.Text != "Buenas" ||
					m.ChatID != "34600111222@s.whatsapp.net" || m.From != "34600111222@s.whatsapp.net" ||
					m.FromPhone != "34600111222" || m.Timestamp == nil || m.Timestamp.Unix() != 1699332300 {
					t.Errorf("message = %+v", m)
				}
			},
		},
		{
			name: "legacy message sent from the phone, with media",
			body: `{"event": "message", "sessionId": "legacy_1",
				"data": {"id": {"_serialized": "true_34600111222@c.us_3EB0MINE"}, "body": "",
				"from": "34999999999@c.us", "to": "34600111222@c.us", "fromMe": true, "hasMedia": true, "timestamp": 1699332300}}`,
			wantType: TypeMessageSent, wantSession: "legacy_1",
			check: func(t *testing.T, ev Event) {
				m := ev.Data.Message
				if m == nil || m.ID != "3EB0MINE" || !m.FromMe || m.ChatID != "34600111222@s.whatsapp.net" ||
					m.Media == nil || m.Type != "media" {
					t.Errorf("message = %+v", m)
				}
			},
		},
		{
			name:     "current message.sent: fromMe even when not said",
			body:     `{"event": "message.sent", "data": {"sessionId": "abc_123", "message": {"whatsappMessageId": "3EB0S", "content": "ok", "chatId": "34600111222@s.whatsapp.net", "to": "34600111222@s.whatsapp.net"}}}`,
			wantType: TypeMessageSent, wantSession: "abc_123",
			check: func(t *testing.T, ev Event) {
				if m := ev.Data.Message; m == nil || !m.FromMe || m.ID != "3EB0S" {
					t.Errorf("message = %+v", m)
				}
			},
		},
		{
			name:     "message.ack with a number",
			body:     `{"event": "message.ack", "data": {"sessionId": "abc_123", "message": {"whatsappMessageId": "3EB0S", "chatId": "34600111222@s.whatsapp.net", "ack": 3}}}`,
			wantType: TypeMessageAck, wantSession: "abc_123",
			check: func(t *testing.T, ev Event) {
				a := ev.Data.Ack
				if a == nil || a.MessageID != "3EB0S" || a.Level != 3 || a.Status != "read" || ev.Data.Message.Status != "read" {
					t.Errorf("ack = %+v", a)
				}
			},
		},
		{
			name:     "legacy message_status",
			body:     `{"event": "message_status", "sessionId": "legacy_1", "data": {"id": {"_serialized": "true_34600111222@c.us_3EB0MINE"}, "ack": 2}}`,
			wantType: TypeMessageAck, wantSession: "legacy_1",
			check: func(t *testing.T, ev Event) {
				a := ev.Data.Ack
				if a == nil || a.MessageID != "3EB0MINE" || a.Level != 2 || a.Status != "delivered" || a.ChatID != "34600111222@s.whatsapp.net" {
					t.Errorf("ack = %+v", a)
				}
			},
		},
		{
			name:     "session.connected",
			body:     `{"event": "session.connected", "data": {"sessionId": "abc_123", "phoneNumber": "34657032985"}}`,
			wantType: TypeSessionConnected, wantSession: "abc_123",
			check: func(t *testing.T, ev Event) {
				if s := ev.Data.Session; s == nil || s.Status != StatusConnected || s.PhoneNumber != "34657032985" {
					t.Errorf("session = %+v", s)
				}
			},
		},
		{
			name:     "session.disconnected with a reason",
			body:     `{"event": "session.disconnected", "data": {"sessionId": "abc_123", "reason": "logout"}}`,
			wantType: TypeSessionDisconnected, wantSession: "abc_123",
			check: func(t *testing.T, ev Event) {
				if s := ev.Data.Session; s == nil || s.Status != StatusDisconnected || s.Reason != "logout" {
					t.Errorf("session = %+v", s)
				}
			},
		},
		{
			name:     "session.qr: the code is not forwarded, its expiry is",
			body:     `{"event": "session.qr", "data": {"sessionId": "abc_123", "qrCode": "data:image/png;base64,AAAA", "expiresAt": "2025-11-07T12:01:00.000Z"}}`,
			wantType: TypeSessionQR, wantSession: "abc_123",
			check: func(t *testing.T, ev Event) {
				s := ev.Data.Session
				if s == nil || s.Status != StatusQRPending || s.QR == nil || !s.QR.Available || s.QR.ExpiresAt == nil ||
					!s.QR.ExpiresAt.Equal(sentAt.Add(time.Minute)) {
					t.Errorf("session = %+v", s)
				}
			},
		},
		{
			name:     "legacy session_status connected",
			body:     `{"event": "session_status", "sessionId": "legacy_1", "data": {"sessionId": "legacy_1", "status": "connected"}, "timestamp": 1}`,
			wantType: TypeSessionConnected, wantSession: "legacy_1",
		},
		{
			name:     "legacy session_status qr",
			body:     `{"event": "session_status", "sessionId": "legacy_1", "data": {"status": "qr"}}`,
			wantType: TypeSessionQR, wantSession: "legacy_1",
		},
		{
			name:     "legacy session_status Qr_Code spelling",
			body:     `{"event": "session_status", "sessionId": "legacy_1", "data": {"status": "Qr_Code"}}`,
			wantType: TypeSessionQR, wantSession: "legacy_1",
		},
		{
			name:     "legacy session_status connecting is session.updated",
			body:     `{"event": "session_status", "sessionId": "legacy_1", "data": {"status": "connecting"}}`,
			wantType: TypeSessionUpdated, wantSession: "legacy_1",
			check: func(t *testing.T, ev Event) {
				if s := ev.Data.Session; s == nil || s.Status != StatusConnecting {
					t.Errorf("session = %+v", s)
				}
			},
		},
		{
			name:     "contact.updated in the sync schema",
			body:     `{"event": "contact.updated", "data": {"sessionId": "abc_123", "contact": {"id": "34600111222:5@s.whatsapp.net", "name": " María ", "notify": "Mari", "isWAContact": true}}}`,
			wantType: TypeContactUpdated, wantSession: "abc_123",
			check: func(t *testing.T, ev Event) {
				c := ev.Data.Contact
				if c == nil || c.ID != "34600111222@s.whatsapp.net" || c.Phone != "34600111222" || c.Name != "María" ||
					c.PushName != "Mari" || !c.IsWhatsApp || c.Type != "person" {
					t.Errorf("contact = %+v", c)
				}
			},
		},
		{
			name:     "contact.created with a @lid id",
			body:     `{"event": "contact.created", "data": {"sessionId": "abc_123", "id": "987654321@lid", "name": "X"}}`,
			wantType: TypeContactCreated, wantSession: "abc_123",
			check: func(t *testing.T, ev Event) {
				if c := ev.Data.Contact; c == nil || c.ID != "987654321@lid" || c.IDKind != "lid" || c.Phone != "" {
					t.Errorf("contact = %+v", c)
				}
			},
		},
		{
			name:     "conversation.updated in the sync schema",
			body:     `{"event": "conversation.updated", "data": {"sessionId": "abc_123", "conversation": {"chatId": "1203630@g.us", "name": "Equipo", "isGroup": true, "unreadCount": 2, "messageCount": 7}}}`,
			wantType: TypeConversationUpdated, wantSession: "abc_123",
			check: func(t *testing.T, ev Event) {
				c := ev.Data.Chat
				if c == nil || c.ID != "1203630@g.us" || c.Type != "group" || c.UnreadCount != 2 || c.MessageCount != 7 {
					t.Errorf("chat = %+v", c)
				}
			},
		},
		{
			name:     "event name from the header when the body has none",
			hdrEvent: "session.disconnected",
			body:     `{"data": {"sessionId": "abc_123"}}`,
			wantType: TypeSessionDisconnected, wantSession: "abc_123",
		},
		{
			name:     "the body's event name wins over the header (it is signed)",
			hdrEvent: "session.connected",
			body:     `{"event": "session.disconnected", "data": {"sessionId": "abc_123"}}`,
			wantType: TypeSessionDisconnected, wantSession: "abc_123",
		},
		{
			name:       "session id: a header that agrees with the signed body",
			hdrSession: "from_top",
			body:       `{"event": "session.connected", "sessionId": "from_top", "data": {"sessionId": "from_data"}}`,
			wantType:   TypeSessionConnected, wantSession: "from_top",
		},
		{
			name:       "session id: the header alone, for a session event",
			hdrSession: "from_header",
			body:       `{"event": "session.disconnected", "data": {"reason": "logout"}}`,
			wantType:   TypeSessionDisconnected, wantSession: "from_header",
			check: func(t *testing.T, ev Event) {
				if ev.Data.Session == nil || ev.Data.Session.Reason != "logout" {
					t.Errorf("%+v", ev.Data.Session)
				}
			},
		},
		{
			name:     "session id: the top level before data",
			body:     `{"event": "session.connected", "sessionId": "from_top", "data": {"sessionId": "from_data"}}`,
			wantType: TypeSessionConnected, wantSession: "from_top",
		},
		{
			name:     "session id: data last",
			body:     `{"event": "session.connected", "data": {"sessionId": "from_data"}}`,
			wantType: TypeSessionConnected, wantSession: "from_data",
		},
		{
			name:     "event names are compared case-insensitively",
			body:     `{"event": "Session.Connected", "data": {"sessionId": "abc_123"}}`,
			wantType: TypeSessionConnected, wantSession: "abc_123",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.hdrEvent, tt.hdrSession, sentAt, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if p.Ignored {
				t.Fatal("ignored")
			}
			ev := p.Event
			if ev.Type != tt.wantType || ev.SessionID != tt.wantSession {
				t.Fatalf("type %q session %q, want %q %q", ev.Type, ev.SessionID, tt.wantType, tt.wantSession)
			}
			if !ValidEventID(ev.ID) || ev.Source != SourceWebhook || !ev.OccurredAt.Equal(sentAt) {
				t.Errorf("id %q source %q occurredAt %s", ev.ID, ev.Source, ev.OccurredAt)
			}
			if tt.check != nil {
				tt.check(t, ev)
			}
		})
	}
}

func TestParseRefusals(t *testing.T) {
	tests := []struct {
		name, hdrSession, body, field string
	}{
		{"not JSON", "", `{"event": "message.received"`, "body"},
		{"a JSON array", "", `[1, 2]`, "body"},
		{"JSON null", "", `null`, "body"},
		{"data not an object", "", `{"event": "session.connected", "sessionId": "abc_123", "data": "x"}`, "data"},
		{"no event name anywhere", "", `{"data": {"sessionId": "abc_123"}}`, "event"},
		{"no session id anywhere", "", `{"event": "session.connected", "data": {}}`, "sessionId"},
		{"a malformed header session id is not skipped", "../../etc", `{"event": "session.connected", "data": {"sessionId": "abc_123"}}`, "X-Webhook-Session"},
		{"a header that disagrees with the top level", "other_session", `{"event": "session.connected", "sessionId": "abc_123"}`, "X-Webhook-Session"},
		{"a header that disagrees with data", "other_session", `{"event": "message.received", "data": {"sessionId": "abc_123", "message": {"whatsappMessageId": "X"}}}`, "X-Webhook-Session"},
		{"a message whose session only the header names", "abc_123", `{"event": "message.received", "data": {"message": {"whatsappMessageId": "X"}}}`, "sessionId"},
		{"a message whose type only the header names", "", `{"data": {"sessionId": "abc_123", "message": {"whatsappMessageId": "X"}}}`, "event"},
		{"a contact whose session only the header names", "abc_123", `{"event": "contact.updated", "data": {"contact": {"id": "1@c.us"}}}`, "sessionId"},
		{"a too short session id", "", `{"event": "session.connected", "sessionId": "ab"}`, "sessionId"},
		{"a malformed data session id", "", `{"event": "session.connected", "data": {"sessionId": "a b c"}}`, "data.sessionId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdrEvent := ""
			if strings.Contains(tt.name, "only the header names") && !strings.Contains(tt.body, `"event"`) {
				hdrEvent = "message.received"
			}
			_, err := Parse(hdrEvent, tt.hdrSession, sentAt, []byte(tt.body))
			var inv *InvalidError
			if !errors.As(err, &inv) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want an *InvalidError", err)
			}
			if inv.Field != tt.field {
				t.Errorf("field %q, want %q", inv.Field, tt.field)
			}
		})
	}
}

func TestParseUnknownEventIsIgnored(t *testing.T) {
	p, err := Parse("", "", sentAt, []byte(`{"event": "group.joined", "data": {"sessionId": "abc_123"}}`))
	if err != nil || !p.Ignored || p.RawEvent != "group.joined" || p.Event.Type != "" {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestParseIdentity(t *testing.T) {
	msg := func(id, content string, ts time.Time) Event {
		p, err := Parse("", "", ts, []byte(`{"event": "message.received", "data": {"sessionId": "abc_123",
			"message": {"whatsappMessageId": "`+id+`", "content": "`+content+`", "chatId": "1@s.whatsapp.net"}}}`))
		if err != nil {
			t.Fatal(err)
		}
		return p.Event
	}
	// A message is the same event whatever the delivery: the whatsappMessageId decides.
	if a, b := msg("3EB0X", "a", sentAt), msg("3EB0X", "b", sentAt.Add(time.Second)); a.ID != b.ID {
		t.Error("the same whatsappMessageId gave two event ids")
	}
	if a, b := msg("3EB0X", "a", sentAt), msg("3EB0Y", "a", sentAt); a.ID == b.ID {
		t.Error("two whatsappMessageIds gave one event id")
	}
	// Other events: signed content only. The same body is one event whatever its timestamp; another
	// body another.
	other := func(ts time.Time, body string) string {
		p, err := Parse("", "", ts, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return p.Event.ID
	}
	contact := `{"event": "contact.updated", "data": {"sessionId": "abc_123", "contact": {"id": "34600111222@c.us", "name": "A"}}}`
	if other(sentAt, contact) != other(sentAt.Add(time.Minute), contact) {
		t.Error("the timestamp, which the signature does not cover, changes an event's identity")
	}
	if other(sentAt, contact) == other(sentAt, strings.Replace(contact, `"A"`, `"B"`, 1)) {
		t.Error("two contact bodies gave one event id")
	}
	// A session header that agrees changes nothing either.
	p, err := Parse("", "abc_123", sentAt.Add(time.Hour), []byte(contact))
	if err != nil || p.Event.ID != other(sentAt, contact) {
		t.Errorf("%v: identity %s", err, p.Event.ID)
	}
	// An ack of another level is another event.
	ack := func(level string) string {
		p, err := Parse("", "", sentAt, []byte(`{"event": "message.ack", "data": {"sessionId": "abc_123", "message": {"whatsappMessageId": "3EB0X", "ack": `+level+`}}}`))
		if err != nil {
			t.Fatal(err)
		}
		return p.Event.ID
	}
	if ack("2") == ack("3") || ack("3") != ack("3") {
		t.Error("ack identity does not follow the level")
	}
}

func TestSessionStatusWords(t *testing.T) {
	for in, want := range map[string]string{
		"connected": StatusConnected, "CONNECTED": StatusConnected, "open": StatusConnected,
		"Qr_Code": StatusQRPending, "qr": StatusQRPending, "pending": StatusConnecting, "connecting": StatusConnecting,
		"disconnected": StatusDisconnected, "close": StatusDisconnected, "rate_limited": StatusRateLimited,
		"": StatusError, "weird": StatusError,
	} {
		if got := SessionStatus(in); got != want {
			t.Errorf("SessionStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"event":"session.connected"}`)
	good := signBody("s3cret-s3cret-s3cret", body)
	if !VerifySignature("s3cret-s3cret-s3cret", body, good) {
		t.Fatal("valid signature refused")
	}
	for name, sig := range map[string]string{
		"wrong secret":  signBody("other", body),
		"empty":         "",
		"not hex":       "sha256=zz",
		"truncated":     good[:len(good)-2],
		"other algo":    "sha1=" + good[7:],
		"tampered body": signBody("s3cret-s3cret-s3cret", append(body, ' ')),
	} {
		if VerifySignature("s3cret-s3cret-s3cret", body, sig) {
			t.Errorf("%s: accepted", name)
		}
	}
	if !VerifySignature("s3cret-s3cret-s3cret", body, good[7:]) {
		t.Error("a bare hex signature is refused")
	}
}

// FuzzParse: any body gives an event of a known type with a valid session id and a well-formed
// id, an ignored event, or an *InvalidError with nothing parsed beside it; never a panic. What the
// signature does not cover decides nothing the signed body says: the event's identity and id do
// not change with X-Webhook-Timestamp, nor with X-Webhook-Session whenever the body names the
// session (a header that disagrees with the body is refused); only a session event may take its
// session from the header; and the same delivery always parses the same way.
// Run: go test ./internal/webhooks -run '^$' -fuzz '^FuzzParse$' -fuzztime 2m -parallel 1
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"event": "message.received", "data": {"sessionId": "abc_123", "message": {"whatsappMessageId": "X", "content": "hi"}}}`,
		`{"event": "message", "sessionId": "legacy_1", "data": {"id": {"_serialized": "false_1@c.us_X"}, "body": "b"}}`,
		`{"event": "session_status", "sessionId": "s_1", "data": {"status": "qr"}}`,
		`{"event": "message_status", "sessionId": "s_1", "data": {"id": "x", "ack": "read"}}`,
		`{"event": "contact.updated", "data": {"sessionId": "abc", "contact": {"id": 5}}}`,
		`{"event": "conversation.created", "data": {"sessionId": "abc", "chat": []}}`,
		`{"event": "message.received", "sessionId": "abc_123", "sessionId": "other_1", "data": {"message": {"whatsappMessageId": "X"}}}`,
		`{"event": "message.received", "SessionId": "abc_123", "data": {"sessionId": "other_1", "message": {"id": 1}}}`,
		`{"event": "message.ack", "data": {"sessionId": "abc_123", "message": {"whatsappMessageId": "X", "ack": 1e400}}}`,
		`{"event": "session.connected", "data": {"phoneNumber": "+34600000000"}}`,
		`{}`, `[]`, `"x"`, `{"data": null}`, `{"event": "message.received"}`, "ï»¿{}",
	} {
		f.Add("", "", s)
	}
	f.Add("session.qr", "hdr_session", `{"data": {"expiresAt": 1e400}}`)
	f.Add("message.received", "hdr_session", `{"data": {"message": {"whatsappMessageId": "X"}}}`)
	f.Add("", "other_1", `{"event": "message.received", "data": {"sessionId": "abc_123", "message": {"whatsappMessageId": "X"}}}`)
	f.Add("", "abc_123", `{"event": "message.received", "data": {"sessionId": "abc_123", "message": {"whatsappMessageId": "X"}}}`)
	f.Fuzz(func(t *testing.T, hdrEvent, hdrSession, body string) {
		p, err := Parse(hdrEvent, hdrSession, sentAt, []byte(body))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			if !reflect.DeepEqual(p, Parsed{}) {
				t.Fatalf("a refusal came with a parsed delivery %+v", p)
			}
			return
		}
		again, err := Parse(hdrEvent, hdrSession, sentAt.Add(time.Hour), []byte(body))
		if err != nil || again.Identity != p.Identity || again.Event.ID != p.Event.ID || again.Ignored != p.Ignored {
			t.Fatalf("the same delivery an hour later parses as %+v (%v), not %+v", again, err, p)
		}
		if p.Ignored {
			return
		}
		if !slices.Contains(Types, p.Event.Type) || !ValidSessionID(p.Event.SessionID) || !ValidEventID(p.Event.ID) {
			t.Fatalf("bad event %+v", p.Event)
		}
		if p.SessionFromHeader {
			if !isSessionType(p.Event.Type) || p.Event.SessionID != strings.TrimSpace(hdrSession) {
				t.Fatalf("a %s event took its session %q from the header", p.Event.Type, p.Event.SessionID)
			}
		} else if strings.TrimSpace(hdrSession) != "" {
			noHeader, err := Parse(hdrEvent, "", sentAt, []byte(body))
			if err != nil || noHeader.Event.SessionID != p.Event.SessionID || noHeader.Identity != p.Identity {
				t.Fatalf("X-Webhook-Session %q changed the delivery: %+v (%v), not %+v", hdrSession, noHeader, err, p)
			}
		}
		if _, err := encodeEvent(p.Event); err != nil {
			t.Fatal(err)
		}
	})
}
