package handlers

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

// ContactSource is what the contacts route needs from the upstream (or a cache in front of it).
type ContactSource interface {
	Contacts(ctx context.Context, sessionID string, p upstream.ListParams) (upstream.Page[upstream.Contact], error)
}

// ChatSource is what the chats route needs from the upstream (or a cache in front of it).
type ChatSource interface {
	Chats(ctx context.Context, sessionID string, p upstream.ListParams) (upstream.Page[upstream.Chat], error)
}

// MessageSource is what the chat messages route needs from the upstream (or a cache in front of it).
type MessageSource interface {
	ChatMessages(ctx context.Context, sessionID, chatID string, p upstream.ListParams) (upstream.Page[upstream.Message], error)
}

// Default page sizes of the list routes (the upstream's own defaults).
const (
	DefaultContactsLimit = 50
	DefaultChatsLimit    = 20
	DefaultMessagesLimit = 50
)

// PageMeta describes one page of a list. Total and Pages are null when the upstream did not say.
type PageMeta struct {
	Page  int        `json:"page" example:"1"`
	Limit int        `json:"limit" example:"50"`
	Total *int       `json:"total" example:"120"`
	Pages *int       `json:"pages" example:"3"`
	Cache *CacheMeta `json:"cache,omitempty"`
}

// Contact is a WhatsApp contact as the gateway shows it.
type Contact struct {
	// ID is the contact's JID, its stable id: <phone>@s.whatsapp.net, <group>@g.us or an @lid id.
	ID string `json:"id" example:"34657032985@s.whatsapp.net"`
	// PhoneNumber is read from the JID; empty for @lid ids (which hide the number) and groups.
	PhoneNumber string `json:"phoneNumber" example:"34657032985"`
	// Name is the best name known: the address-book name, else the verified business name, else
	// the name the contact set for themselves (notify); empty when there is none.
	Name string `json:"name" example:"Lucía Martín"`
	// IsGroup says the id is a group.
	IsGroup bool `json:"isGroup" example:"false"`
	// IsBusiness says WhatsApp shows a verified business name for the contact.
	IsBusiness bool `json:"isBusiness" example:"false"`
	// IsWhatsAppUser says the number is on WhatsApp (the upstream's isWAContact).
	IsWhatsAppUser bool `json:"isWhatsAppUser" example:"true"`
	// AvatarURL is the profile picture, when the upstream has one (it expires).
	AvatarURL string `json:"avatarUrl,omitempty" example:"https://pps.whatsapp.net/v/t61.24694-24/123_n.jpg"`
}

// Chat is a conversation as the gateway shows it.
type Chat struct {
	// ID is the JID of the other party or the group; use it in the chat messages route.
	ID           string       `json:"id" example:"34657032985@s.whatsapp.net"`
	Name         string       `json:"name" example:"Lucía Martín"`
	IsGroup      bool         `json:"isGroup" example:"false"`
	UnreadCount  int          `json:"unreadCount" example:"2"`
	MessageCount int          `json:"messageCount" example:"25"`
	LastMessage  *LastMessage `json:"lastMessage"`
}

// LastMessage summarises a chat's latest message.
type LastMessage struct {
	Text   string     `json:"text" example:"¿Tenéis cita el jueves?"`
	At     *time.Time `json:"at" example:"2026-11-28T09:58:00Z"`
	FromMe bool       `json:"fromMe" example:"false"`
}

// Message is a WhatsApp message as the gateway shows it.
type Message struct {
	// ID is the WhatsApp message id when the upstream gives one (stable across sessions and
	// webhooks), else the upstream's own id.
	ID     string `json:"id" example:"3EB0C767D26A1D8B4E5F"`
	ChatID string `json:"chatId" example:"34657032985@s.whatsapp.net"`
	From   string `json:"from" example:"34657032985@s.whatsapp.net"`
	To     string `json:"to" example:"34600111222@s.whatsapp.net"`
	FromMe bool   `json:"fromMe" example:"false"`
	// Type is text, image, video, audio, document, ... as the upstream says, lower case.
	Type string `json:"type" example:"text"`
	// Text is the body, or the caption of a media message.
	Text string     `json:"text" example:"Hola, ¿tenéis cita el jueves?"`
	At   *time.Time `json:"at" example:"2026-11-28T09:58:00Z"`
	// Status is the delivery status as the upstream says, lower case (pending, sent, delivered, read, ...).
	Status string `json:"status" example:"delivered"`
}

// ContactList is the answer of the contacts route.
type ContactList struct {
	Data []Contact `json:"data"`
	Meta PageMeta  `json:"meta"`
}

// ChatList is the answer of the chats route.
type ChatList struct {
	Data []Chat   `json:"data"`
	Meta PageMeta `json:"meta"`
}

// MessageList is the answer of the chat messages route.
type MessageList struct {
	Data []Message `json:"data"`
	Meta PageMeta  `json:"meta"`
}

// NormalizeContact turns an upstream contact into the gateway's.
func NormalizeContact(c upstream.Contact) Contact {
	name := c.Name
	if name == "" {
		name = c.VerifiedName
	}
	if name == "" {
		name = c.Notify
	}
	return Contact{
		ID:             c.ID,
		PhoneNumber:    phoneFromJID(c.ID),
		Name:           name,
		IsGroup:        c.IsGroup || strings.HasSuffix(c.ID, "@g.us"),
		IsBusiness:     c.VerifiedName != "",
		IsWhatsAppUser: c.IsWAContact,
		AvatarURL:      c.ImgURL,
	}
}

// NormalizeChat turns an upstream chat into the gateway's.
func NormalizeChat(ch upstream.Chat) Chat {
	out := Chat{
		ID:           ch.ChatID,
		Name:         ch.Name,
		IsGroup:      ch.IsGroup || strings.HasSuffix(ch.ChatID, "@g.us"),
		UnreadCount:  ch.UnreadCount,
		MessageCount: ch.MessageCount,
	}
	if m := ch.LastMessage; m != nil {
		out.LastMessage = &LastMessage{Text: m.Body, At: timePtr(m.Timestamp), FromMe: m.FromMe}
	}
	return out
}

// NormalizeMessage turns an upstream message into the gateway's.
func NormalizeMessage(m upstream.Message) Message {
	id := m.WhatsappMessageID
	if id == "" {
		id = m.ID
	}
	return Message{
		ID:     id,
		ChatID: m.ChatID,
		From:   m.From,
		To:     m.To,
		FromMe: m.FromMe,
		Type:   strings.ToLower(m.Type),
		Text:   m.Body,
		At:     timePtr(m.Timestamp),
		Status: strings.ToLower(m.Status),
	}
}

// pageMeta describes a page the upstream answered for the parameters asked.
func pageMeta[T any](p upstream.Page[T], asked upstream.ListParams) PageMeta {
	m := PageMeta{Page: p.Page, Limit: p.Limit}
	if m.Page <= 0 {
		m.Page = asked.Page
	}
	if m.Limit <= 0 {
		m.Limit = asked.Limit
	}
	// A total of 0 is believable only for an empty first page; otherwise the upstream did not say.
	if p.Total > 0 || (len(p.Items) == 0 && m.Page == 1) {
		total := p.Total
		m.Total = &total
	}
	switch {
	case p.Pages > 0:
		pages := p.Pages
		m.Pages = &pages
	case m.Total != nil && m.Limit > 0:
		pages := (*m.Total + m.Limit - 1) / m.Limit
		m.Pages = &pages
	}
	return m
}

func normalizeAll[T, U any](items []T, f func(T) U) []U {
	out := make([]U, 0, len(items))
	for _, it := range items {
		out = append(out, f(it))
	}
	return out
}

type listHandlers struct {
	contacts ContactSource
	chats    ChatSource
	messages MessageSource
}

// contacts godoc
//
//	@Summary		List contacts
//	@Description	One page of the session's WhatsApp contacts, normalised: the JID as id, the phone number read from it (empty for @lid ids and groups), the best known name. The session must be connected (else 409 SESSION_NOT_CONNECTED, whose detail says how to reconnect). Unknown query parameters are refused.
//	@Tags			contacts
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@Param			sessionId	path		string	true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			page		query		int		false	"Page, from 1"																minimum(1)	maximum(100000)	default(1)
//	@Param			limit		query		int		false	"Contacts per page"															minimum(1)	maximum(100)	default(50)
//	@Param			search		query		string	false	"Part of the name or id (at most 100 characters, no control characters)"	maxLength(100)
//	@Success		200			{object}	ContactList
//	@Failure		400			{object}	problem.Details	"INVALID_REQUEST: bad sessionId, pagination, search or unknown query parameters"
//	@Failure		401			{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403			{object}	problem.Details	"FORBIDDEN: needs messages:read"
//	@Failure		404			{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		409			{object}	problem.Details	"SESSION_NOT_CONNECTED"
//	@Failure		429			{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502			{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503			{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504			{object}	problem.Details	"UPSTREAM_TIMEOUT"
//	@Router			/v1/sessions/{sessionId}/contacts [get]
func (h listHandlers) listContacts(c *gin.Context) {
	id, ok := sessionIDParam(c)
	if !ok {
		return
	}
	p, ok := listParams(c, DefaultContactsLimit, true)
	if !ok {
		return
	}
	ctx, facts := cacheFacts(c)
	page, err := h.contacts.Contacts(ctx, id, p)
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	meta := pageMeta(page, p)
	meta.Cache = facts()
	c.JSON(http.StatusOK, ContactList{Data: normalizeAll(page.Items, NormalizeContact), Meta: meta})
}

// chats godoc
//
//	@Summary		List chats
//	@Description	One page of the session's chats, the most recent first, each with its last message. The session must be connected (else 409 SESSION_NOT_CONNECTED). Unknown query parameters are refused.
//	@Tags			chats
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@Param			sessionId	path		string	true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			page		query		int		false	"Page, from 1"		minimum(1)	maximum(100000)	default(1)
//	@Param			limit		query		int		false	"Chats per page"	minimum(1)	maximum(100)	default(20)
//	@Success		200			{object}	ChatList
//	@Failure		400			{object}	problem.Details	"INVALID_REQUEST: bad sessionId, pagination or unknown query parameters"
//	@Failure		401			{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403			{object}	problem.Details	"FORBIDDEN: needs messages:read"
//	@Failure		404			{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		409			{object}	problem.Details	"SESSION_NOT_CONNECTED"
//	@Failure		429			{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502			{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503			{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504			{object}	problem.Details	"UPSTREAM_TIMEOUT"
//	@Router			/v1/sessions/{sessionId}/chats [get]
func (h listHandlers) listChats(c *gin.Context) {
	id, ok := sessionIDParam(c)
	if !ok {
		return
	}
	p, ok := listParams(c, DefaultChatsLimit, false)
	if !ok {
		return
	}
	ctx, facts := cacheFacts(c)
	page, err := h.chats.Chats(ctx, id, p)
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	meta := pageMeta(page, p)
	meta.Cache = facts()
	c.JSON(http.StatusOK, ChatList{Data: normalizeAll(page.Items, NormalizeChat), Meta: meta})
}

// chatMessages godoc
//
//	@Summary		List the messages of a chat
//	@Description	One page of a chat's messages, the newest first. chatId is the chat's JID as the chats route gives it (…@s.whatsapp.net, …@g.us, …@lid; also …@c.us, …@broadcast, …@newsletter); a chat the session does not have gives an empty page. The session must be connected (else 409 SESSION_NOT_CONNECTED). Unknown query parameters are refused.
//	@Tags			chats
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@Param			sessionId	path		string	true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			chatId		path		string	true	"Chat JID (^[0-9A-Za-z._:-]{1,64}@(s.whatsapp.net|g.us|lid|c.us|broadcast|newsletter)$)"
//	@Param			page		query		int		false	"Page, from 1"		minimum(1)	maximum(100000)	default(1)
//	@Param			limit		query		int		false	"Messages per page"	minimum(1)	maximum(100)	default(50)
//	@Success		200			{object}	MessageList
//	@Failure		400			{object}	problem.Details	"INVALID_REQUEST: bad sessionId, chatId, pagination or unknown query parameters"
//	@Failure		401			{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403			{object}	problem.Details	"FORBIDDEN: needs messages:read"
//	@Failure		404			{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		409			{object}	problem.Details	"SESSION_NOT_CONNECTED"
//	@Failure		429			{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502			{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503			{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504			{object}	problem.Details	"UPSTREAM_TIMEOUT"
//	@Router			/v1/sessions/{sessionId}/chats/{chatId}/messages [get]
func (h listHandlers) listChatMessages(c *gin.Context) {
	id, ok := sessionIDParam(c)
	if !ok {
		return
	}
	chatID, ok := chatIDParam(c)
	if !ok {
		return
	}
	p, ok := listParams(c, DefaultMessagesLimit, false)
	if !ok {
		return
	}
	ctx, facts := cacheFacts(c)
	page, err := h.messages.ChatMessages(ctx, id, chatID, p)
	if err != nil {
		middleware.Fail(c, err)
		return
	}
	meta := pageMeta(page, p)
	meta.Cache = facts()
	c.JSON(http.StatusOK, MessageList{Data: normalizeAll(page.Items, NormalizeMessage), Meta: meta})
}
