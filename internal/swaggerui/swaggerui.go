// Package swaggerui serves the files of the Swagger UI page of the API reference, embedded in the
// binary: Swagger UI's bundle and stylesheet (dist/NOTICE says where they come from) and a page
// and an initializer of the gateway's own that point the UI at the OpenAPI 3 document
// (../openapi.json, relative to the page).
//
// It owns only these files: the documents are package docs', the routes and the security headers
// (middleware.PolicySwaggerUI: scripts from the gateway itself only, no inline script) are package
// handlers'. It must not load anything from another origin.
package swaggerui

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed dist
var dist embed.FS

// contentTypes are the types of the embedded files, by extension; a name with another extension
// is not served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".png":  "image/png",
}

// etags holds each file's strong ETag (a hash of its bytes), computed on the first request for
// it, so that a gateway that never serves the UI never reads the bundle.
var etags sync.Map // name -> string

// Serve writes the embedded file name ("index.html", "swagger-ui-bundle.js", ...) with its
// content type, an ETag and Cache-Control: no-cache (a browser revalidates, and gets 304 while
// the gateway runs the same build). It reports false, writing nothing, when no such file is
// embedded; the caller answers that.
func Serve(w http.ResponseWriter, r *http.Request, name string) bool {
	ctype, known := contentTypes[path.Ext(name)]
	if !known || name == "" || strings.Contains(name, "/") || !fs.ValidPath(name) {
		return false
	}
	f, err := dist.Open("dist/" + name)
	if err != nil {
		return false
	}
	defer f.Close()
	content, ok := f.(io.ReadSeeker) // embedded files seek: no copy of the bytes per request
	if !ok {
		return false
	}
	tag, err := etagOf(name, content)
	if err != nil {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", tag)
	http.ServeContent(w, r, name, time.Time{}, content) // answers If-None-Match with 304
	return true
}

// etagOf returns the ETag of the embedded file name, hashing content (and rewinding it) the
// first time.
func etagOf(name string, content io.ReadSeeker) (string, error) {
	if tag, ok := etags.Load(name); ok {
		return tag.(string), nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, content); err != nil {
		return "", err
	}
	if _, err := content.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tag := `"` + base64.RawURLEncoding.EncodeToString(sum.Sum(nil)[:18]) + `"`
	etags.Store(name, tag)
	return tag, nil
}
