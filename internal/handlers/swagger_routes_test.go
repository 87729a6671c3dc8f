package handlers

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestSwaggerHasEverySpecRoute checks that every route of the gateway's API (listed below) appears
// in the generated docs/swagger.json with its method, and that every documented failure answer of
// a /v1 route is a problem.Details.
func TestSwaggerHasEverySpecRoute(t *testing.T) {
	raw, err := os.ReadFile("../../docs/swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Schema struct {
					Ref string `json:"$ref"`
				} `json:"schema"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	routes := []string{
		"GET /v1/sessions",
		"GET /v1/sessions/{sessionId}",
		"POST /v1/sessions/{sessionId}/connect",
		"GET /v1/sessions/{sessionId}/qr",
		"GET /v1/sessions/{sessionId}/contacts",
		"GET /v1/sessions/{sessionId}/chats",
		"GET /v1/sessions/{sessionId}/chats/{chatId}/messages",
		"POST /v1/sessions/{sessionId}/messages",
		"POST /v1/sessions/{sessionId}/sync",
		"GET /v1/sessions/{sessionId}/sync-jobs",
		"GET /v1/sync-jobs/{jobId}",
		"GET /v1/sync-jobs/{jobId}/events",
		"DELETE /v1/sync-jobs/{jobId}",
		"GET /v1/sync-jobs/{jobId}/items/{resource}",
		"POST /webhooks/inbox-hub",
		"GET /v1/admin/dead-letters",
		"POST /v1/admin/dead-letters/{eventId}/replay",
		"PUT /v1/admin/sessions/{sessionId}/webhook",
		"GET /healthz",
		"GET /readyz",
		"GET /v1/admin/status",
		"GET /api/{path}",
	}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		ops, ok := doc.Paths[path]
		if !ok {
			t.Errorf("%s: path missing from docs/swagger.json", r)
			continue
		}
		op, ok := ops[strings.ToLower(method)]
		if !ok {
			t.Errorf("%s: method missing from docs/swagger.json", r)
			continue
		}
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for status, resp := range op.Responses {
			if status >= "400" && resp.Schema.Ref != "#/definitions/problem.Details" {
				t.Errorf("%s: answer %s is documented as %q, not problem.Details", r, status, resp.Schema.Ref)
			}
		}
	}
}
