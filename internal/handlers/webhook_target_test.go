package handlers

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/middleware"
	"github.com/inboxhub-gateway/gateway/internal/problem"
	"github.com/inboxhub-gateway/gateway/internal/upstream"
)

const targetSecret = "gateway-webhook-secret-0123456789"

// fakeRegistrar is the upstream as the webhook-target route sees it; it records every call.
type fakeRegistrar struct {
	mu    sync.Mutex
	calls []string
	got   upstream.Webhook
	err   error
}

func (f *fakeRegistrar) SetWebhook(_ context.Context, sessionID string, w upstream.Webhook) (upstream.WebhookSettings, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, sessionID)
	f.got = w
	if f.err != nil {
		return upstream.WebhookSettings{}, f.err
	}
	return upstream.WebhookSettings{SessionID: sessionID, URL: w.URL, Events: w.Events}, nil
}

// newWebhookTargetRouter mounts the route behind the error mapping and a scope check that lets
// through only requests sending "X-Test-Scope: <the scope the route asked for>".
func newWebhookTargetRouter(t WebhookTarget) (*gin.Engine, *[]string) {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	logger := slog.New(slog.DiscardHandler)
	r.Use(middleware.RequestID(), middleware.Recovery(logger), middleware.Errors(logger))
	var asked []string
	require := func(scope string) gin.HandlerFunc {
		asked = append(asked, scope)
		return func(c *gin.Context) {
			if c.GetHeader("X-Test-Scope") != scope {
				middleware.Fail(c, problem.New(http.StatusForbidden, problem.CodeForbidden, "needs "+scope))
				return
			}
			c.Next()
		}
	}
	registerWebhookTarget(r.Group("/v1"), require, t)
	return r, &asked
}

var adminScope = map[string]string{"X-Test-Scope": "admin"}

func TestWebhookTarget200(t *testing.T) {
	f := &fakeRegistrar{}
	h, asked := newWebhookTargetRouter(WebhookTarget{Registrar: f, PublicURL: "https://gw.example.test/base/", Secret: targetSecret})
	if !slices.Equal(*asked, []string{"admin"}) {
		t.Errorf("scopes required %v, want [admin]", *asked)
	}
	r := serve(h, http.MethodPut, "/v1/admin/sessions/abc_123/webhook", nil, adminScope)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	wantURL := "https://gw.example.test/base/webhooks/inbox-hub"
	if !slices.Equal(f.calls, []string{"abc_123"}) || f.got.URL != wantURL || f.got.Secret != targetSecret {
		t.Errorf("upstream got %v %+v", f.calls, f.got)
	}
	if len(f.got.Events) != 10 || !slices.Contains(f.got.Events, "message.received") ||
		!slices.Contains(f.got.Events, "conversation.updated") || slices.Contains(f.got.Events, "session.updated") {
		t.Errorf("events %v, want the 10 upstream events", f.got.Events)
	}
	if strings.Contains(string(r.body), targetSecret) {
		t.Errorf("the answer carries the secret: %s", r.body)
	}
	var a WebhookTargetAnswer
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatal(err)
	}
	if a.Data.SessionID != "abc_123" || a.Data.WebhookURL != wantURL || !slices.Equal(a.Data.Events, f.got.Events) {
		t.Errorf("answer %s", r.body)
	}
}

func TestWebhookTargetProblems(t *testing.T) {
	short := strings.Repeat("s", 15)
	cases := []struct {
		name    string
		target  WebhookTarget
		path    string
		headers map[string]string
		status  int
		code    string
		detail  string // a part of the detail
		calls   int
	}{
		{"no admin scope", WebhookTarget{PublicURL: "https://gw.example.test", Secret: targetSecret}, "/v1/admin/sessions/abc_123/webhook", map[string]string{"X-Test-Scope": "sessions:write"}, 403, problem.CodeForbidden, "", 0},
		{"no public URL", WebhookTarget{Secret: targetSecret}, "/v1/admin/sessions/abc_123/webhook", adminScope, 409, problem.CodeConflict, "GATEWAY_PUBLIC_URL", 0},
		{"no secret", WebhookTarget{PublicURL: "https://gw.example.test"}, "/v1/admin/sessions/abc_123/webhook", adminScope, 409, problem.CodeConflict, "INBOXHUB_WEBHOOK_SECRET", 0},
		{"short secret", WebhookTarget{PublicURL: "https://gw.example.test", Secret: short}, "/v1/admin/sessions/abc_123/webhook", adminScope, 409, problem.CodeConflict, "16 to 255", 0},
		{"bad session id", WebhookTarget{PublicURL: "https://gw.example.test", Secret: targetSecret}, "/v1/admin/sessions/a%20b/webhook", adminScope, 400, problem.CodeInvalidRequest, "sessionId", 0},
		{"unknown query", WebhookTarget{PublicURL: "https://gw.example.test", Secret: targetSecret}, "/v1/admin/sessions/abc_123/webhook?url=x", adminScope, 400, problem.CodeInvalidRequest, "", 0},
		{"unknown session", WebhookTarget{PublicURL: "https://gw.example.test", Secret: targetSecret, Registrar: &fakeRegistrar{err: &upstream.Error{Status: 404, Code: "SESSION_NOT_FOUND"}}}, "/v1/admin/sessions/abc_123/webhook", adminScope, 404, problem.CodeSessionNotFound, "", 1},
		{"upstream down", WebhookTarget{PublicURL: "https://gw.example.test", Secret: targetSecret, Registrar: &fakeRegistrar{err: &upstream.Error{Status: 503}}}, "/v1/admin/sessions/abc_123/webhook", adminScope, 503, problem.CodeUpstreamUnavailable, "", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := tc.target.Registrar.(*fakeRegistrar)
			if f == nil {
				f = &fakeRegistrar{}
				tc.target.Registrar = f
			}
			h, _ := newWebhookTargetRouter(tc.target)
			r := serve(h, http.MethodPut, tc.path, nil, tc.headers)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			d := r.problem(t)
			if d.Code != tc.code || !strings.Contains(d.Detail, tc.detail) {
				t.Errorf("problem %s %q, want %s containing %q", d.Code, d.Detail, tc.code, tc.detail)
			}
			if strings.Contains(string(r.body), targetSecret) {
				t.Errorf("the answer carries the secret: %s", r.body)
			}
			if len(f.calls) != tc.calls {
				t.Errorf("%d upstream calls, want %d", len(f.calls), tc.calls)
			}
		})
	}
}
