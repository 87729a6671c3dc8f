package crm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/jid"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// Kinds of WhatsApp ids (IDKind of the normalised items), as jid.Normalize reports them.
const (
	// IDKindPhone is a phone JID (<msisdn>@s.whatsapp.net, or the older @c.us): the phone is known.
	IDKindPhone = jid.KindPhone
	// IDKindLID is a linked id (<n>@lid) that hides the phone number: it is kept as the id only.
	IDKindLID = jid.KindLID
	// IDKindGroup is a group JID (@g.us): no phone.
	IDKindGroup = jid.KindGroup
	// IDKindOther is anything else (broadcast lists, newsletters, unknown servers).
	IDKindOther = jid.KindOther
)

// Contact is the normalised schema of a synced contact.
//
// ID is the contact's JID with the device part removed and @c.us rewritten as @s.whatsapp.net, so
// it stays the same across upstream versions; the CRM upserts on it. Phone is the number derived
// from a phone JID (digits, country code first, no "+"); @lid and group ids have none.
type Contact struct {
	// ID is the stable JID: <phone>@s.whatsapp.net, <n>@lid or <group>@g.us, without device part.
	ID string `json:"id" example:"34657032985@s.whatsapp.net"`
	// IDKind says what the id is: a phone JID, a linked id hiding the number, a group or other.
	IDKind string `json:"idKind" enums:"phone,lid,group,other" example:"phone"`
	// Type is person or group.
	Type string `json:"type" enums:"person,group" example:"person"`
	// Phone is read from a phone JID (digits, country code first, no "+"); absent otherwise.
	Phone string `json:"phone,omitempty" example:"34657032985"`
	// Name is the address-book name; empty when the contact is not saved.
	Name string `json:"name" example:"María Peña"`
	// PushName is the name the contact set for themselves (WhatsApp's notify name).
	PushName string `json:"pushName" example:"María"`
	// VerifiedName is the verified business name; empty for people and unverified businesses.
	VerifiedName string `json:"verifiedName" example:""`
	// ImageURL is the profile picture when the upstream has one (it expires); empty otherwise.
	ImageURL string `json:"imageUrl" example:"https://pps.whatsapp.net/v/t61.24694-24/123456_n.jpg"`
	// IsWhatsApp says the number is on WhatsApp (the upstream's isWAContact).
	IsWhatsApp bool `json:"isWhatsApp" example:"true"`
}

// Chat is the normalised schema of a synced chat. LastMessageAt is RFC 3339 UTC, absent when the
// chat has no message.
type Chat struct {
	// ID is the stable JID of the other party or the group, without device part; use it in the
	// chat messages route.
	ID string `json:"id" example:"34657032985@s.whatsapp.net"`
	// IDKind says what the id is: a phone JID, a linked id hiding the number, a group or other.
	IDKind string `json:"idKind" enums:"phone,lid,group,other" example:"phone"`
	// Type is individual or group.
	Type string `json:"type" enums:"individual,group" example:"individual"`
	// Phone is read from a phone JID (digits, country code first, no "+"); absent otherwise.
	Phone string `json:"phone,omitempty" example:"34657032985"`
	// Name is the chat's name: the contact's or the group's subject.
	Name string `json:"name" example:"María Peña"`
	// UnreadCount is the number of messages not read yet.
	UnreadCount int `json:"unreadCount" example:"2"`
	// MessageCount is the number of messages the upstream holds for the chat.
	MessageCount int `json:"messageCount" example:"31"`
	// LastMessageAt is the time of the last message, RFC 3339 UTC; absent when there is none.
	LastMessageAt *time.Time `json:"lastMessageAt,omitempty" example:"2025-11-07T11:58:00Z"`
	// LastMessage summarises the last message; absent when there is none.
	LastMessage *ChatSnippet `json:"lastMessage,omitempty"`
}

// ChatSnippet is the summary of a chat's latest message.
type ChatSnippet struct {
	// Text is the body or the caption.
	Text string `json:"text" example:"Recibido 👍"`
	// At is the message's time, RFC 3339 UTC; absent when the upstream gave none.
	At *time.Time `json:"at,omitempty" example:"2025-11-07T11:58:00Z"`
	// FromMe says the session's own number sent it.
	FromMe bool `json:"fromMe" example:"false"`
}

// Message is the normalised schema of a synced message.
//
// ID is WhatsApp's message id (whatsappMessageId), which the phone, the webhooks and the upstream
// agree on; when the upstream sent none it is "upstream:<database id>". A message is unique by
// (ChatID, ID). Type is the lower-case kind (text, image, audio, video, document, sticker, ...);
// Text is the body or the caption; Media describes an attachment (the upstream lists no URL).
type Message struct {
	// ID is WhatsApp's message id, or "upstream:<upstreamId>" when the upstream sent none; unique
	// within its chat.
	ID string `json:"id" example:"3EB0C431D5A3F2B1"`
	// UpstreamID is the upstream's own database id of the message, when it sent one.
	UpstreamID string `json:"upstreamId,omitempty" example:"48213"`
	// ChatID is the stable JID of the chat (as the chats route gives it).
	ChatID string `json:"chatId" example:"34657032985@s.whatsapp.net"`
	// ChatType is individual or group.
	ChatType string `json:"chatType" enums:"individual,group" example:"individual"`
	// From is the sender's stable JID.
	From string `json:"from" example:"34657032985@s.whatsapp.net"`
	// FromPhone is the sender's phone number, when the sender is a phone JID.
	FromPhone string `json:"fromPhone,omitempty" example:"34657032985"`
	// To is the recipient's stable JID.
	To string `json:"to" example:"34600000000@s.whatsapp.net"`
	// FromMe says the session's own number sent it.
	FromMe bool `json:"fromMe" example:"false"`
	// Type is the lower-case kind: text, image, audio, video, document, sticker, ...
	Type string `json:"type" example:"text"`
	// Text is the body, or the caption of a media message.
	Text string `json:"text" example:"Hola, ¿qué tal?"`
	// Media describes the attachment of a message that is not text; absent for text.
	Media *Media `json:"media,omitempty"`
	// Timestamp is the message's time, RFC 3339 UTC; absent when the upstream gave none.
	Timestamp *time.Time `json:"timestamp,omitempty" example:"2025-11-07T11:58:00Z"`
	// Status is the lower-case delivery status as the upstream says it (pending, sent, delivered,
	// read, ...).
	Status string `json:"status" example:"read"`
	// IsRead says the message was read.
	IsRead bool `json:"isRead" example:"true"`
}

// Media describes a message's attachment: its kind and, for documents, the file name.
type Media struct {
	// Kind is the message type of the attachment (image, audio, video, document, sticker, ...).
	Kind string `json:"kind" example:"document"`
	// FileName is a document's file name.
	FileName string `json:"fileName,omitempty" example:"factura_2025_001.pdf"`
}

// NormalizeContact maps an upstream contact to the Contact schema.
func NormalizeContact(c upstream.Contact) Contact {
	id, kind, phone := jid.Normalize(c.ID)
	out := Contact{ID: id, IDKind: kind, Type: "person", Phone: phone, Name: strings.TrimSpace(c.Name),
		PushName: strings.TrimSpace(c.Notify), VerifiedName: strings.TrimSpace(c.VerifiedName),
		ImageURL: strings.TrimSpace(c.ImgURL), IsWhatsApp: c.IsWAContact}
	if c.IsGroup || kind == IDKindGroup {
		out.Type = "group"
	}
	return out
}

// NormalizeChat maps an upstream chat to the Chat schema.
func NormalizeChat(c upstream.Chat) Chat {
	id, kind, phone := jid.Normalize(c.ChatID)
	out := Chat{ID: id, IDKind: kind, Type: "individual", Phone: phone, Name: strings.TrimSpace(c.Name),
		UnreadCount: c.UnreadCount, MessageCount: c.MessageCount}
	if c.IsGroup || kind == IDKindGroup {
		out.Type = "group"
	}
	if c.LastMessage != nil {
		snip := &ChatSnippet{Text: c.LastMessage.Body, FromMe: c.LastMessage.FromMe}
		if !c.LastMessage.Timestamp.IsZero() {
			at := c.LastMessage.Timestamp.UTC()
			snip.At, out.LastMessageAt = &at, &at
		}
		out.LastMessage = snip
	}
	return out
}

// NormalizeMessage maps an upstream message of chat chatID to the Message schema; the message's
// own chatId wins when it has one.
func NormalizeMessage(chatID string, m upstream.Message) Message {
	if m.ChatID != "" {
		chatID = m.ChatID
	}
	cid, ckind, _ := jid.Normalize(chatID)
	from, _, fromPhone := jid.Normalize(m.From)
	to, _, _ := jid.Normalize(m.To)
	out := Message{ID: strings.TrimSpace(m.WhatsappMessageID), UpstreamID: strings.TrimSpace(m.ID), ChatID: cid,
		ChatType: "individual", From: from, FromPhone: fromPhone, To: to, FromMe: m.FromMe,
		Type: strings.ToLower(strings.TrimSpace(m.Type)), Text: m.Body,
		Status: strings.ToLower(strings.TrimSpace(m.Status)), IsRead: m.IsRead}
	if out.ID == "" && out.UpstreamID != "" {
		out.ID = "upstream:" + out.UpstreamID
	}
	if ckind == IDKindGroup {
		out.ChatType = "group"
	}
	if out.Type == "" {
		out.Type = "text"
	}
	switch out.Type {
	case "text", "chat", "conversation", "extendedtext":
		out.Type = "text"
	default:
		out.Media = &Media{Kind: out.Type}
		if out.Type == "document" {
			out.Media.FileName = m.Body
		}
	}
	if !m.Timestamp.IsZero() {
		ts := m.Timestamp.UTC()
		out.Timestamp = &ts
	}
	return out
}

// CanonicalJSON is an item's (or an event's) JSON as delivered: fields in schema order, no HTML
// escaping, no trailing newline. The same value always gives the same bytes.
func CanonicalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Digest is the hex SHA-256 of an item's canonical JSON: two syncs that see the same item compute
// the same digest, and any change of a normalised field changes it.
func Digest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}
