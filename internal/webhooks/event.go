package webhooks

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/crm"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// Types of the events forwarded to the CRM (Event.Type). The webhook names of every upstream
// version map onto these (see parse.go); session.updated is a status change that is none of
// connected, disconnected and qr (connecting, error, rate_limited), which only the status poller
// and the older session_status webhook report.
const (
	TypeMessageReceived     = "message.received"
	TypeMessageSent         = "message.sent"
	TypeMessageAck          = "message.ack"
	TypeSessionConnected    = "session.connected"
	TypeSessionDisconnected = "session.disconnected"
	TypeSessionQR           = "session.qr"
	TypeSessionUpdated      = "session.updated"
	TypeContactCreated      = "contact.created"
	TypeContactUpdated      = "contact.updated"
	TypeConversationCreated = "conversation.created"
	TypeConversationUpdated = "conversation.updated"
)

// Types lists every event type, for documentation and metric labels.
var Types = []string{TypeMessageReceived, TypeMessageSent, TypeMessageAck, TypeSessionConnected,
	TypeSessionDisconnected, TypeSessionQR, TypeSessionUpdated, TypeContactCreated, TypeContactUpdated,
	TypeConversationCreated, TypeConversationUpdated}

// Sources of an event (Event.Source).
const (
	SourceWebhook = "webhook"
	SourcePoller  = "poller"
)

// Session statuses as the gateway's API shows them (the same words as GET /v1/sessions).
const (
	StatusConnected    = "connected"
	StatusConnecting   = "connecting"
	StatusQRPending    = "qr_pending"
	StatusDisconnected = "disconnected"
	StatusError        = "error"
	StatusRateLimited  = "rate_limited"
)

// Event is the one schema of what the gateway forwards to CRM_EVENTS_URL: one JSON object per
// POST, signed like the sync batches (X-Gateway-Signature, X-Gateway-Timestamp), with the event id
// in X-Gateway-Delivery.
//
// ID is stable: the same upstream event (the same whatsappMessageId, or the same delivery) always
// gets the same id, so a receiver that sees an id twice (a retry whose answer was lost, a replayed
// dead letter) can ignore the repeat. Events of one session arrive in the order the gateway
// received them; OccurredAt is when the upstream sent the webhook (or the poller saw the change).
type Event struct {
	ID         string    `json:"id" example:"evt_3f0c2b7e8a11d5a3f2b1c431d5a3f2b1"`
	Type       string    `json:"type" enums:"message.received,message.sent,message.ack,session.connected,session.disconnected,session.qr,session.updated,contact.created,contact.updated,conversation.created,conversation.updated" example:"message.received"`
	SessionID  string    `json:"sessionId" example:"demo_session"`
	OccurredAt time.Time `json:"occurredAt" example:"2025-11-07T11:58:00Z"`
	// Source says who saw the event: the upstream's webhook, or the gateway's status poller (a
	// change no webhook reported).
	Source string    `json:"source" enums:"webhook,poller" example:"webhook"`
	Data   EventData `json:"data"`
}

// EventData holds what the event is about; only the members of its type are present. Message,
// Contact and Chat have exactly the schema of the items of a sync (package crm), so the CRM
// upserts both through the same code.
type EventData struct {
	// Message: message.received, message.sent and message.ack (its status is the ack's).
	Message *crm.Message `json:"message,omitempty"`
	// Ack: message.ack.
	Ack *Ack `json:"ack,omitempty"`
	// Contact: contact.created and contact.updated.
	Contact *crm.Contact `json:"contact,omitempty"`
	// Chat: conversation.created and conversation.updated.
	Chat *crm.Chat `json:"chat,omitempty"`
	// Session: every session.* event.
	Session *SessionChange `json:"session,omitempty"`
}

// Ack is a message's delivery state: level 0 pending, 1 server, 2 delivered, 3 read, 4 played,
// -1 error, as WhatsApp numbers them.
type Ack struct {
	MessageID string `json:"messageId" example:"3EB0C431D5A3F2B1"`
	ChatID    string `json:"chatId,omitempty" example:"34657032985@s.whatsapp.net"`
	Level     int    `json:"level" example:"3"`
	Status    string `json:"status" enums:"error,pending,server,delivered,read,played" example:"read"`
}

// SessionChange is a session's new state.
type SessionChange struct {
	Status string `json:"status" enums:"connected,connecting,qr_pending,disconnected,error,rate_limited" example:"connected"`
	// PreviousStatus is the status the gateway knew before (poller events only).
	PreviousStatus string `json:"previousStatus,omitempty" example:"qr_pending"`
	PhoneNumber    string `json:"phoneNumber,omitempty" example:"34657032985"`
	// Reason is why a session disconnected, as the upstream put it.
	Reason string `json:"reason,omitempty" example:"logout"`
	// QR says a code is waiting to be scanned (session.qr): fetch it from GET
	// /v1/sessions/{sessionId}/qr. The code itself is not forwarded.
	QR *EventQR `json:"qr,omitempty"`
}

// EventQR tells that a QR code is available, and until when.
type EventQR struct {
	Available bool       `json:"available" example:"true"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty" example:"2025-11-07T11:59:00Z"`
}

// eventID derives an event's stable id from its identity (see identity in parse.go).
func eventID(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return "evt_" + hex.EncodeToString(sum[:16])
}

// SessionStatus maps an upstream session status (any spelling, see upstream.NormalizeStatus) to
// the gateway's status words. It is the same mapping as GET /v1/sessions uses.
func SessionStatus(s string) string {
	switch upstream.NormalizeStatus(s) {
	case upstream.StatusConnected:
		return StatusConnected
	case upstream.StatusConnecting, upstream.StatusPending:
		return StatusConnecting
	case upstream.StatusQRCode:
		return StatusQRPending
	case upstream.StatusDisconnected:
		return StatusDisconnected
	case upstream.StatusRateLimited:
		return StatusRateLimited
	default:
		return StatusError
	}
}

// sessionEventType is the event that reports a session now in status (a SessionStatus word).
func sessionEventType(status string) string {
	switch status {
	case StatusConnected:
		return TypeSessionConnected
	case StatusDisconnected:
		return TypeSessionDisconnected
	case StatusQRPending:
		return TypeSessionQR
	}
	return TypeSessionUpdated
}

// isSessionType reports whether t is a session.* event.
func isSessionType(t string) bool {
	switch t {
	case TypeSessionConnected, TypeSessionDisconnected, TypeSessionQR, TypeSessionUpdated:
		return true
	}
	return false
}
