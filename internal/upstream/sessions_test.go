package upstream

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// sessionsFake serves sessions whose numeric ids it can change (a session recreated). The
// /api/sessions/:id routes take only numeric ids, as on the deployments where the string 404s,
// unless byString is set.
type sessionsFake struct {
	*fake
	mu       sync.Mutex
	ids      map[string]int64
	byString bool
}

func newSessionsFake(t *testing.T) *sessionsFake {
	s := &sessionsFake{fake: newFake(t), ids: map[string]int64{"abc_123": 93, "other_1": 94}}
	session := func(sid string, id int64) map[string]any {
		return map[string]any{"id": id, "sessionId": sid, "sessionName": "Ventas", "status": "Connected",
			"isConnected": true, "phoneNumberId": "34657032985:71@s.whatsapp.net", "lastActivity": 1699332304}
	}
	find := func(key string) (string, int64, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for sid, id := range s.ids {
			if key == itoa(id) || (s.byString && key == sid) {
				return sid, id, true
			}
		}
		return "", 0, false
	}
	s.mux.HandleFunc("GET /api/sessions", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		var list []map[string]any
		for _, sid := range []string{"abc_123", "other_1"} {
			if id, ok := s.ids[sid]; ok {
				list = append(list, session(sid, id))
			}
		}
		s.mu.Unlock()
		writeJSON(w, 200, ok(map[string]any{"sessions": list,
			"pagination": map[string]any{"total": len(list), "page": 1, "limit": 100, "pages": 1}}))
	})
	s.mux.HandleFunc("GET /api/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		sid, id, found := find(r.PathValue("id"))
		if !found {
			writeJSON(w, 404, fail("SESSION_NOT_FOUND", "Sesión no encontrada"))
			return
		}
		writeJSON(w, 200, ok(map[string]any{"session": session(sid, id)}))
	})
	s.mux.HandleFunc("GET /api/sessions/{id}/status", func(w http.ResponseWriter, r *http.Request) {
		sid, id, found := find(r.PathValue("id"))
		if !found {
			writeJSON(w, 404, fail("SESSION_NOT_FOUND", "Sesión no encontrada"))
			return
		}
		writeJSON(w, 200, ok(map[string]any{"id": id, "sessionId": sid, "status": "CONNECTED", "isConnected": true}))
	})
	s.mux.HandleFunc("POST /api/sessions/{id}/connect", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, ok(map[string]any{"sessionId": "abc_123", "status": "connecting"}))
	})
	s.mux.HandleFunc("GET /api/sessions/{id}/qr", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 404, fail("QR_NOT_READY", "QR no disponible"))
	})
	s.mux.HandleFunc("GET /api/contacts/{sessionId}", contactsOK)
	return s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (s *sessionsFake) count(p string) int {
	n := 0
	for _, got := range s.paths() {
		if got == p {
			n++
		}
	}
	return n
}

func TestSessionIDMapping(t *testing.T) {
	s := newSessionsFake(t)
	c := s.client()
	ctx := context.Background()

	st, err := c.SessionStatus(ctx, "abc_123")
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != 93 || st.SessionID != "abc_123" || NormalizeStatus(st.Status) != StatusConnected {
		t.Errorf("status %+v", st)
	}
	// The string id 404s on /api/sessions/:id here, so the client found the numeric id in the list.
	want := []string{"GET /api/sessions/abc_123", "GET /api/sessions", "GET /api/sessions/93/status"}
	if got := s.paths(); !slices.Equal(got, want) {
		t.Errorf("requests %v, want %v", got, want)
	}
	// Known now: straight to the numeric route. Contacts take the string id.
	if _, err := c.SessionStatus(ctx, "abc_123"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Contacts(ctx, "abc_123", ListParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connect(ctx, "abc_123"); err != nil {
		t.Fatal(err)
	}
	want = append(want, "GET /api/sessions/93/status", "GET /api/contacts/abc_123", "POST /api/sessions/93/connect")
	if got := s.paths(); !slices.Equal(got, want) {
		t.Errorf("requests %v, want %v", got, want)
	}
}

func TestSessionIDMappingFromGet(t *testing.T) {
	s := newSessionsFake(t)
	s.byString = true
	c := s.client()
	sess, err := c.GetSession(context.Background(), "abc_123")
	if err != nil || sess.ID != 93 || sess.PhoneNumberID != "34657032985:71@s.whatsapp.net" || sess.LastActivity.Unix() != 1699332304 {
		t.Fatalf("GetSession = %+v, %v", sess, err)
	}
	if _, err := c.SessionStatus(context.Background(), "abc_123"); err != nil {
		t.Fatal(err)
	}
	want := []string{"GET /api/sessions/abc_123", "GET /api/sessions/93/status"}
	if got := s.paths(); !slices.Equal(got, want) {
		t.Errorf("requests %v, want %v", got, want)
	}
}

func TestSessionIDLookupIsShared(t *testing.T) {
	s := newSessionsFake(t)
	c := s.client()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 10 {
		wg.Go(func() {
			if _, err := c.SessionStatus(context.Background(), "abc_123"); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d calls failed", failed.Load())
	}
	if n := s.count("GET /api/sessions/abc_123") + s.count("GET /api/sessions"); n != 2 {
		t.Errorf("%d lookup requests for 10 concurrent calls, want 2 (one lookup)", n)
	}
	if n := s.count("GET /api/sessions/93/status"); n != 10 {
		t.Errorf("%d status requests, want 10", n)
	}
}

func TestSessionRecreatedUnderNewID(t *testing.T) {
	s := newSessionsFake(t)
	c := s.client()
	ctx := context.Background()
	if _, err := c.SessionStatus(ctx, "abc_123"); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.ids["abc_123"] = 95
	s.mu.Unlock()
	st, err := c.SessionStatus(ctx, "abc_123")
	if err != nil || st.ID != 95 {
		t.Fatalf("status after recreation: %+v, %v", st, err)
	}
	if n := s.count("GET /api/sessions/95/status"); n != 1 {
		t.Errorf("new id used %d times", n)
	}
}

func TestUnknownSession(t *testing.T) {
	s := newSessionsFake(t)
	c := s.client()
	_, err := c.SessionStatus(context.Background(), "nope_999")
	if got := matched(err); len(got) != 1 || got[0] != ErrSessionNotFound {
		t.Fatalf("error %v matches %v, want ErrSessionNotFound", err, got)
	}
	if _, err := c.SessionStatus(context.Background(), ""); err == nil {
		t.Error("empty session id accepted")
	}
}

func TestQRNotReady(t *testing.T) {
	s := newSessionsFake(t)
	c := s.client()
	_, err := c.QR(context.Background(), "abc_123")
	if got := matched(err); len(got) != 1 || got[0] != ErrNotFound {
		t.Fatalf("error %v matches %v, want ErrNotFound", err, got)
	}
	// A QR 404 is not a stale id: no second lookup.
	if n := s.count("GET /api/sessions"); n != 1 {
		t.Errorf("%d list lookups", n)
	}
}

func TestListSessions(t *testing.T) {
	s := newSessionsFake(t)
	c := s.client()
	var got []string
	for sess, err := range c.AllSessions(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, sess.SessionID)
	}
	if !slices.Equal(got, []string{"abc_123", "other_1"}) {
		t.Errorf("sessions %v", got)
	}
	if _, err := c.SessionStatus(context.Background(), "other_1"); err != nil {
		t.Fatal(err)
	}
	if n := s.count("GET /api/sessions/94/status"); n != 1 {
		t.Errorf("the list did not teach the id: %v", s.paths())
	}
}
