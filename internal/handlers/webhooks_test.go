package handlers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/auth"
	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/testutil/redistest"
	"github.com/inboxhub-gateway/gateway/internal/testutil/wait"
	"github.com/inboxhub-gateway/gateway/internal/webhooks"
)

const (
	hookSecret   = "handler-test-webhook-secret"
	hookAdminKey = "handler-test-admin-key-0001"
	hookReadKey  = "handler-test-reader-key-0001"
)

// webhookTestAPI is the webhook route and the dead-letter routes over a real webhooks.Service (real
// Redis), behind the real caller authentication, served over HTTP. The CRM events URL answers
// crmStatus.
type webhookTestAPI struct {
	url       string
	svc       *webhooks.Service
	crmStatus atomic.Int64
	crmHits   atomic.Int64
}

func newWebhookTestAPI(t *testing.T, secret string, forward bool) *webhookTestAPI {
	t.Helper()
	api := &webhookTestAPI{}
	api.crmStatus.Store(http.StatusNoContent)
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.crmHits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(int(api.crmStatus.Load()))
	}))
	t.Cleanup(crm.Close)
	cfg := webhooks.Config{Redis: redistest.New(t), Secret: secret, Workers: 2, TaskCheck: 20 * time.Millisecond,
		Attempts: 1, SweepInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	if forward {
		cfg.EventsURL, cfg.SigningSecret = crm.URL, "crm-signing-secret"
	}
	svc, err := webhooks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Shutdown)
	api.svc = svc

	authn, err := auth.New(auth.Options{APIKeys: []config.APIKey{
		{Name: "ops", SHA256: sha256.Sum256([]byte(hookAdminKey)), Scopes: []string{"admin"}, Plain: true},
		{Name: "reader", SHA256: sha256.Sum256([]byte(hookReadKey)), Scopes: []string{"sessions:read"}, Plain: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	logger := slog.New(slog.DiscardHandler)
	r.Use(middleware.RequestID(), middleware.Recovery(logger), middleware.Errors(logger), middleware.BodyLimit(1<<20))
	r.NoRoute(middleware.NotFound())
	registerWebhooks(r, svc)
	v1 := r.Group("/v1", authn.Middleware())
	registerDeadLetters(v1, auth.Require, svc)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	api.url = srv.URL
	return api
}

type hookAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a hookAnswer) problem(t *testing.T) problem.Details {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type %q, body %s", ct, a.body)
	}
	var d problem.Details
	if err := json.Unmarshal(a.body, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (api *webhookTestAPI) do(t *testing.T, method, path, body string, headers map[string]string) hookAnswer {
	t.Helper()
	req, err := http.NewRequest(method, api.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return hookAnswer{status: resp.StatusCode, header: resp.Header, body: b}
}

func hookSign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// hookHeaders are the headers of a delivery of body signed with secret at time at.
func hookHeaders(secret, body string, at time.Time) map[string]string {
	return map[string]string{"Content-Type": "application/json", HeaderWebhookSignature: hookSign(secret, body),
		HeaderWebhookTimestamp: strconv.FormatInt(at.UnixMilli(), 10)}
}

func hookMessage(id string) string {
	return `{"event": "message.received", "data": {"sessionId": "demo_session", "message": {"whatsappMessageId": "` + id +
		`", "content": "hola", "chatId": "34600111222@s.whatsapp.net", "from": "34600111222@s.whatsapp.net"}}}`
}

func TestWebhookRoute(t *testing.T) {
	api := newWebhookTestAPI(t, hookSecret, false)
	now := time.Now()
	msg := hookMessage("3EB0HANDLER")

	t.Run("webhook202", func(t *testing.T) {
		// No caller credential: the signature authenticates the upstream.
		a := api.do(t, http.MethodPost, "/webhooks/inbox-hub", msg, hookHeaders(hookSecret, msg, now))
		if a.status != http.StatusAccepted {
			t.Fatalf("%d %s", a.status, a.body)
		}
		var ans WebhookAnswer
		if err := json.Unmarshal(a.body, &ans); err != nil {
			t.Fatal(err)
		}
		if !webhooks.ValidEventID(ans.Data.EventID) || ans.Data.Type != "message.received" || ans.Data.SessionID != "demo_session" ||
			ans.Data.Duplicate || ans.Data.Ignored {
			t.Fatalf("%+v", ans.Data)
		}
		// The same message again (another delivery): acknowledged as a duplicate.
		a = api.do(t, http.MethodPost, "/webhooks/inbox-hub", msg, hookHeaders(hookSecret, msg, now.Add(time.Second)))
		if a.status != http.StatusAccepted || !strings.Contains(string(a.body), `"duplicate":true`) {
			t.Fatalf("%d %s", a.status, a.body)
		}
		// An event the gateway does not handle: acknowledged, ignored.
		other := `{"event": "group.joined", "data": {"sessionId": "demo_session"}}`
		a = api.do(t, http.MethodPost, "/webhooks/inbox-hub", other, hookHeaders(hookSecret, other, now))
		if a.status != http.StatusAccepted || !strings.Contains(string(a.body), `"ignored":true`) {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})

	t.Run("webhook401", func(t *testing.T) {
		body := `{"event": "session.connected", "data": {"sessionId": "demo_session"}}`
		for name, h := range map[string]map[string]string{
			"tampered body":     hookHeaders(hookSecret, strings.Replace(body, "connected", "disconnected", 1), now),
			"wrong secret":      hookHeaders("not-the-secret", body, now),
			"missing signature": {HeaderWebhookTimestamp: strconv.FormatInt(now.UnixMilli(), 10)},
			"stale timestamp":   hookHeaders(hookSecret, body, now.Add(-6*time.Minute)),
			"future timestamp":  hookHeaders(hookSecret, body, now.Add(2*time.Minute)),
			"missing timestamp": {HeaderWebhookSignature: hookSign(hookSecret, body)},
		} {
			a := api.do(t, http.MethodPost, "/webhooks/inbox-hub", body, h)
			if a.status != http.StatusUnauthorized {
				t.Errorf("%s: %d %s", name, a.status, a.body)
				continue
			}
			if d := a.problem(t); d.Code != problem.CodeUnauthenticated || !strings.Contains(d.Detail, "X-Webhook-") {
				t.Errorf("%s: %+v", name, d)
			}
		}
	})

	t.Run("webhook400", func(t *testing.T) {
		for name, tc := range map[string]struct{ body, field string }{
			"not JSON":         {`{"event": "message.received", `, "body"},
			"no session":       {`{"event": "session.connected", "data": {}}`, "sessionId"},
			"bad session":      {`{"event": "session.connected", "sessionId": "no/slashes"}`, "sessionId"},
			"data not objects": {`{"event": "session.connected", "sessionId": "demo_session", "data": 7}`, "data"},
		} {
			a := api.do(t, http.MethodPost, "/webhooks/inbox-hub", tc.body, hookHeaders(hookSecret, tc.body, now))
			if a.status != http.StatusBadRequest {
				t.Errorf("%s: %d %s", name, a.status, a.body)
				continue
			}
			d := a.problem(t)
			if d.Code != problem.CodeInvalidRequest || len(d.Errors) != 1 || d.Errors[0].Field != tc.field {
				t.Errorf("%s: %+v", name, d)
			}
		}
		// A malformed X-Webhook-Session header is named as such.
		body := `{"event": "session.connected", "data": {"sessionId": "demo_session"}}`
		h := hookHeaders(hookSecret, body, now)
		h[HeaderWebhookSession] = "x"
		a := api.do(t, http.MethodPost, "/webhooks/inbox-hub", body, h)
		if d := a.problem(t); a.status != http.StatusBadRequest || d.Errors[0].Field != HeaderWebhookSession {
			t.Errorf("%d %+v", a.status, d)
		}
	})

	t.Run("webhook413", func(t *testing.T) {
		big := `{"event": "message.received", "data": {"sessionId": "demo_session", "pad": "` + strings.Repeat("x", 300<<10) + `"}}`
		a := api.do(t, http.MethodPost, "/webhooks/inbox-hub", big, hookHeaders(hookSecret, big, now))
		if a.status != http.StatusRequestEntityTooLarge || a.problem(t).Code != problem.CodePayloadTooLarge {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})

	t.Run("webhook503", func(t *testing.T) {
		off := newWebhookTestAPI(t, "", false)
		a := off.do(t, http.MethodPost, "/webhooks/inbox-hub", msg, hookHeaders(hookSecret, msg, now))
		if a.status != http.StatusServiceUnavailable {
			t.Fatalf("%d %s", a.status, a.body)
		}
		if d := a.problem(t); d.Code != codeWebhooksDisabled || !strings.Contains(d.Detail, "INBOXHUB_WEBHOOK_SECRET") {
			t.Fatalf("%+v", d)
		}
	})
}

func TestDeadLetterRoutes(t *testing.T) {
	api := newWebhookTestAPI(t, hookSecret, true)
	admin := map[string]string{"X-API-Key": hookAdminKey}
	// The CRM refuses the event: with one attempt allowed it is a dead letter at once.
	api.crmStatus.Store(http.StatusServiceUnavailable)
	msg := hookMessage("3EB0DEADLETTER")
	if a := api.do(t, http.MethodPost, "/webhooks/inbox-hub", msg, hookHeaders(hookSecret, msg, time.Now())); a.status != http.StatusAccepted {
		t.Fatalf("%d %s", a.status, a.body)
	}
	var list DeadLetterList
	wait.UntilShowing(t, 5*time.Second, "one dead letter listed", func() bool {
		a := api.do(t, http.MethodGet, "/v1/admin/dead-letters?limit=10", "", admin)
		if a.status != http.StatusOK {
			t.Fatalf("%d %s", a.status, a.body)
		}
		if err := json.Unmarshal(a.body, &list); err != nil {
			t.Fatal(err)
		}
		return list.Meta.Total == 1
	}, func() string { return fmt.Sprintf("%+v", list) })
	if list.Meta.Total != 1 || list.Meta.Limit != 10 || list.Meta.Page != 1 || len(list.Data) != 1 ||
		list.Data[0].Event.Data.Message == nil || list.Data[0].Event.Data.Message.ID != "3EB0DEADLETTER" {
		t.Fatalf("%+v", list)
	}
	id := list.Data[0].ID

	t.Run("deadLetters401and403", func(t *testing.T) {
		for _, path := range []string{"/v1/admin/dead-letters", "/v1/admin/dead-letters/" + id + "/replay", "/v1/admin/dead-letters/replay-all"} {
			method := http.MethodPost
			if !strings.HasSuffix(path, "replay") && !strings.HasSuffix(path, "replay-all") {
				method = http.MethodGet
			}
			if a := api.do(t, method, path, "", nil); a.status != http.StatusUnauthorized {
				t.Errorf("%s without a key: %d", path, a.status)
			}
			a := api.do(t, method, path, "", map[string]string{"X-API-Key": hookReadKey})
			if a.status != http.StatusForbidden || a.problem(t).Code != problem.CodeForbidden {
				t.Errorf("%s with a non-admin key: %d %s", path, a.status, a.body)
			}
		}
	})

	t.Run("deadLetters400and404", func(t *testing.T) {
		if a := api.do(t, http.MethodGet, "/v1/admin/dead-letters?limit=500", "", admin); a.status != http.StatusBadRequest {
			t.Errorf("limit 500: %d", a.status)
		}
		if a := api.do(t, http.MethodGet, "/v1/admin/dead-letters?cursor=x", "", admin); a.status != http.StatusBadRequest {
			t.Errorf("unknown parameter: %d", a.status)
		}
		if a := api.do(t, http.MethodPost, "/v1/admin/dead-letters/not-an-id/replay", "", admin); a.status != http.StatusBadRequest {
			t.Errorf("bad id: %d", a.status)
		}
		a := api.do(t, http.MethodPost, "/v1/admin/dead-letters/evt_0123456789abcdef0123456789abcdef/replay", "", admin)
		if a.status != http.StatusNotFound || a.problem(t).Code != problem.CodeNotFound {
			t.Errorf("unknown id: %d %s", a.status, a.body)
		}
	})

	t.Run("deadLetters202", func(t *testing.T) {
		api.crmStatus.Store(http.StatusNoContent)
		hits := api.crmHits.Load()
		a := api.do(t, http.MethodPost, "/v1/admin/dead-letters/"+id+"/replay", "", admin)
		var ans DeadLetterAnswer
		if a.status != http.StatusAccepted || json.Unmarshal(a.body, &ans) != nil || ans.Data.ID != id {
			t.Fatalf("%d %s", a.status, a.body)
		}
		wait.Until(t, 3*time.Second, "the replayed event delivered", func() bool { return api.crmHits.Load() != hits })
		a = api.do(t, http.MethodPost, "/v1/admin/dead-letters/replay-all", "", admin)
		if a.status != http.StatusAccepted || !strings.Contains(string(a.body), `"replayed":0`) {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})

	t.Run("deadLetters409", func(t *testing.T) {
		off := newWebhookTestAPI(t, hookSecret, false)
		a := off.do(t, http.MethodPost, "/v1/admin/dead-letters/replay-all", "", admin)
		if a.status != http.StatusConflict || a.problem(t).Code != problem.CodeConflict {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})
}
