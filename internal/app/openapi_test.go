package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"

	"github.com/inboxhub-gateway/gateway/internal/config"
	"github.com/inboxhub-gateway/gateway/internal/passthrough"
	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// The tests of the OpenAPI 3 document (docs/openapi.json, converted from the swag annotations by
// ./scripts/swag) held against a whole replica: the document validates, documents every route
// the router serves and no other, and says truly which routes need which credential and scope.

// openAPIPath is the committed document, relative to this package.
var openAPIPath = filepath.Join("..", "..", "docs", "openapi.json")

// pathsNotInTheAPI are the router's paths that serve documentation and the operator console's
// page, not the API.
var pathsNotInTheAPI = []string{
	"/swagger", "/swagger/{any}", "/openapi.json", "/openapi.yaml", "/console", "/console/{file}",
}

// loadOpenAPI loads the committed document with kin-openapi's loader and validates it,
// examples against their schemas included.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIPath)
	if err != nil {
		t.Fatalf("loading %s: %v", openAPIPath, err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("%s does not validate: %v", openAPIPath, err)
	}
	return doc
}

// docOperation is one operation of the document.
type docOperation struct {
	method, path string
	op           *openapi3.Operation
}

func (o docOperation) String() string { return o.method + " " + o.path }

func operations(doc *openapi3.T) []docOperation {
	var out []docOperation
	for _, path := range slices.Sorted(maps.Keys(doc.Paths.Map())) {
		ops := doc.Paths.Value(path).Operations()
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			out = append(out, docOperation{method: method, path: path, op: ops[method]})
		}
	}
	return out
}

// TestOpenAPIDocumentsEveryRoute checks the document against the router of a whole replica:
// every route it serves is documented with its method (the passthrough with every method of its
// allow-list), and every documented operation is served.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	g := startV1(t, nil).gw
	engine, ok := g.app.Handler().(*gin.Engine)
	if !ok {
		t.Fatalf("the app's handler is a %T, not a *gin.Engine", g.app.Handler())
	}
	documented := map[string]bool{}
	for _, o := range operations(doc) {
		documented[o.String()] = true
	}
	served := map[string]bool{}
	for _, r := range engine.Routes() {
		path := openAPIPathOf(r.Path)
		route := r.Method + " " + path
		if strings.HasPrefix(r.Path, "/api/*") || slices.Contains(pathsNotInTheAPI, path) {
			continue // the passthrough is gin's Any: the allow-list says which methods it relays (below)
		}
		served[route] = true
		if !documented[route] {
			t.Errorf("%s is served but not in %s", route, openAPIPath)
		}
	}
	for _, r := range passthrough.AllowList() {
		route := r.Method + " /api/{path}"
		served[route] = true
		if !documented[route] {
			t.Errorf("the passthrough relays %s %s, but %s is not in %s", r.Method, r.Pattern, route, openAPIPath)
		}
	}
	for route := range documented {
		if !served[route] {
			t.Errorf("%s is documented but not served", route)
		}
	}
	if len(served) < 20 {
		t.Fatalf("only %d routes served: the replica is not the whole gateway", len(served))
	}
}

// openAPIPathOf turns a gin path (/a/:id/*rest) into an OpenAPI one (/a/{id}/{rest}).
func openAPIPathOf(ginPath string) string {
	segs := strings.Split(ginPath, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") {
			segs[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(segs, "/")
}

// TestOpenAPIDocumentsErrorsExamplesAndSecurity checks what every operation must document:
// error answers as application/problem+json with the problem schema, an example for every
// request body, answer and path or header parameter, both security schemes on the routes that
// authenticate callers, 401 where a credential is needed and 403 where a scope is.
func TestOpenAPIDocumentsErrorsExamplesAndSecurity(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	schemes := doc.Components.SecuritySchemes
	if k := schemes["ApiKey"]; k == nil || k.Value.Type != "apiKey" || k.Value.In != "header" || k.Value.Name != "X-API-Key" {
		t.Errorf("ApiKey is not an API key in the X-API-Key header: %+v", k)
	}
	if b := schemes["BearerJWT"]; b == nil || b.Value.Type != "http" || b.Value.Scheme != "bearer" || b.Value.BearerFormat != "JWT" {
		t.Errorf("BearerJWT is not HTTP bearer with JWTs: %+v", b)
	}
	for _, o := range operations(doc) {
		secured := o.op.Security != nil && len(*o.op.Security) > 0
		if strings.HasPrefix(o.path, "/v1/") || strings.HasPrefix(o.path, "/api/") {
			if !secured {
				t.Errorf("%s: no security, but the router authenticates its callers", o)
			}
		}
		if secured {
			checkSecurity(t, o)
		}
		checkExamples(t, o)
		checkErrorAnswers(t, o)
	}
}

// checkSecurity: either scheme authenticates (two alternatives, no scopes, which OpenAPI 3.0
// has only for OAuth2), an authenticated route documents its 401, and a route with scopes its
// 403.
func checkSecurity(t *testing.T, o docOperation) {
	t.Helper()
	var alternatives []string
	for _, req := range *o.op.Security {
		for name, scopes := range req {
			alternatives = append(alternatives, name)
			if len(scopes) != 0 {
				t.Errorf("%s: %s lists scopes; OpenAPI 3.0 allows them for OAuth2 only (x-scopes says them)", o, name)
			}
		}
	}
	slices.Sort(alternatives)
	if !slices.Equal(alternatives, []string{"ApiKey", "BearerJWT"}) {
		t.Errorf("%s: security alternatives are %v, want ApiKey or BearerJWT", o, alternatives)
	}
	if o.op.Responses.Value("401") == nil {
		t.Errorf("%s: authenticated, but no 401 answer documented", o)
	}
	if _, ok := o.op.Extensions["x-scopes"]; ok && o.op.Responses.Value("403") == nil {
		t.Errorf("%s: needs a scope, but no 403 answer documented", o)
	}
}

// checkExamples: every request body, answer (but binary ones) and path or header parameter has
// an example; kin-openapi's Validate has checked each against its schema.
func checkExamples(t *testing.T, o docOperation) {
	t.Helper()
	for _, p := range o.op.Parameters {
		if (p.Value.In == openapi3.ParameterInPath || p.Value.In == openapi3.ParameterInHeader) && p.Value.Example == nil {
			t.Errorf("%s: parameter %s has no example", o, p.Value.Name)
		}
	}
	if o.op.RequestBody != nil {
		for mt, media := range o.op.RequestBody.Value.Content {
			if media.Example == nil && len(media.Examples) == 0 {
				t.Errorf("%s: request body %s has no example", o, mt)
			}
		}
	}
	answers := 0
	for status, resp := range o.op.Responses.Map() {
		for mt, media := range resp.Value.Content {
			if media.Schema != nil && media.Schema.Value.Format == "binary" {
				continue
			}
			answers++
			if media.Example == nil && len(media.Examples) == 0 {
				t.Errorf("%s: answer %s %s has no example", o, status, mt)
			}
		}
	}
	if answers == 0 {
		t.Errorf("%s: no answer with a body documented", o)
	}
}

// checkErrorAnswers: every 4xx and 5xx answer is application/problem+json with the problem
// schema. The only exception is the readiness answer, which is its own report. A route that
// relays the upstream may document the upstream's JSON beside the problem.
func checkErrorAnswers(t *testing.T, o docOperation) {
	t.Helper()
	const problemRef = "#/components/schemas/problem.Details"
	for status, resp := range o.op.Responses.Map() {
		if status == "default" || status < "400" {
			continue
		}
		if o.String() == "GET /readyz" && status == "503" {
			continue
		}
		media := resp.Value.Content.Get(problem.ContentType)
		if media == nil || media.Schema == nil || media.Schema.Ref != problemRef {
			t.Errorf("%s: answer %s is not %s with %s: %v", o, status, problem.ContentType, problemRef, slices.Collect(maps.Keys(resp.Value.Content)))
			continue
		}
		for mt := range resp.Value.Content {
			if mt != problem.ContentType && !strings.HasPrefix(o.path, "/api/") {
				t.Errorf("%s: answer %s is also documented as %s", o, status, mt)
			}
		}
	}
}

// TestOpenAPISecurityMatchesTheRouter asks a whole replica, for every documented operation,
// what it really requires, and holds the document to it: a request without credentials is
// refused with 401 and a challenge for both schemes exactly where the document declares
// security, and for each scope x-scopes declares, a caller holding every scope but that one gets
// 403 naming it. The requests use the document's parameter examples.
func TestOpenAPISecurityMatchesTheRouter(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	// allBut[s] is a key holding every scope except s.
	allBut := map[string]string{}
	entries := []string{fmt.Sprintf(`{"name": "test-crm", "key": %q, "scopes": ["%s"]}`, callerKey, strings.Join(config.Scopes, `","`))}
	for _, missing := range config.Scopes {
		allBut[missing] = "test-all-but-" + randHex(12)
		var held []string
		for _, s := range config.Scopes {
			if s != missing {
				held = append(held, `"`+s+`"`)
			}
		}
		entries = append(entries, fmt.Sprintf(`{"name": "test-all-but-%s", "key": %q, "scopes": [%s]}`,
			strings.ReplaceAll(missing, ":", "-"), allBut[missing], strings.Join(held, ",")))
	}
	keys := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(keys, []byte("["+strings.Join(entries, ",\n")+"]"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startV1(t, map[string]string{"GATEWAY_API_KEYS_FILE": keys}).gw
	for _, o := range operations(doc) {
		url := g.url + examplePath(t, o)
		secured := o.op.Security != nil && len(*o.op.Security) > 0

		status, header, _ := call(t, o.method, url, nil)
		challenges := strings.Join(header.Values("WWW-Authenticate"), ", ")
		switch {
		case secured && (status != http.StatusUnauthorized || !strings.Contains(challenges, "APIKey") || !strings.Contains(challenges, "Bearer")):
			t.Errorf("%s without credentials = %d, challenges %q: the document says it needs ApiKey or BearerJWT", o, status, challenges)
		case secured && header.Get("Content-Type") != problem.ContentType:
			t.Errorf("%s: the 401 is %q, not %s", o, header.Get("Content-Type"), problem.ContentType)
		case !secured && (challenges != "" || status == http.StatusForbidden):
			t.Errorf("%s without credentials = %d, challenges %q: the document says it needs none", o, status, challenges)
		}
		if !secured || strings.HasPrefix(o.path, "/api/") {
			continue // the passthrough's scope depends on the upstream route; its own tests check it
		}
		scopes, _ := o.op.Extensions["x-scopes"].([]any)
		if len(scopes) == 0 {
			t.Errorf("%s: x-scopes = %v, want the scopes the route needs", o, o.op.Extensions["x-scopes"])
			continue
		}
		for _, scope := range scopes {
			key, known := allBut[fmt.Sprint(scope)]
			if !known {
				t.Errorf("%s: x-scopes names %v, which is no scope", o, scope)
				continue
			}
			status, _, answer := call(t, o.method, url, map[string]string{"X-API-Key": key})
			var d problem.Details
			_ = json.Unmarshal([]byte(answer), &d)
			want := fmt.Sprintf("needs the scope %q", scope)
			if status != http.StatusForbidden || !strings.Contains(d.Detail, want) {
				t.Errorf("%s with a key holding every scope but %s = %d %s; the document says it %s", o, scope, status, answer, want)
			}
		}
	}
}

// examplePath is the operation's path with its path parameters set to their examples.
func examplePath(t *testing.T, o docOperation) string {
	t.Helper()
	path := o.path
	for _, p := range o.op.Parameters {
		if p.Value.In == openapi3.ParameterInPath {
			path = strings.ReplaceAll(path, "{"+p.Value.Name+"}", fmt.Sprint(p.Value.Example))
		}
	}
	if strings.Contains(path, "{") {
		t.Fatalf("%s: a path parameter has no example", o)
	}
	return path
}

// call sends one request without a body and returns the status, headers and body.
func call(t *testing.T, method, url string, headers map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}
