package webhooks

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// ErrInvalid is matched (errors.Is) by every *InvalidError: the delivery is malformed.
var ErrInvalid = errors.New("webhooks: invalid delivery")

// InvalidError says which part of a delivery is malformed; it is answered 400 naming Field.
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string { return "webhooks: invalid " + e.Field + ": " + e.Message }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, msg string) error { return &InvalidError{Field: field, Message: msg} }

// Parsed is a delivery read into the event schema.
type Parsed struct {
	// Event is the normalised event; its Type is empty when Ignored.
	Event Event
	// RawEvent is the event name as the upstream sent it.
	RawEvent string
	// Ignored: the event name is none the gateway knows (it is acknowledged and dropped).
	Ignored bool
	// Identity is what makes the event unique (its dedupe key and the source of Event.ID), made of
	// signed content only: the session and whatsappMessageId for messages (and the ack level for
	// acks), else the event type, session and a hash of the body. A delivery re-sent with another
	// X-Webhook-Timestamp is therefore the same event.
	Identity string
	// SessionFromHeader: the body names no session, and the session id is X-Webhook-Session's,
	// which the signature does not cover. Only a session event may be read so (see Parse).
	SessionFromHeader bool
}

// sessionIDPattern is a valid string session id: 3 to 100 letters, digits, _ or -.
var sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{3,100}$`)

// ValidSessionID reports whether id is a well-formed string session id.
func ValidSessionID(id string) bool { return sessionIDPattern.MatchString(id) }

// Parse reads a webhook body, in either payload shape of the upstream, into an Event.
//
// Shapes: the current one, {"event": "message.received", "data": {"sessionId", "message": {...}}},
// and the older one, {"event": "message", "sessionId", "data": {"id": {"_serialized"}, "body",
// "from": "...@c.us", "fromMe", "hasMedia", "timestamp"}, "timestamp"}.
//
// The signature covers the body only, so the headers decide nothing the body says:
//   - The event name is the body's; headerEvent (X-Webhook-Event) is read only when the body has
//     none, and may then name only a session event.
//   - The session id is the body's top-level sessionId, else data.sessionId. headerSession
//     (X-Webhook-Session), when given, must be a valid id equal to it: a header that disagrees is
//     refused (an *InvalidError on X-Webhook-Session). When the body names no session the
//     header's is taken for a session event only (SessionFromHeader): a session event is a hint
//     that the gateway confirms with the upstream before it does anything (see Service.Receive),
//     so the header can at most make it read a session's status. Any other event without a
//     session in its body is refused, since the header would decide which session's stream
//     carries a customer's message.
//
// sentAt is the delivery's X-Webhook-Timestamp, checked against the clock by the caller; it
// becomes the event's OccurredAt and is no part of its identity. Unknown event names give Ignored.
func Parse(headerEvent, headerSession string, sentAt time.Time, body []byte) (Parsed, error) {
	d, err := readDelivery(body)
	if err != nil {
		return Parsed{}, err
	}
	name, nameFromHeader, err := eventName(d.top, headerEvent)
	if err != nil {
		return Parsed{}, err
	}
	p := Parsed{RawEvent: name}
	typ := eventType(strings.ToLower(name), d.data, d.msg)
	if typ == "" {
		p.Ignored = true
		return p, nil
	}
	sid, fromHeader, err := signedSession(typ, nameFromHeader, headerSession, d)
	if err != nil {
		return Parsed{}, err
	}
	p.SessionFromHeader = fromHeader
	ev := Event{Type: typ, SessionID: sid, OccurredAt: sentAt.UTC(), Source: SourceWebhook}
	identity := d.fillData(&ev)
	if identity == "" {
		identity = rawIdentity(typ, sid, body)
	}
	ev.ID = eventID(identity)
	p.Event, p.Identity = ev, identity
	return p, nil
}

// delivery is a webhook body read as JSON: its top level, its data and the message in it.
type delivery struct {
	top, data object
	// msg is data.message, or data itself in the older shape (msgIsObj false).
	msg      object
	msgIsObj bool
}

// readDelivery reads the body: a JSON object whose data, when present and not null, is an object.
func readDelivery(body []byte) (delivery, error) {
	var d delivery
	if err := json.Unmarshal(body, &d.top); err != nil || d.top == nil {
		return delivery{}, invalid("body", "must be a JSON object")
	}
	var ok bool
	if d.data, ok = d.top.obj("data"); !ok {
		if raw, present := d.top["data"]; present && !isNull(raw) {
			return delivery{}, invalid("data", "must be a JSON object")
		}
		d.data = object{}
	}
	if d.msg, d.msgIsObj = d.data.obj("message"); !d.msgIsObj {
		d.msg = d.data // the older shape: data is the message itself
	}
	return d, nil
}

// eventName is the body's event name, else X-Webhook-Event's (fromHeader), clipped to 100 bytes.
func eventName(top object, header string) (name string, fromHeader bool, err error) {
	name = top.str("event")
	fromHeader = name == ""
	if fromHeader {
		name = strings.TrimSpace(header)
	}
	if name == "" {
		return "", false, invalid("event", "missing: neither the body's event nor X-Webhook-Event names the event")
	}
	return clip.Bytes(name, 100, ""), fromHeader, nil
}

// signedSession finds the session id (sessionIDOf) and refuses an event of type typ other than a
// session event whose name or session only the unsigned headers give.
func signedSession(typ string, nameFromHeader bool, headerSession string, d delivery) (sid string, fromHeader bool, err error) {
	if nameFromHeader && !isSessionType(typ) {
		return "", false, invalid("event", "missing from the signed body: X-Webhook-Event alone may name only a session event")
	}
	sid, fromHeader, err = sessionIDOf(headerSession, d.top, d.data)
	if err != nil {
		return "", false, err
	}
	if fromHeader && !isSessionType(typ) {
		return "", false, invalid("sessionId", "missing from the signed body: X-Webhook-Session alone may name only the session of a session event")
	}
	return sid, fromHeader, nil
}

// fillData reads the event's data for its type into ev.Data and returns the identity of a message
// or an ack ("" for other events, and for a message without an id).
func (d delivery) fillData(ev *Event) (identity string) {
	typ, sid := ev.Type, ev.SessionID
	switch typ {
	case TypeMessageReceived, TypeMessageSent:
		m := parseMessage(typ, d.msg, msgRaw(d.data, d.msg, d.msgIsObj))
		ev.Data.Message = &m
		if m.ID != "" {
			identity = typ + "|" + sid + "|" + m.ID
		}
	case TypeMessageAck:
		m := parseMessage(typ, d.msg, msgRaw(d.data, d.msg, d.msgIsObj))
		level := ackLevel(d.msg, d.data)
		ack := Ack{MessageID: m.ID, ChatID: m.ChatID, Level: level, Status: ackStatus(level)}
		m.Status = ack.Status
		ev.Data.Message, ev.Data.Ack = &m, &ack
		if m.ID != "" {
			identity = typ + "|" + sid + "|" + m.ID + "|" + strconv.Itoa(level)
		}
	case TypeContactCreated, TypeContactUpdated:
		c := parseContact(d.data)
		ev.Data.Contact = &c
	case TypeConversationCreated, TypeConversationUpdated:
		c := parseChat(d.data)
		ev.Data.Chat = &c
	default: // session.*
		ev.Data.Session = parseSession(typ, d.data)
	}
	return identity
}

// rawIdentity is the identity of an event without a message id: its type, session and a hash of
// the signed body.
func rawIdentity(typ, sid string, body []byte) string {
	sum := sha256.Sum256(body)
	return "raw|" + typ + "|" + sid + "|" + hex.EncodeToString(sum[:])
}

// eventType maps an upstream event name (lower case) to an event type, "" when unknown. The
// older names are read through their data: message (received or sent by fromMe), message_status
// (an ack) and session_status (by its status).
func eventType(name string, data, msg object) string {
	switch name {
	case TypeMessageReceived, TypeMessageSent, TypeMessageAck, TypeSessionConnected, TypeSessionDisconnected,
		TypeSessionQR, TypeContactCreated, TypeContactUpdated, TypeConversationCreated, TypeConversationUpdated:
		return name
	case "message":
		if msg.boolean("fromMe") {
			return TypeMessageSent
		}
		return TypeMessageReceived
	case "message_status", "message_ack":
		return TypeMessageAck
	case "session_status":
		return sessionEventType(SessionStatus(data.str("status")))
	}
	return ""
}

// sessionIDOf finds the session id: the body's top level, else its data, each valid when present.
// The header, when present, must be valid and equal to the body's; it is the answer only when the
// body names no session (fromHeader).
func sessionIDOf(header string, top, data object) (sid string, fromHeader bool, err error) {
	const hdr = "X-Webhook-Session"
	header = strings.TrimSpace(header)
	if header != "" && !ValidSessionID(header) {
		return "", false, invalid(hdr, "must be 3 to 100 characters of A-Z, a-z, 0-9, _ and -")
	}
	for _, c := range []struct{ field, value string }{
		{"sessionId", top.str("sessionId")},
		{"data.sessionId", data.str("sessionId")},
	} {
		switch {
		case c.value == "":
			continue
		case !ValidSessionID(c.value):
			return "", false, invalid(c.field, "must be 3 to 100 characters of A-Z, a-z, 0-9, _ and -")
		case header != "" && header != c.value:
			return "", false, invalid(hdr, "does not match the session id of the signed body")
		}
		return c.value, false, nil
	}
	if header != "" {
		return header, true, nil
	}
	return "", false, invalid("sessionId", "missing: the session id is in none of sessionId, data.sessionId, X-Webhook-Session")
}

// msgRaw returns the JSON of the message object (data.message, or data in the older shape).
func msgRaw(data, msg object, isMsgObj bool) json.RawMessage {
	if isMsgObj {
		return data["message"]
	}
	b, _ := json.Marshal(msg)
	return b
}

// parseMessage reads a message in either shape into the sync schema. The older shape's id is
// WhatsApp's serialized id "<fromMe>_<chat JID>_<message id>", which gives the chat and the id.
func parseMessage(typ string, msg object, raw json.RawMessage) crm.Message {
	var um upstream.Message
	_ = json.Unmarshal(raw, &um) // tolerant: unreadable fields stay empty
	if um.WhatsappMessageID == "" {
		um.WhatsappMessageID = msg.str("messageId", "msgId")
	}
	if um.WhatsappMessageID == "" && um.ID != "" {
		// No whatsappMessageId: id is WhatsApp's own (older shape), not the upstream's database id.
		fromMe, chat, id, ok := splitSerialized(um.ID)
		if ok {
			um.WhatsappMessageID = id
			if um.ChatID == "" {
				um.ChatID = chat
			}
			if _, given := msg["fromMe"]; !given {
				um.FromMe = fromMe
			}
		} else {
			um.WhatsappMessageID = um.ID
		}
		um.ID = ""
	}
	if typ == TypeMessageSent {
		um.FromMe = true
	}
	if um.ChatID == "" {
		if um.FromMe {
			um.ChatID = um.To
		} else {
			um.ChatID = um.From
		}
	}
	if um.Type == "" && (msg.boolean("hasMedia") || msg.boolean("has_attachment")) {
		um.Type = "media"
	}
	return crm.NormalizeMessage(um.ChatID, um)
}

// splitSerialized reads "<true|false>_<chat JID>_<message id>[_<participant>]".
func splitSerialized(s string) (fromMe bool, chat, id string, ok bool) {
	parts := strings.Split(s, "_")
	if len(parts) < 3 || (parts[0] != "true" && parts[0] != "false") || !strings.Contains(parts[1], "@") || parts[2] == "" {
		return false, "", "", false
	}
	return parts[0] == "true", parts[1], parts[2], true
}

// ackLevel reads the ack of a message.ack: a number (0 pending, 1 server, 2 delivered, 3 read,
// 4 played, -1 error) or a word, in the message or in data; 0 when absent.
func ackLevel(msg, data object) int {
	for _, o := range []object{msg, data} {
		for _, k := range []string{"ack", "status"} {
			v := o.str(k)
			if v == "" {
				continue
			}
			if n, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(n) {
				return min(max(int(n), -1), 4)
			}
			switch strings.ToLower(v) {
			case "error", "failed":
				return -1
			case "pending", "clock":
				return 0
			case "server", "sent", "server_ack":
				return 1
			case "delivered", "delivery", "delivery_ack":
				return 2
			case "read":
				return 3
			case "played":
				return 4
			}
		}
	}
	return 0
}

func ackStatus(level int) string {
	switch level {
	case -1:
		return "error"
	case 1:
		return "server"
	case 2:
		return "delivered"
	case 3:
		return "read"
	case 4:
		return "played"
	}
	return "pending"
}

// parseContact reads data.contact (or data) into the sync schema.
func parseContact(data object) crm.Contact {
	o, ok := data.obj("contact")
	if !ok {
		o = data
	}
	raw, _ := json.Marshal(o)
	var c upstream.Contact
	_ = json.Unmarshal(raw, &c)
	if c.ID == "" {
		c.ID = o.str("jid", "contactId")
	}
	return crm.NormalizeContact(c)
}

// parseChat reads data.conversation, data.chat (or data) into the sync schema.
func parseChat(data object) crm.Chat {
	o, ok := data.obj("conversation")
	if !ok {
		if o, ok = data.obj("chat"); !ok {
			o = data
		}
	}
	raw, _ := json.Marshal(o)
	var c upstream.Chat
	_ = json.Unmarshal(raw, &c)
	return crm.NormalizeChat(c)
}

// parseSession reads a session event's data.
func parseSession(typ string, data object) *SessionChange {
	sc := &SessionChange{Reason: clip.Bytes(data.str("reason"), 200, "")}
	switch typ {
	case TypeSessionConnected:
		sc.Status = StatusConnected
	case TypeSessionDisconnected:
		sc.Status = StatusDisconnected
	case TypeSessionQR:
		sc.Status = StatusQRPending
	default:
		sc.Status = SessionStatus(data.str("status"))
	}
	sc.PhoneNumber = normalizePhone(data.str("phoneNumber", "phone"))
	if typ == TypeSessionQR {
		sc.QR = &EventQR{Available: true}
		if t, ok := parseTime(data.str("expiresAt", "qrCodeExpiresAt")); ok {
			sc.QR.ExpiresAt = &t
		}
	}
	return sc
}

// parseTime reads RFC 3339, or Unix seconds (milliseconds when too large to be seconds).
func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		if n > 1e11 {
			return time.UnixMilli(n).UTC(), true
		}
		return time.Unix(n, 0).UTC(), true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	return time.Time{}, false
}

// object is a JSON object read field by field, tolerant of the types the upstream varies.
type object map[string]json.RawMessage

// obj returns member k when it is a JSON object.
func (o object) obj(k string) (object, bool) {
	raw, ok := o[k]
	if !ok {
		return nil, false
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var out object
	if json.Unmarshal(raw, &out) != nil || out == nil {
		return nil, false
	}
	return out, true
}

// str returns the first of keys present as a non-empty string, number or boolean (as text), or an
// id object's _serialized.
func (o object) str(keys ...string) string {
	for _, k := range keys {
		if s := flexString(o[k]); s != "" {
			return s
		}
	}
	return ""
}

// boolean reads true, 1, "true" or "1" as true.
func (o object) boolean(k string) bool {
	s := strings.ToLower(flexString(o[k]))
	return s == "true" || s == "1"
}

func flexString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return strings.TrimSpace(s)
	case '{':
		var o struct {
			Serialized string `json:"_serialized"`
		}
		if json.Unmarshal(raw, &o) != nil {
			return ""
		}
		return strings.TrimSpace(o.Serialized)
	case '[', 'n':
		return ""
	}
	return string(raw)
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }
