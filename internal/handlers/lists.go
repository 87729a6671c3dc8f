package handlers

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/crm"
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

// ContactList is the answer of the contacts route: contacts in the same schema as the sync items
// and the webhook events (crm.Contact).
type ContactList struct {
	Data []crm.Contact `json:"data"`
	Meta PageMeta      `json:"meta"`
}

// ChatList is the answer of the chats route: chats in the same schema as the sync items
// (crm.Chat).
type ChatList struct {
	Data []crm.Chat `json:"data"`
	Meta PageMeta   `json:"meta"`
}

// MessageList is the answer of the chat messages route: messages in the same schema as the sync
// items and the webhook events (crm.Message).
type MessageList struct {
	Data []crm.Message `json:"data"`
	Meta PageMeta      `json:"meta"`
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
//	@Description	One page of the session's WhatsApp contacts, in the same schema as the sync items and the webhook events: id is the JID without its device part, @c.us rewritten as @s.whatsapp.net (the CRM upserts on it); idKind says what it is (phone, lid, group, other); phone is read from a phone JID (digits, country code first; absent for @lid ids and groups); name, pushName and verifiedName are the address-book name, the name the contact set and the verified business name. The session must be connected (else 409 SESSION_NOT_CONNECTED, whose detail says how to reconnect). Unknown query parameters are refused.
//	@Tags			contacts
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["messages:read"]
//	@Param			sessionId		path		string	true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			page			query		int		false	"Page, from 1"																minimum(1)	maximum(100000)	default(1)
//	@Param			limit			query		int		false	"Contacts per page"															minimum(1)	maximum(100)	default(50)
//	@Param			search			query		string	false	"Part of the name or id (at most 100 characters, no control characters)"	maxLength(100)
//	@Param			If-None-Match	header		string	false	"An ETag of an earlier answer (or *): 304 without a body while the data is unchanged"
//	@Success		200				{object}	ContactList
//	@Header			200				{string}	ETag			"Strong tag of the data (not of meta.cache); absent when the cache did not keep the answer"
//	@Header			200				{string}	Cache-Control	"private, max-age=<whole seconds the data stays fresh in the gateway>"
//	@Success		304				"Not Modified: If-None-Match names the current data; no body"
//	@Failure		400				{object}	problem.Details	"INVALID_REQUEST: bad sessionId, pagination, search or unknown query parameters"
//	@Failure		401				{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403				{object}	problem.Details	"FORBIDDEN: needs messages:read"
//	@Failure		404				{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		409				{object}	problem.Details	"SESSION_NOT_CONNECTED"
//	@Failure		429				{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502				{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503				{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504				{object}	problem.Details	"UPSTREAM_TIMEOUT"
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
	cacheMeta, done := facts()
	if done {
		return
	}
	meta := pageMeta(page, p)
	meta.Cache = cacheMeta
	c.JSON(http.StatusOK, ContactList{Data: normalizeAll(page.Items, crm.NormalizeContact), Meta: meta})
}

// chats godoc
//
//	@Summary		List chats
//	@Description	One page of the session's chats, the most recent first, each with its last message (lastMessage and lastMessageAt are absent when the chat has none), in the same schema as the sync items: id is the JID without its device part, @c.us rewritten as @s.whatsapp.net, with its idKind and, for a phone JID, the phone. The session must be connected (else 409 SESSION_NOT_CONNECTED). Unknown query parameters are refused.
//	@Tags			chats
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["messages:read"]
//	@Param			sessionId		path		string	true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			page			query		int		false	"Page, from 1"		minimum(1)	maximum(100000)	default(1)
//	@Param			limit			query		int		false	"Chats per page"	minimum(1)	maximum(100)	default(20)
//	@Param			If-None-Match	header		string	false	"An ETag of an earlier answer (or *): 304 without a body while the data is unchanged"
//	@Success		200				{object}	ChatList
//	@Header			200				{string}	ETag			"Strong tag of the data (not of meta.cache); absent when the cache did not keep the answer"
//	@Header			200				{string}	Cache-Control	"private, max-age=<whole seconds the data stays fresh in the gateway>"
//	@Success		304				"Not Modified: If-None-Match names the current data; no body"
//	@Failure		400				{object}	problem.Details	"INVALID_REQUEST: bad sessionId, pagination or unknown query parameters"
//	@Failure		401				{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403				{object}	problem.Details	"FORBIDDEN: needs messages:read"
//	@Failure		404				{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		409				{object}	problem.Details	"SESSION_NOT_CONNECTED"
//	@Failure		429				{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502				{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503				{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504				{object}	problem.Details	"UPSTREAM_TIMEOUT"
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
	cacheMeta, done := facts()
	if done {
		return
	}
	meta := pageMeta(page, p)
	meta.Cache = cacheMeta
	c.JSON(http.StatusOK, ChatList{Data: normalizeAll(page.Items, crm.NormalizeChat), Meta: meta})
}

// chatMessages godoc
//
//	@Summary		List the messages of a chat
//	@Description	One page of a chat's messages, the newest first. chatId is the chat's JID as the chats route gives it (…@s.whatsapp.net, …@g.us, …@lid; also …@c.us, …@broadcast, …@newsletter); a chat the session does not have gives an empty page. Messages are in the same schema as the sync items and the webhook events: id is the WhatsApp message id ("upstream:<id>" when the upstream has none), unique within chatId; chatId, from and to are normalised like the chat ids; timestamp is RFC 3339 UTC. The session must be connected (else 409 SESSION_NOT_CONNECTED). Unknown query parameters are refused.
//	@Tags			chats
//	@Produce		json
//	@Security		ApiKey
//	@Security		BearerJWT
//	@x-scopes		["messages:read"]
//	@Param			sessionId		path		string	true	"Session id (^[A-Za-z0-9_-]{3,100}$)"
//	@Param			chatId			path		string	true	"Chat JID (^[0-9A-Za-z._:-]{1,64}@(s.whatsapp.net|g.us|lid|c.us|broadcast|newsletter)$)"
//	@Param			page			query		int		false	"Page, from 1"		minimum(1)	maximum(100000)	default(1)
//	@Param			limit			query		int		false	"Messages per page"	minimum(1)	maximum(100)	default(50)
//	@Param			If-None-Match	header		string	false	"An ETag of an earlier answer (or *): 304 without a body while the data is unchanged"
//	@Success		200				{object}	MessageList
//	@Header			200				{string}	ETag			"Strong tag of the data (not of meta.cache); absent when the cache did not keep the answer"
//	@Header			200				{string}	Cache-Control	"private, max-age=<whole seconds the data stays fresh in the gateway>"
//	@Success		304				"Not Modified: If-None-Match names the current data; no body"
//	@Failure		400				{object}	problem.Details	"INVALID_REQUEST: bad sessionId, chatId, pagination or unknown query parameters"
//	@Failure		401				{object}	problem.Details	"UNAUTHENTICATED"
//	@Failure		403				{object}	problem.Details	"FORBIDDEN: needs messages:read"
//	@Failure		404				{object}	problem.Details	"SESSION_NOT_FOUND"
//	@Failure		409				{object}	problem.Details	"SESSION_NOT_CONNECTED"
//	@Failure		429				{object}	problem.Details	"RATE_LIMITED"
//	@Failure		502				{object}	problem.Details	"UPSTREAM_AUTH_FAILED or UPSTREAM_ERROR"
//	@Failure		503				{object}	problem.Details	"UPSTREAM_UNAVAILABLE"
//	@Failure		504				{object}	problem.Details	"UPSTREAM_TIMEOUT"
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
	cacheMeta, done := facts()
	if done {
		return
	}
	meta := pageMeta(page, p)
	meta.Cache = cacheMeta
	data := normalizeAll(page.Items, func(m upstream.Message) crm.Message { return crm.NormalizeMessage(chatID, m) })
	c.JSON(http.StatusOK, MessageList{Data: data, Meta: meta})
}
