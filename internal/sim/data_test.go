package sim

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
)

type contactData struct {
	ID          string  `json:"id"`
	Name        *string `json:"name"`
	Notify      *string `json:"notify"`
	IsUser      bool    `json:"isUser"`
	IsGroup     bool    `json:"isGroup"`
	IsWAContact bool    `json:"isWAContact"`
}

type chatData struct {
	ChatID      string `json:"chatId"`
	Name        string `json:"name"`
	IsGroup     bool   `json:"isGroup"`
	LastMessage *struct {
		Body      string `json:"body"`
		Timestamp any    `json:"timestamp"`
		FromMe    bool   `json:"fromMe"`
	} `json:"lastMessage"`
	UnreadCount  int `json:"unreadCount"`
	MessageCount int `json:"messageCount"`
}

type messageData struct {
	ID                int64   `json:"id"`
	WhatsappMessageID string  `json:"whatsappMessageId"`
	ChatID            string  `json:"chatId"`
	FromMe            bool    `json:"fromMe"`
	Type              string  `json:"type"`
	Body              *string `json:"body"`
	Content           *string `json:"content"`
	Timestamp         any     `json:"timestamp"`
	Status            string  `json:"status"`
}

type contactsPage struct {
	Contacts   []contactData `json:"contacts"`
	Pagination pageInfo      `json:"pagination"`
}

type chatsPage struct {
	Chats      []chatData `json:"chats"`
	Pagination pageInfo   `json:"pagination"`
}

type messagesPage struct {
	Messages   []messageData  `json:"messages"`
	Pagination pageInfo       `json:"pagination"`
	ChatInfo   map[string]any `json:"chatInfo"`
}

// allContacts reads every page of the session's contacts.
func allContacts(t *testing.T, c *client, query string) []contactData {
	t.Helper()
	var out []contactData
	for page := 1; ; page++ {
		var d contactsPage
		c.get(fmt.Sprintf("/api/contacts/demo_session?limit=100&page=%d%s", page, query)).must(t, http.StatusOK, &d)
		out = append(out, d.Contacts...)
		if page >= d.Pagination.Pages {
			if len(out) != d.Pagination.Total {
				t.Fatalf("read %d contacts over %d pages, total says %d", len(out), page, d.Pagination.Total)
			}
			return out
		}
	}
}

func TestLargeDataPagesThrough(t *testing.T) {
	o := testOptions()
	o.Contacts, o.Chats, o.MessagesPerChat = 25_000, 2_000, 30
	_, c := startSim(t, o)
	start := time.Now()
	contacts := allContacts(t, c, "")
	// Logged, not asserted: a test never judges wall time (about 3 s under -race on an idle
	// machine; work that grows with the data on every request shows here as minutes).
	t.Logf("paged through 25,000 contacts in %v", time.Since(start).Round(time.Millisecond))
	if len(contacts) != 25_000 {
		t.Fatalf("got %d contacts", len(contacts))
	}
	ids := map[string]bool{}
	var lid, group, phone, unnamed, nonLatin int
	for _, ct := range contacts {
		if ids[ct.ID] {
			t.Fatalf("contact %s appears twice", ct.ID)
		}
		ids[ct.ID] = true
		switch {
		case strings.HasSuffix(ct.ID, "@lid"):
			lid++
		case strings.HasSuffix(ct.ID, "@g.us"):
			group++
			if !ct.IsGroup || ct.IsUser {
				t.Errorf("group %s flags: %+v", ct.ID, ct)
			}
		case strings.HasSuffix(ct.ID, "@s.whatsapp.net"):
			phone++
		default:
			t.Errorf("contact id %q is not a JID", ct.ID)
		}
		if ct.Name == nil || *ct.Name == "" {
			unnamed++
		} else if strings.IndexFunc(*ct.Name, func(r rune) bool { return r > unicode.MaxLatin1 }) >= 0 {
			nonLatin++
		}
	}
	if lid < 2000 || lid > 3000 || group == 0 || unnamed == 0 || nonLatin == 0 || phone < 20000 {
		t.Errorf("mix: %d lid, %d groups, %d phone, %d unnamed, %d beyond Latin-1", lid, group, phone, unnamed, nonLatin)
	}

	var chats chatsPage
	c.get("/api/messages/demo_session/chats?limit=100&page=20").must(t, http.StatusOK, &chats)
	if chats.Pagination.Total != 2000 || len(chats.Chats) != 100 {
		t.Errorf("chats: %+v with %d on page 20", chats.Pagination, len(chats.Chats))
	}
	var msgs messagesPage
	c.get("/api/messages/demo_session?limit=100&page=600").must(t, http.StatusOK, &msgs)
	if msgs.Pagination.Total != 60_000 || len(msgs.Messages) != 100 {
		t.Errorf("messages: %+v with %d on the last page", msgs.Pagination, len(msgs.Messages))
	}
}

func TestSameSeedSameData(t *testing.T) {
	paths := []string{
		"/api/contacts/demo_session?limit=100&page=2",
		"/api/messages/demo_session/chats?limit=100",
		"/api/messages/demo_session?limit=100&page=3",
	}
	read := func(seed int64) [][]byte {
		o := testOptions()
		o.Seed = seed
		_, c := startSim(t, o)
		var out [][]byte
		for _, p := range paths {
			r := c.get(p)
			r.must(t, http.StatusOK, nil)
			out = append(out, r.env.Data)
		}
		return out
	}
	a, b, other := read(7), read(7), read(8)
	for i, p := range paths {
		if !bytes.Equal(a[i], b[i]) {
			t.Errorf("%s: seed 7 gave different data twice", p)
		}
		if bytes.Equal(a[i], other[i]) {
			t.Errorf("%s: seeds 7 and 8 gave the same data", p)
		}
	}
}

func TestContactSearch(t *testing.T) {
	_, c := startSim(t, testOptions())
	all := allContacts(t, c, "")
	var name string
	for _, ct := range all {
		if ct.Name != nil && len([]rune(*ct.Name)) > 6 {
			name = *ct.Name
			break
		}
	}
	needle := strings.ToUpper(string([]rune(name)[1:5]))
	found := allContacts(t, c, "&search="+url.QueryEscape(needle))
	if len(found) == 0 || len(found) == len(all) {
		t.Fatalf("search %q found %d of %d", needle, len(found), len(all))
	}
	for _, ct := range found {
		if ct.Name == nil || !strings.Contains(strings.ToLower(*ct.Name), strings.ToLower(needle)) {
			t.Errorf("search %q matched %+v", needle, ct)
		}
	}
	byID := allContacts(t, c, "&search="+url.QueryEscape(all[3].ID[:8]))
	if len(byID) == 0 {
		t.Errorf("search by id prefix %q found nothing", all[3].ID[:8])
	}
}

func TestChatsAndMessages(t *testing.T) {
	_, c := startSim(t, testOptions())
	var chats chatsPage
	c.get("/api/messages/demo_session/chats?limit=100").must(t, http.StatusOK, &chats)
	if chats.Pagination.Total != 40 || len(chats.Chats) != 40 {
		t.Fatalf("chats: %+v, %d answered", chats.Pagination, len(chats.Chats))
	}
	for _, ch := range chats.Chats {
		if ch.MessageCount != 25 || ch.LastMessage == nil {
			t.Errorf("chat %+v", ch)
		}
	}
	ch := chats.Chats[0]
	var page messagesPage
	c.get("/api/messages/demo_session/"+ch.ChatID+"?limit=100").must(t, http.StatusOK, &page)
	if len(page.Messages) != 25 || page.Pagination.Total != 25 || page.ChatInfo["chatId"] != ch.ChatID {
		t.Fatalf("messages of %s: %d, %+v, %v", ch.ChatID, len(page.Messages), page.Pagination, page.ChatInfo)
	}
	for i := 1; i < len(page.Messages); i++ {
		if page.Messages[i-1].ID <= page.Messages[i].ID {
			t.Fatalf("messages not newest first: id %d before %d", page.Messages[i-1].ID, page.Messages[i].ID)
		}
	}

	var all messagesPage
	var isoTimes, unixTimes, contents, fromMe int
	for p := 1; p <= 10; p++ {
		c.get(fmt.Sprintf("/api/messages/demo_session?limit=100&page=%d", p)).must(t, http.StatusOK, &all)
		for _, m := range all.Messages {
			switch m.Timestamp.(type) {
			case string:
				isoTimes++
			case float64:
				unixTimes++
			}
			if m.Content != nil && m.Body == nil {
				contents++
			}
			if m.FromMe {
				fromMe++
			}
			if m.WhatsappMessageID == "" {
				t.Errorf("message %d has no whatsappMessageId", m.ID)
			}
		}
	}
	if all.Pagination.Total != 1000 || isoTimes == 0 || unixTimes == 0 || contents == 0 || fromMe == 0 || fromMe == 1000 {
		t.Errorf("total %d; %d ISO and %d unix timestamps, %d in content, %d fromMe",
			all.Pagination.Total, isoTimes, unixTimes, contents, fromMe)
	}

	var mine messagesPage
	c.get("/api/messages/demo_session?limit=100&fromMe=true&chatId="+ch.ChatID).must(t, http.StatusOK, &mine)
	for _, m := range mine.Messages {
		if !m.FromMe || m.ChatID != ch.ChatID {
			t.Errorf("filter fromMe=true chatId=%s answered %+v", ch.ChatID, m)
		}
	}
	if mine.Pagination.Total == 0 || mine.Pagination.Total >= 25 {
		t.Errorf("filtered total %d", mine.Pagination.Total)
	}
}

func TestPageValidation(t *testing.T) {
	_, c := startSim(t, testOptions())
	for _, path := range []string{"/api/contacts/demo_session", "/api/messages/demo_session/chats", "/api/messages/demo_session", "/api/sessions"} {
		for _, q := range []string{"limit=101", "limit=0", "limit=ten", "page=0", "page=-1"} {
			t.Run(path+"?"+q, func(t *testing.T) {
				c.get(path+"?"+q).mustError(t, http.StatusBadRequest, codeValidation)
			})
		}
		t.Run(path+" limit=100", func(t *testing.T) {
			c.get(path+"?limit=100").must(t, http.StatusOK, nil)
		})
	}
	var d contactsPage
	c.get("/api/contacts/demo_session").must(t, http.StatusOK, &d)
	if d.Pagination.Limit != 50 || len(d.Contacts) != 50 {
		t.Errorf("default contacts limit %d (%d answered), want 50", d.Pagination.Limit, len(d.Contacts))
	}
	var chats chatsPage
	c.get("/api/messages/demo_session/chats").must(t, http.StatusOK, &chats)
	if chats.Pagination.Limit != 20 {
		t.Errorf("default chats limit %d, want 20", chats.Pagination.Limit)
	}
	c.get("/api/contacts/demo_session?page=99999999999999").must(t, http.StatusOK, &d)
	if len(d.Contacts) != 0 {
		t.Errorf("a page past the end answered %d contacts", len(d.Contacts))
	}
}

func TestSendMessage(t *testing.T) {
	_, c := startSim(t, testOptions())
	tests := []struct {
		name string
		body map[string]any
		code string
	}{
		{"bare number", map[string]any{"to": "34600111222", "message": "hola", "type": "text"}, codeValidation},
		{"plus number", map[string]any{"to": "+34600111222@s.whatsapp.net", "message": "hola"}, codeValidation},
		{"empty text", map[string]any{"to": "34600111222@s.whatsapp.net", "message": ""}, codeValidation},
		{"unknown type", map[string]any{"to": "34600111222@s.whatsapp.net", "message": "x", "type": "sticker"}, codeValidation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.do(http.MethodPost, "/api/messages/demo_session/send", tt.body).mustError(t, http.StatusBadRequest, tt.code)
		})
	}
	c.do(http.MethodPost, "/api/messages/support_desk/send", map[string]any{"to": "34600111222@s.whatsapp.net", "message": "x"}).
		mustError(t, http.StatusBadRequest, codeSessionNotConn)

	const to = "34600111222@s.whatsapp.net"
	var sent struct {
		Message messageData `json:"message"`
	}
	c.do(http.MethodPost, "/api/messages/demo_session/send", map[string]any{"to": to, "message": "¿Hola? 👋", "type": "text"}).
		must(t, http.StatusOK, &sent)
	m := sent.Message
	if m.ID == 0 || !strings.HasPrefix(m.WhatsappMessageID, "3EB0") || m.ChatID != to || !m.FromMe ||
		m.Body == nil || *m.Body != "¿Hola? 👋" || m.Type != "text" || m.Status != "sent" {
		t.Errorf("sent %+v", m)
	}
	var chats chatsPage
	c.get("/api/messages/demo_session/chats?limit=1").must(t, http.StatusOK, &chats)
	if first := chats.Chats[0]; first.ChatID != to || first.MessageCount != 1 || first.LastMessage.Body != "¿Hola? 👋" {
		t.Errorf("newest chat %+v", first)
	}
	if chats.Pagination.Total != 41 {
		t.Errorf("chats total %d after a message to a new chat, want 41", chats.Pagination.Total)
	}
	var page messagesPage
	c.get("/api/messages/demo_session/"+to).must(t, http.StatusOK, &page)
	if len(page.Messages) != 1 || page.Messages[0].WhatsappMessageID != m.WhatsappMessageID {
		t.Errorf("chat messages %+v", page.Messages)
	}
}

func TestMutateContactsAndAddMessages(t *testing.T) {
	s, c := startSim(t, testOptions())
	before := map[string]string{}
	for _, ct := range allContacts(t, c, "") {
		if ct.Name != nil {
			before[ct.ID] = *ct.Name
		}
	}
	ids, err := s.MutateContacts("demo_session", 30)
	if err != nil || len(ids) != 30 {
		t.Fatalf("MutateContacts: %d ids, %v", len(ids), err)
	}
	changed := map[string]bool{}
	for _, ct := range allContacts(t, c, "") {
		if ct.Name != nil && before[ct.ID] != *ct.Name {
			changed[ct.ID] = true
		}
	}
	for _, id := range ids {
		if !changed[id] {
			t.Errorf("contact %s was reported changed but kept its name", id)
		}
	}
	if len(changed) != 30 {
		t.Errorf("%d contacts changed, want 30", len(changed))
	}

	var chats chatsPage
	c.get("/api/messages/demo_session/chats?limit=100").must(t, http.StatusOK, &chats)
	old := chats.Chats[len(chats.Chats)-1]
	if err := s.AddMessages("demo_session", old.ChatID, 3); err != nil {
		t.Fatal(err)
	}
	c.get("/api/messages/demo_session/chats?limit=1").must(t, http.StatusOK, &chats)
	got := chats.Chats[0]
	if got.ChatID != old.ChatID || got.MessageCount != old.MessageCount+3 || got.UnreadCount != old.UnreadCount+3 ||
		got.LastMessage.FromMe {
		t.Errorf("after 3 incoming messages: %+v, was %+v", got, old)
	}
	var marked map[string]int
	c.do(http.MethodPut, "/api/messages/demo_session/"+old.ChatID+"/read", nil).must(t, http.StatusOK, &marked)
	if marked["markedCount"] != got.UnreadCount {
		t.Errorf("markedCount %d, want %d", marked["markedCount"], got.UnreadCount)
	}
	if err := s.AddMessages("nobody", old.ChatID, 1); err != ErrUnknownSession {
		t.Errorf("unknown session: %v", err)
	}
}

// TestConcurrentUse drives reads, sends, logins and admin changes at once; under -race it
// proves the simulator is safe for concurrent use.
func TestConcurrentUse(t *testing.T) {
	url, _ := startReceiver(t)
	o := testOptions()
	o.WebhookURL = url
	s, c := startSim(t, o)
	work := []func(i int){
		func(int) { c.get("/api/contacts/demo_session?limit=100&search=a") },
		func(int) { c.get("/api/messages/demo_session/chats") },
		func(int) { c.get("/api/messages/demo_session?fromMe=true") },
		func(i int) {
			c.do(http.MethodPost, "/api/messages/demo_session/send",
				map[string]any{"to": fmt.Sprintf("3460011%04d@s.whatsapp.net", i), "message": "hola"})
		},
		func(int) {
			c.do(http.MethodPost, "/api/auth/login", map[string]string{"identifier": testIdentifier, "password": testPassword})
		},
		func(int) { _, _ = s.MutateContacts("demo_session", 3) },
		func(i int) { _ = s.AddMessages("demo_session", fmt.Sprintf("3460022%04d@s.whatsapp.net", i), 2) },
		func(int) { s.SetFaults(Faults{}); _ = s.Counters() },
	}
	var wg sync.WaitGroup
	for _, w := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				w(i)
			}
		}()
	}
	wg.Wait()
	if got := s.Counters().Requests["POST /api/messages/{sessionId}/send"]; got != 20 {
		t.Errorf("sends counted %d, want 20", got)
	}
}
