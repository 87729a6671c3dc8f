package swaggerui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, name string, header http.Header) (*httptest.ResponseRecorder, bool) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/swagger/file", nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	return w, Serve(w, r, name)
}

// TestServesTheUIFiles: the page, its initializer (pointed at the OpenAPI 3 document), the bundle
// and the stylesheet are served with their types, an ETag and no-cache; a second request with
// the ETag gets 304 and no body.
func TestServesTheUIFiles(t *testing.T) {
	for _, tc := range []struct{ name, ctype, contains string }{
		{"index.html", "text/html; charset=utf-8", `src="./swagger-initializer.js"`},
		{"swagger-initializer.js", "text/javascript; charset=utf-8", `"../openapi.json"`},
		{"swagger-ui-bundle.js", "text/javascript; charset=utf-8", "SwaggerUIBundle"},
		{"swagger-ui.css", "text/css; charset=utf-8", ".swagger-ui"},
		{"index.css", "text/css; charset=utf-8", "box-sizing"},
		{"favicon-32x32.png", "image/png", "PNG"},
	} {
		w, ok := get(t, tc.name, nil)
		if !ok || w.Code != http.StatusOK || w.Header().Get("Content-Type") != tc.ctype || !strings.Contains(w.Body.String(), tc.contains) {
			t.Fatalf("%s: served %v, %d, Content-Type %q, %d bytes", tc.name, ok, w.Code, w.Header().Get("Content-Type"), w.Body.Len())
		}
		tag := w.Header().Get("ETag")
		if !strings.HasPrefix(tag, `"`) || len(tag) < 10 || w.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: ETag %q, Cache-Control %q", tc.name, tag, w.Header().Get("Cache-Control"))
		}
		again, _ := get(t, tc.name, http.Header{"If-None-Match": {tag}})
		if again.Code != http.StatusNotModified || again.Body.Len() != 0 || again.Header().Get("ETag") != tag {
			t.Errorf("%s with If-None-Match: %d, %d bytes, ETag %q", tc.name, again.Code, again.Body.Len(), again.Header().Get("ETag"))
		}
	}
	a, _ := get(t, "index.html", nil)
	b, _ := get(t, "swagger-ui.css", nil)
	if a.Header().Get("ETag") == b.Header().Get("ETag") {
		t.Errorf("two files share the ETag %q", a.Header().Get("ETag"))
	}
}

// TestServesNothingElse: names that are not embedded UI files, including attempts to climb out
// of the directory or to read the package's sources or notice, are refused and nothing is written.
func TestServesNothingElse(t *testing.T) {
	for _, name := range []string{
		"", "nope.html", "NOTICE", "swaggerui.go", "../swaggerui.go", "../../../go.mod", "dist/index.html",
		"./index.html", "index.html/", "/index.html", "..%2findex.html", "index.html\x00.js", ".html",
		"swagger-ui-bundle.js.map", "swagger-ui-standalone-preset.js", "INDEX.HTML",
	} {
		w, ok := get(t, name, nil)
		if ok || w.Body.Len() != 0 || len(w.Header()) != 0 {
			t.Errorf("%q: served %v (%d, %d bytes, headers %v)", name, ok, w.Code, w.Body.Len(), w.Header())
		}
	}
}
