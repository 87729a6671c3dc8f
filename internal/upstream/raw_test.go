package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
)

func TestDoRelaysAnswersVerbatim(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/contacts/{id}/info/{contact}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(404)
		_, _ = w.Write([]byte(`{"success":false,"error":"Contacto no encontrado","code":"CONTACT_NOT_FOUND"}`))
	})
	var token string
	f.mux.HandleFunc("PUT /api/messages/{id}/{chat}/read", func(w http.ResponseWriter, r *http.Request) {
		token = r.Header.Get("Authorization")
		if token != "Bearer tok-2" {
			writeJSON(w, 401, fail("INVALID_TOKEN", "expired"))
			return
		}
		writeJSON(w, 200, ok(map[string]any{"markedCount": 3}))
	})
	profileAccepts(f, "tok-2")
	lim := &fakeLimiter{}
	tokens := newTokens("tok-1", "tok-2")
	c := f.client(WithTokenSource(tokens), WithLimiter(lim))
	ctx := context.Background()

	res, err := c.Do(ctx, RawRequest{Method: "GET", Path: "/api/contacts/abc_123/info/346@s.whatsapp.net"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 404 || res.Header.Get("X-Upstream") != "yes" ||
		string(res.Body) != `{"success":false,"error":"Contacto no encontrado","code":"CONTACT_NOT_FOUND"}` {
		t.Errorf("relayed %d %v %s", res.Status, res.Header, res.Body)
	}

	res, err = c.Do(ctx, RawRequest{Method: "PUT", Path: "/api/messages/abc_123/346@s.whatsapp.net/read",
		Query: url.Values{"x": {"1"}}})
	if err != nil || res.Status != 200 || len(tokens.rejections()) != 1 {
		t.Fatalf("after 401: %+v, %v, rejections %v", res, err, tokens.rejections())
	}
	if got := f.requests(); got[1].Path != "/api/messages/abc_123/346@s.whatsapp.net/read" || got[1].Query != "x=1" {
		t.Errorf("request %+v", got[1])
	}
	if _, err := c.Do(ctx, RawRequest{Method: "POST", Path: "/api/messages/abc_123/send", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	cats := lim.categories()
	if cats[len(cats)-1] != CategorySend || cats[0] != CategoryRead {
		t.Errorf("categories %v", cats)
	}
}

func TestDoSecondUnauthorizedIsAnError(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 401, fail("INVALID_TOKEN", "expired"))
	})
	profileAccepts(f)
	c := f.client(WithTokenSource(newTokens("tok-1")))
	_, err := c.Do(context.Background(), RawRequest{Method: "GET", Path: "/api/sessions"})
	if !errors.Is(err, ErrUnauthorized) || f.hits() != 3 {
		t.Fatalf("error %v after %d requests, want ErrUnauthorized after 3 (route, profile, route)", err, f.hits())
	}
}

func TestDoRefusesBadPaths(t *testing.T) {
	f := newFake(t)
	c := f.client()
	for _, p := range []string{"/health", "/api", "/api/", "/api/../health", "/api/sessions/./1", "/api//sessions", "api/sessions"} {
		if _, err := c.Do(context.Background(), RawRequest{Method: "GET", Path: p}); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	if _, err := c.Do(context.Background(), RawRequest{Method: "TRACE", Path: "/api/sessions"}); err == nil {
		t.Error("TRACE accepted")
	}
	if f.hits() != 0 {
		t.Errorf("%d requests for refused paths", f.hits())
	}
}

func TestMatchRoute(t *testing.T) {
	tests := map[string]string{
		"/api/messages/abc/chats":          "/api/messages/:sessionId/chats",
		"/api/messages/abc/send":           "/api/messages/:sessionId/send",
		"/api/messages/abc/346@c.us":       "/api/messages/:sessionId/:chatId",
		"/api/sessions/93/status":          "/api/sessions/:id/status",
		"/api/contacts/abc/info/1@s.w.net": "/api/contacts/:sessionId/info/:contactId",
		"/api/templates/5":                 "/api/*",
	}
	for p, want := range tests {
		segs, ok := rawSegments(p)
		if !ok {
			t.Fatalf("%s refused", p)
		}
		if got := matchRoute(segs); got != want {
			t.Errorf("matchRoute(%s) = %s, want %s", p, got, want)
		}
	}
}
