package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"
)

// pagedContacts serves n contacts, paged by ?page and ?limit; withPagination false leaves the
// pagination object out (the client must then stop on a short page).
func pagedContacts(n int, withPagination bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if page < 1 || limit < 1 || limit > MaxLimit {
			writeJSON(w, 400, fail("VALIDATION_ERROR", "bad page"))
			return
		}
		items := []map[string]any{}
		for i := (page - 1) * limit; i < min(page*limit, n); i++ {
			items = append(items, map[string]any{"id": fmt.Sprintf("346%08d@s.whatsapp.net", i), "name": fmt.Sprint("c", i)})
		}
		data := map[string]any{"contacts": items}
		if withPagination {
			data["pagination"] = map[string]any{"total": n, "page": page, "limit": limit, "pages": (n + limit - 1) / limit}
		}
		writeJSON(w, 200, ok(data))
	}
}

func TestAllContactsWalksEveryPage(t *testing.T) {
	for _, withPagination := range []bool{true, false} {
		t.Run(fmt.Sprint("pagination=", withPagination), func(t *testing.T) {
			f := newFake(t)
			f.mux.HandleFunc("GET /api/contacts/{id}", pagedContacts(250, withPagination))
			c := f.client()
			var got []string
			for ct, err := range c.AllContacts(context.Background(), "abc_123", 0) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ct.ID)
			}
			if len(got) != 250 || got[0] != "34600000000@s.whatsapp.net" || got[249] != "34600000249@s.whatsapp.net" {
				t.Fatalf("%d contacts (%v ... )", len(got), got[:min(len(got), 2)])
			}
			if f.hits() != 3 {
				t.Errorf("%d pages asked, want 3", f.hits())
			}
		})
	}
}

func TestAllContactsStopsWhenConsumerStops(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/contacts/{id}", pagedContacts(1000, true))
	c := f.client()
	n := 0
	for _, err := range c.AllContacts(context.Background(), "abc_123", 50) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 75 {
			break
		}
	}
	if f.hits() != 2 {
		t.Errorf("%d pages asked for 75 items of 50 per page, want 2", f.hits())
	}
}

func TestAllChatsYieldsErrorAndStops(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/messages/{id}/chats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "2" {
			writeJSON(w, 500, fail("INTERNAL_ERROR", "column c.message_count does not exist"))
			return
		}
		writeJSON(w, 200, ok(map[string]any{
			"chats":      []map[string]any{{"chatId": "1@s.whatsapp.net"}, {"id": "2@g.us", "isGroup": true}},
			"pagination": map[string]any{"total": 4, "page": 1, "limit": 2, "pages": 2},
		}))
	})
	c := f.client()
	var ids []string
	var errs []error
	for ch, err := range c.AllChats(context.Background(), "abc_123", 2) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids = append(ids, ch.ChatID)
	}
	if len(ids) != 2 || ids[1] != "2@g.us" || len(errs) != 1 || !errors.Is(errs[0], ErrUnavailable) {
		t.Errorf("chats %v, errors %v", ids, errs)
	}
}

func TestAllChatMessages(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/messages/{id}/{chat}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("chat") != "34600000001@s.whatsapp.net" {
			writeJSON(w, 404, fail("", "no chat"))
			return
		}
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		msgs := []map[string]any{{"id": page*10 + 1, "body": "hola", "timestamp": 1699332304},
			{"id": page*10 + 2, "content": "adiós", "timestamp": "2023-11-07T04:45:04.000Z"}}
		writeJSON(w, 200, ok(map[string]any{"messages": msgs, "chatInfo": map[string]any{},
			"pagination": map[string]any{"total": "6", "page": page, "limit": 2}}))
	})
	c := f.client()
	var got []Message
	for m, err := range c.AllChatMessages(context.Background(), "abc_123", "34600000001@s.whatsapp.net", 2) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if len(got) != 6 || got[0].ID != "11" || got[1].Body != "adiós" || !got[0].Timestamp.Equal(got[1].Timestamp) {
		t.Errorf("messages %+v", got)
	}
}

func TestSendText(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("POST /api/messages/{id}/send", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 201, ok(map[string]any{"message": map[string]any{"id": 7, "whatsappMessageId": "3EB0AA",
			"chatId": "34600000001@s.whatsapp.net", "fromMe": true, "body": "hola", "status": "pending", "timestamp": 1699332304}}))
	})
	c := f.client()
	m, err := c.SendText(context.Background(), "abc_123", "34600000001@s.whatsapp.net", "hola")
	if err != nil || m.WhatsappMessageID != "3EB0AA" || !m.FromMe || m.ID != "7" {
		t.Fatalf("SendText = %+v, %v", m, err)
	}
	r := f.requests()[0]
	if r.Path != "/api/messages/abc_123/send" || r.ContentType != "application/json" ||
		string(r.Body) != `{"message":"hola","to":"34600000001@s.whatsapp.net","type":"text"}` {
		t.Errorf("request %+v body %s", r, r.Body)
	}
}
