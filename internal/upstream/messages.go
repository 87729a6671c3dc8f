package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"iter"
	"net/http"
	"net/url"
)

// Routes of the contacts and messages resources, as route patterns. They take the string
// sessionId.
const (
	routeContacts     = "/api/contacts/:sessionId"
	routeChats        = "/api/messages/:sessionId/chats"
	routeChatMessages = "/api/messages/:sessionId/:chatId"
	routeSend         = "/api/messages/:sessionId/send"
)

// maxPages stops a walk over a list whose pagination never ends (a server ignoring ?page).
const maxPages = 100_000

// Contacts returns a page of a session's contacts (GET /api/contacts/:sessionId). The session must
// be connected: otherwise the error matches ErrSessionNotConnected.
func (c *Client) Contacts(ctx context.Context, sessionID string, p ListParams) (Page[Contact], error) {
	if sessionID == "" {
		return Page[Contact]{}, errEmptySessionID
	}
	q := pageQuery(p.Page, p.Limit)
	if p.Search != "" {
		q.Set("search", p.Search)
	}
	cl := &call{method: http.MethodGet, route: routeContacts, path: "/api/contacts/" + url.PathEscape(sessionID),
		query: q, category: CategoryRead, bearer: true}
	return list[Contact](ctx, c, cl, "contacts", p.Page, p.Limit)
}

// Chats returns a page of a session's chats (GET /api/messages/:sessionId/chats).
func (c *Client) Chats(ctx context.Context, sessionID string, p ListParams) (Page[Chat], error) {
	if sessionID == "" {
		return Page[Chat]{}, errEmptySessionID
	}
	cl := &call{method: http.MethodGet, route: routeChats, path: "/api/messages/" + url.PathEscape(sessionID) + "/chats",
		query: pageQuery(p.Page, p.Limit), category: CategoryRead, bearer: true}
	return list[Chat](ctx, c, cl, "chats", p.Page, p.Limit)
}

// ChatMessages returns a page of the messages of one chat (GET /api/messages/:sessionId/:chatId);
// chatID is the chat's JID.
func (c *Client) ChatMessages(ctx context.Context, sessionID, chatID string, p ListParams) (Page[Message], error) {
	if sessionID == "" {
		return Page[Message]{}, errEmptySessionID
	}
	if chatID == "" {
		return Page[Message]{}, errors.New("upstream: empty chat id")
	}
	cl := &call{method: http.MethodGet, route: routeChatMessages,
		path:  "/api/messages/" + url.PathEscape(sessionID) + "/" + url.PathEscape(chatID),
		query: pageQuery(p.Page, p.Limit), category: CategoryRead, bearer: true}
	return list[Message](ctx, c, cl, "messages", p.Page, p.Limit)
}

// SendText sends a text message (POST /api/messages/:sessionId/send, quota category send). toJID
// must be a JID (<msisdn>@s.whatsapp.net, ...@g.us or ...@lid): the upstream rejects bare phone
// numbers. A send is never retried once it may have reached the upstream, so that a message is
// never delivered twice; it is retried only after a dial failure.
func (c *Client) SendText(ctx context.Context, sessionID, toJID, text string) (Message, error) {
	if sessionID == "" {
		return Message{}, errEmptySessionID
	}
	if toJID == "" || text == "" {
		return Message{}, errors.New("upstream: send needs a recipient and a text")
	}
	cl := &call{method: http.MethodPost, route: routeSend, path: "/api/messages/" + url.PathEscape(sessionID) + "/send",
		category: CategorySend, bearer: true}
	cl.body, _ = json.Marshal(map[string]string{"to": toJID, "message": text, "type": "text"})
	var raw json.RawMessage
	if err := c.do(ctx, cl, &raw); err != nil {
		return Message{}, err
	}
	var m Message
	if isNull(raw) || unmarshalWrapped(raw, "message", &m) != nil {
		return Message{}, badResponse(cl, http.StatusOK, "the message is not the documented JSON")
	}
	return m, nil
}

// AllContacts walks every page of a session's contacts, limit per page (0 = MaxLimit). It stops at
// the first error, which it yields, and as soon as the consumer stops.
func (c *Client) AllContacts(ctx context.Context, sessionID string, limit int) iter.Seq2[Contact, error] {
	return walk(ctx, limit, func(ctx context.Context, p ListParams) (Page[Contact], error) {
		return c.Contacts(ctx, sessionID, p)
	})
}

// AllChats walks every page of a session's chats (see AllContacts).
func (c *Client) AllChats(ctx context.Context, sessionID string, limit int) iter.Seq2[Chat, error] {
	return walk(ctx, limit, func(ctx context.Context, p ListParams) (Page[Chat], error) {
		return c.Chats(ctx, sessionID, p)
	})
}

// AllChatMessages walks every page of a chat's messages (see AllContacts).
func (c *Client) AllChatMessages(ctx context.Context, sessionID, chatID string, limit int) iter.Seq2[Message, error] {
	return walk(ctx, limit, func(ctx context.Context, p ListParams) (Page[Message], error) {
		return c.ChatMessages(ctx, sessionID, chatID, p)
	})
}

// list runs a list call and decodes {<key>: [...], pagination: {...}} from its data.
func list[T any](ctx context.Context, c *Client, cl *call, key string, page, limit int) (Page[T], error) {
	var data json.RawMessage
	if err := c.do(ctx, cl, &data); err != nil {
		return Page[T]{}, err
	}
	p, err := decodeList[T](data, key, page, limit)
	if err != nil {
		return Page[T]{}, badResponse(cl, http.StatusOK, "the list is not the documented JSON")
	}
	return p, nil
}

type pagination struct {
	Total flexInt `json:"total"`
	Page  flexInt `json:"page"`
	Limit flexInt `json:"limit"`
	Pages flexInt `json:"pages"`
}

// decodeList reads a list's data. The items are data[key] (or data itself when it is an array);
// pagination missing leaves Total and Pages 0 and Page and Limit as asked.
func decodeList[T any](data json.RawMessage, key string, page, limit int) (Page[T], error) {
	out := Page[T]{Items: []T{}, Page: max(page, 1), Limit: limit}
	if isNull(data) {
		return out, nil
	}
	var items json.RawMessage
	var pg pagination
	if trimmed := bytes.TrimSpace(data); trimmed[0] == '[' {
		items = trimmed
	} else {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return out, err
		}
		items = m[key]
		if raw, ok := m["pagination"]; ok && !isNull(raw) {
			if err := json.Unmarshal(raw, &pg); err != nil {
				return out, err
			}
		}
	}
	if !isNull(items) {
		if err := json.Unmarshal(items, &out.Items); err != nil {
			return out, err
		}
	}
	out.Total, out.Pages = clampInt(pg.Total), clampInt(pg.Pages)
	if pg.Page > 0 {
		out.Page = clampInt(pg.Page)
	}
	if pg.Limit > 0 {
		out.Limit = clampInt(pg.Limit)
	}
	return out, nil
}

// walk yields every item of every page, asking page 1, 2, ... until the pagination says it was the
// last (pages, else total), or, without pagination, until a page comes back short or empty.
func walk[T any](ctx context.Context, limit int, fetch func(context.Context, ListParams) (Page[T], error)) iter.Seq2[T, error] {
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	return func(yield func(T, error) bool) {
		for page := 1; page <= maxPages; page++ {
			p, err := fetch(ctx, ListParams{Page: page, Limit: limit})
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range p.Items {
				if !yield(it, nil) {
					return
				}
			}
			if !morePages(p, page, limit) {
				return
			}
		}
	}
}

func morePages[T any](p Page[T], page, limit int) bool {
	switch {
	case len(p.Items) == 0:
		return false
	case p.Pages > 0:
		return page < p.Pages
	case p.Total > 0:
		size := limit
		if p.Limit > 0 {
			size = p.Limit
		}
		return page*size < p.Total
	}
	return len(p.Items) >= limit
}
