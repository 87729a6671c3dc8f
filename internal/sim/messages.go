package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// connectedData returns the session with string sessionId sid and its data, or the upstream's
// 404 SESSION_NOT_FOUND / 400 SESSION_NOT_CONNECTED. The caller holds s.mu.
func (s *Server) connectedData(sid string) (*session, *dataset, error) {
	ss := s.findSID(sid)
	if ss == nil {
		return nil, nil, errSessionNotFound()
	}
	s.advance(ss, s.clock())
	if !ss.is(statusConnected) {
		return nil, nil, errSessionNotConnected()
	}
	return ss, s.ensureData(ss), nil
}

// ensureData generates the session's data on first use; the caller holds s.mu.
func (s *Server) ensureData(ss *session) *dataset {
	if ss.data == nil {
		if ss.phone == "" {
			ss.phone = s.phoneFor(ss.id)
		}
		ss.data = generateData(s.opts.Seed, ss.id, ss.jid(),
			dataSize{s.opts.Contacts, s.opts.Chats, s.opts.MessagesPerChat})
	}
	return ss.data
}

// contactJSON is a contact as the upstream answers it.
type contactJSON struct {
	ID           string  `json:"id"`
	Name         *string `json:"name"`
	VerifiedName *string `json:"verifiedName"`
	Notify       *string `json:"notify"`
	ImgURL       *string `json:"imgUrl"`
	IsUser       bool    `json:"isUser"`
	IsGroup      bool    `json:"isGroup"`
	IsWAContact  bool    `json:"isWAContact"`
}

func (c *contact) toJSON() contactJSON {
	name := new(c.name) // a copy: the encoder runs after Server.mu is released
	if c.nullName {
		name = nil
	}
	return contactJSON{ID: c.id, Name: name, VerifiedName: nullable(c.verifiedName), Notify: nullable(c.notify),
		ImgURL: nullable(c.imgURL), IsUser: !c.isGroup, IsGroup: c.isGroup, IsWAContact: c.isWAContact}
}

// listContacts answers GET /api/contacts/{sessionId}: page, limit (default 50) and search, a
// case-insensitive substring of the name or the id. Contacts keep their generation order.
func (s *Server) listContacts(_ http.ResponseWriter, r *http.Request) (reply, error) {
	q := r.URL.Query()
	p, err := parsePage(q, 50)
	if err != nil {
		return reply{}, err
	}
	search := strings.ToLower(strings.TrimSpace(q.Get("search")))
	s.mu.Lock()
	defer s.mu.Unlock()
	_, d, err := s.connectedData(r.PathValue("sessionId"))
	if err != nil {
		return reply{}, err
	}
	match := d.contacts
	if search != "" {
		match = nil
		for _, c := range d.contacts {
			if strings.Contains(c.lower, search) || strings.Contains(c.id, search) {
				match = append(match, c)
			}
		}
	}
	from, to := p.bounds(len(match))
	out := make([]contactJSON, 0, to-from)
	for _, c := range match[from:to] {
		out = append(out, c.toJSON())
	}
	return reply{data: map[string]any{"contacts": out, "pagination": p.pagination(len(match))}}, nil
}

// contactInfo answers GET /api/contacts/{sessionId}/info/{contactId}, 404 CONTACT_NOT_FOUND for
// an unknown id.
func (s *Server) contactInfo(_ http.ResponseWriter, r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, d, err := s.connectedData(r.PathValue("sessionId"))
	if err != nil {
		return reply{}, err
	}
	c := d.contactByID[r.PathValue("contactId")]
	if c == nil {
		return reply{}, &apiError{http.StatusNotFound, codeContactNotFound, "Contacto no encontrado", nil}
	}
	return reply{data: map[string]any{"contact": c.toJSON()}}, nil
}

// chatJSON is a chat as the upstream answers it.
type chatJSON struct {
	ChatID       string           `json:"chatId"`
	Name         string           `json:"name"`
	IsGroup      bool             `json:"isGroup"`
	LastMessage  *lastMessageJSON `json:"lastMessage"`
	UnreadCount  int              `json:"unreadCount"`
	MessageCount int              `json:"messageCount"`
}

type lastMessageJSON struct {
	Body      string `json:"body"`
	Timestamp any    `json:"timestamp"`
	FromMe    bool   `json:"fromMe"`
}

func (ch *chat) toJSON() chatJSON {
	out := chatJSON{ChatID: ch.id, Name: ch.name, IsGroup: ch.isGroup, UnreadCount: ch.unread, MessageCount: len(ch.messages)}
	if m := ch.last(); m != nil {
		out.LastMessage = &lastMessageJSON{Body: m.body, Timestamp: m.timestamp(), FromMe: m.fromMe}
	}
	return out
}

// listChats answers GET /api/messages/{sessionId}/chats: page, limit (default 20), the chat
// with the newest message first.
func (s *Server) listChats(_ http.ResponseWriter, r *http.Request) (reply, error) {
	p, err := parsePage(r.URL.Query(), 20)
	if err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, d, err := s.connectedData(r.PathValue("sessionId"))
	if err != nil {
		return reply{}, err
	}
	chats := d.chatsByRecency()
	from, to := p.bounds(len(chats))
	out := make([]chatJSON, 0, to-from)
	for _, ch := range chats[from:to] {
		out = append(out, ch.toJSON())
	}
	return reply{data: map[string]any{"chats": out, "pagination": p.pagination(len(chats))}}, nil
}

// messageJSON is a message as the upstream answers it: the text in "body" or, for some, in
// "content"; the timestamp an ISO string or unix seconds.
type messageJSON struct {
	ID                int64   `json:"id"`
	WhatsappMessageID string  `json:"whatsappMessageId"`
	ChatID            string  `json:"chatId"`
	From              string  `json:"from"`
	To                string  `json:"to"`
	FromMe            bool    `json:"fromMe"`
	Type              string  `json:"type"`
	Body              *string `json:"body,omitempty"`
	Content           *string `json:"content,omitempty"`
	Timestamp         any     `json:"timestamp"`
	Status            string  `json:"status"`
	IsRead            bool    `json:"isRead"`
}

func (m *message) toJSON() messageJSON {
	out := messageJSON{ID: m.id, WhatsappMessageID: m.waID, ChatID: m.chatID, From: m.from, To: m.to,
		FromMe: m.fromMe, Type: m.kind, Timestamp: m.timestamp(), Status: m.status, IsRead: m.isRead}
	body := m.body
	if m.useContent {
		out.Content = &body
	} else {
		out.Body = &body
	}
	return out
}

// timestamp is the message time as unix seconds or as an ISO string.
func (m *message) timestamp() any {
	if m.unixTime {
		return m.at.Unix()
	}
	return isoTime(m.at)
}

// chatMessages answers GET /api/messages/{sessionId}/{chatId}: the chat's messages newest
// first, and chatInfo (null, with no messages, for an unknown chat).
func (s *Server) chatMessages(_ http.ResponseWriter, r *http.Request) (reply, error) {
	p, err := parsePage(r.URL.Query(), 50)
	if err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, d, err := s.connectedData(r.PathValue("sessionId"))
	if err != nil {
		return reply{}, err
	}
	ch := d.chatByID[r.PathValue("chatId")]
	if ch == nil {
		return reply{data: map[string]any{"messages": []messageJSON{}, "pagination": p.pagination(0), "chatInfo": nil}}, nil
	}
	n := len(ch.messages)
	from, to := p.bounds(n)
	out := make([]messageJSON, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, ch.messages[n-1-i].toJSON())
	}
	info := map[string]any{"chatId": ch.id, "name": ch.name, "isGroup": ch.isGroup,
		"unreadCount": ch.unread, "messageCount": n}
	return reply{data: map[string]any{"messages": out, "pagination": p.pagination(n), "chatInfo": info}}, nil
}

// messageFilter is the query of GET /api/messages/{sessionId}.
type messageFilter struct {
	chatID, kind string
	fromMe       *bool
	start, end   time.Time
}

func parseMessageFilter(q map[string][]string) (messageFilter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := messageFilter{chatID: get("chatId"), kind: get("type")}
	if v := get("fromMe"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, errValidation("fromMe", "must be true or false")
		}
		f.fromMe = &b
	}
	for _, d := range []struct {
		key string
		to  *time.Time
	}{{"startDate", &f.start}, {"endDate", &f.end}} {
		if v := get(d.key); v != "" {
			t, err := parseDate(v)
			if err != nil {
				return f, errValidation(d.key, "must be an ISO 8601 date or time")
			}
			*d.to = t
		}
	}
	return f, nil
}

// parseDate reads an RFC 3339 time or a plain date (the start of that day, UTC).
func parseDate(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, v)
}

func (f messageFilter) match(m *message) bool {
	return (f.chatID == "" || m.chatID == f.chatID) &&
		(f.kind == "" || m.kind == f.kind) &&
		(f.fromMe == nil || m.fromMe == *f.fromMe) &&
		(f.start.IsZero() || !m.at.Before(f.start)) &&
		(f.end.IsZero() || !m.at.After(f.end))
}

// allMessages answers GET /api/messages/{sessionId}: every message of the session, newest (by
// id) first, filtered by chatId, type, fromMe, startDate and endDate.
func (s *Server) allMessages(_ http.ResponseWriter, r *http.Request) (reply, error) {
	q := r.URL.Query()
	p, err := parsePage(q, 50)
	if err != nil {
		return reply{}, err
	}
	f, err := parseMessageFilter(q)
	if err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, d, err := s.connectedData(r.PathValue("sessionId"))
	if err != nil {
		return reply{}, err
	}
	skip := len(d.all) // past any possible page, unless the page is within reach
	if p.page-1 <= len(d.all)/p.limit {
		skip = (p.page - 1) * p.limit
	}
	out := make([]messageJSON, 0, p.limit)
	total := 0
	for i := len(d.all) - 1; i >= 0; i-- {
		m := d.all[i]
		if !f.match(m) {
			continue
		}
		if total >= skip && len(out) < p.limit {
			out = append(out, m.toJSON())
		}
		total++
	}
	return reply{data: map[string]any{"messages": out, "pagination": p.pagination(total)}}, nil
}

// sendRequest is the body of POST /api/messages/{sessionId}/send. Message is a string, or a
// media object whose caption becomes the body.
type sendRequest struct {
	To      string          `json:"to"`
	Message json.RawMessage `json:"message"`
	Type    string          `json:"type"`
}

// parse validates the request and returns the message type and text.
func (req sendRequest) parse() (kind, body string, err error) {
	if !isJID(req.To) {
		return "", "", errValidation("to", "must be a JID such as 34600000000@s.whatsapp.net")
	}
	kind = req.Type
	if kind == "" {
		kind = "text"
	}
	switch kind {
	case "text", "image", "video", "audio", "document":
	default:
		return "", "", errValidation("type", "must be text, image, video, audio or document")
	}
	raw := bytes.TrimSpace(req.Message)
	if len(raw) > 0 && raw[0] == '{' {
		var media struct {
			Caption string `json:"caption"`
			URL     string `json:"url"`
		}
		if json.Unmarshal(raw, &media) != nil || media.URL == "" {
			return "", "", errValidation("message", "media needs a url")
		}
		return kind, media.Caption, nil
	}
	if json.Unmarshal(raw, &body) != nil || strings.TrimSpace(body) == "" {
		return "", "", errValidation("message", "is required")
	}
	if len(body) > 65536 {
		return "", "", errValidation("message", "is too long")
	}
	return kind, body, nil
}

// isJID reports whether id is a WhatsApp JID: digits at s.whatsapp.net or lid, or a group.
func isJID(id string) bool {
	local, domain, ok := strings.Cut(id, "@")
	digits := func(s string) bool {
		return len(s) >= 5 && len(s) <= 20 && strings.Trim(s, "0123456789") == ""
	}
	switch {
	case !ok:
		return false
	case domain == "s.whatsapp.net" || domain == "lid":
		return digits(local)
	case domain == "g.us":
		owner, created, _ := strings.Cut(local, "-")
		return digits(owner) && (created == "" || digits(created))
	}
	return false
}

// sendMessage answers POST /api/messages/{sessionId}/send: the message is added to the chat
// (created if new) and message.sent is sent.
func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request) (reply, error) {
	var req sendRequest
	if err := decodeBody(w, r, &req); err != nil {
		return reply{}, err
	}
	kind, body, err := req.parse()
	if err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, d, err := s.connectedData(r.PathValue("sessionId"))
	if err != nil {
		return reply{}, err
	}
	now := s.clock()
	ch := d.chatFor(req.To)
	m := d.outgoing(ch, kind, body, now)
	d.appendMessage(ch, m)
	ss.lastActivity = now
	s.emitMessage(ss, "message.sent", m)
	return reply{message: "Mensaje enviado exitosamente", data: map[string]any{"message": map[string]any{
		"id": m.id, "whatsappMessageId": m.waID, "chatId": m.chatID, "fromMe": true, "body": m.body,
		"type": m.kind, "status": m.status, "timestamp": isoTime(m.at)}}}, nil
}

// markRead answers PUT /api/messages/{sessionId}/{chatId}/read with how many were unread.
func (s *Server) markRead(_ http.ResponseWriter, r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, d, err := s.connectedData(r.PathValue("sessionId"))
	if err != nil {
		return reply{}, err
	}
	marked := 0
	if ch := d.chatByID[r.PathValue("chatId")]; ch != nil {
		for _, m := range ch.messages {
			if !m.fromMe && !m.isRead {
				m.isRead = true
				marked++
			}
		}
		ch.unread = 0
	}
	return reply{message: "Mensajes marcados como leídos", data: map[string]any{"markedCount": marked}}, nil
}

// MutateContacts renames n contacts of the session (numeric id or sessionId), as a phone
// would, and returns their ids; for incremental sync tests. The data is generated if needed.
func (s *Server) MutateContacts(sessionID string, n int) ([]string, error) {
	if n < 0 {
		return nil, errValidation("n", "must not be negative")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.find(sessionID)
	if ss == nil {
		return nil, ErrUnknownSession
	}
	return s.ensureData(ss).renameContacts(n), nil
}

// AddMessages appends n incoming text messages to a chat of the session (numeric id or
// sessionId), creating the chat if chatID is a JID it does not have yet. Each message counts
// as unread, moves the chat's lastMessage and messageCount, and is sent as message.received.
func (s *Server) AddMessages(sessionID, chatID string, n int) error {
	if n < 1 || n > 10_000 {
		return errValidation("n", "must be 1..10000")
	}
	if !isJID(chatID) {
		return errValidation("chatId", "must be a JID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.find(sessionID)
	if ss == nil {
		return ErrUnknownSession
	}
	d, now := s.ensureData(ss), s.clock()
	ch := d.chatFor(chatID)
	for range n {
		m := d.incoming(ch, now)
		d.appendMessage(ch, m)
		s.emitMessage(ss, "message.received", m)
	}
	ss.lastActivity = now
	return nil
}
