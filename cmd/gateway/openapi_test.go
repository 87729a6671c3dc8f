package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestServesOpenAPI starts the gateway (demo mode) and reads its OpenAPI 3 document at
// /openapi.json and /openapi.yaml: each is the committed document (docs/), with its media
// type, loads with kin-openapi's loader, and both say the same; Swagger UI is pointed at it.
func TestServesOpenAPI(t *testing.T) {
	base, _, stop := startRun(t, []string{"-demo"}, map[string]string{})
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("run after shutdown = %v", err)
		}
	}()
	committed, err := os.ReadFile(filepath.Join("..", "..", "docs", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	var docs []*openapi3.T
	for _, c := range []struct{ path, contentType string }{
		{"/openapi.json", "application/json"},
		{"/openapi.yaml", "application/yaml"},
	} {
		resp, err := http.Get(base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != c.contentType {
			t.Fatalf("GET %s = %d, Content-Type %q; want 200, %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contentType)
		}
		if c.path == "/openapi.json" && !bytes.Equal(body, committed) {
			t.Errorf("GET /openapi.json is not the committed docs/openapi.json (%d bytes, want %d)", len(body), len(committed))
		}
		doc, err := openapi3.NewLoader().LoadFromData(body)
		if err != nil {
			t.Fatalf("GET %s: the loader refuses it: %v", c.path, err)
		}
		if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Paths.Find("/v1/sessions") == nil {
			t.Errorf("GET %s: OpenAPI %q, /v1/sessions documented: %v", c.path, doc.OpenAPI, doc.Paths.Find("/v1/sessions") != nil)
		}
		docs = append(docs, doc)
	}
	fromJSON, _ := json.Marshal(docs[0])
	fromYAML, _ := json.Marshal(docs[1])
	if !bytes.Equal(fromJSON, fromYAML) {
		t.Errorf("/openapi.json and /openapi.yaml are different documents")
	}
	if code, page := get(t, base+"/swagger/swagger-initializer.js", nil); code != http.StatusOK || !strings.Contains(page, `"../openapi.json"`) {
		t.Errorf("Swagger UI (%d) is not pointed at the OpenAPI 3 document", code)
	}
}
