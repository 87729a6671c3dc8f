// Package jsonbody is the one reading of the JSON bodies callers send, used by every route that
// takes one and by the /api passthrough before it relays a body.
//
// A body is accepted only when nobody can read it two ways: one JSON value, valid UTF-8, and in
// every object, at any depth, each member named once, compared exactly and case-insensitively
// ({"to": 1, "to": 2} and {"to": 1, "TO": 2} are both refused; parsers disagree on which one
// wins, and Go's encoding/json would match "TO" to a field named "to"). Decode also matches member
// names to the fields of the target exactly and refuses members the target does not have.
//
// Every refusal is a 400 INVALID_REQUEST *problem.Error that names the offending member by its
// JSON Pointer and never repeats a value from the body.
//
// It knows nothing of routes, callers or the upstream, and must not accept a body that a second
// parser could read differently.
package jsonbody

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// maxEchoedName bounds a member name quoted in a refusal.
const maxEchoedName = 64

// Check reports whether b is one JSON value in which no object names a member twice, exactly or
// in another case. It returns nil or a 400 *problem.Error.
func Check(b []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(b))
	// names[i] holds the case-folded member names of the object open at stack depth i+1.
	var names []map[string]bool
	for {
		tok, err := dec.ReadToken()
		if errors.Is(err, io.EOF) {
			return problem.Invalid("The request body is empty: send a JSON value.", problem.Field("body", "must not be empty"))
		}
		if err != nil {
			return syntaxProblem(err)
		}
		depth := dec.StackDepth()
		switch kind := tok.Kind(); {
		case depth == 0:
			// One complete value has been read: only whitespace may follow.
			if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
				return problem.Invalid("The request body holds more than one JSON value.",
					problem.Field("body", "must be one JSON value"))
			}
			return nil
		case kind == '{':
			names = append(names[:depth-1], map[string]bool{})
		case kind == '[':
			names = append(names[:depth-1], nil)
		case kind == '}' || kind == ']':
		default:
			if k, n := dec.StackIndex(depth); k != '{' || n%2 == 0 {
				continue // a value, not a member name
			}
			key := fold(tok.String())
			if names[depth-1][key] {
				return problem.Invalid("The request body names a member twice (or twice in different cases); send each member once, spelled exactly.",
					problem.Field(pointer(dec.StackPointer()), "is given more than once"))
			}
			names[depth-1][key] = true
		}
	}
}

// Decode checks b (see Check) and decodes it into v, a pointer: member names must match v's
// fields (their json tags) exactly, members v does not have are refused, and nothing may follow
// the value. It returns nil or a 400 *problem.Error.
func Decode(b []byte, v any) error {
	if err := Check(b); err != nil {
		return err
	}
	err := json.Unmarshal(b, v, json.RejectUnknownMembers(true))
	if err == nil {
		return nil
	}
	var se *json.SemanticError
	if errors.As(err, &se) {
		field := pointer(se.JSONPointer)
		switch {
		case errors.Is(se.Err, json.ErrUnknownName):
			return problem.Invalid("The request body has a member this route does not take.",
				problem.Field(field, "unknown field"))
		case field == "body":
			return problem.Invalid("The request body must be a JSON object.", problem.Field("body", "must be a JSON object"))
		case se.GoType != nil:
			return problem.Invalid("A member of the request body has the wrong type.",
				problem.Field(field, "must be a JSON "+jsonKind(se.GoType.Kind().String())))
		}
		return problem.Invalid("A member of the request body is not valid.", problem.Field(field, "is not valid"))
	}
	return syntaxProblem(err)
}

// syntaxProblem answers a body that is not well-formed JSON; the field is always "body".
func syntaxProblem(err error) error {
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &syn) && errors.Is(syn.Err, jsontext.ErrDuplicateName):
		return problem.Invalid("The request body names a member twice (or twice in different cases); send each member once, spelled exactly.",
			problem.Field(pointer(syn.JSONPointer), "is given more than once"))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.Invalid("The request body is not valid JSON (it ends too early).", problem.Field("body", "must be valid JSON"))
	case errors.As(err, &syn):
		return problem.Invalid(fmt.Sprintf("The request body is not valid JSON (at byte %d).", syn.ByteOffset),
			problem.Field("body", "must be valid JSON"))
	}
	return problem.Invalid("The request body is not valid JSON.", problem.Field("body", "must be valid JSON"))
}

// fold maps a name to one representative of its case-folding class, so that names that differ
// only in case (including Unicode folds such as the Kelvin sign and K) compare equal.
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// pointer names a member for a refusal: the JSON Pointer without its leading slash ("to",
// "profile/name"), "body" for the whole body, cut to a bounded length.
func pointer(p jsontext.Pointer) string {
	s := strings.TrimPrefix(string(p), "/")
	if s == "" {
		return "body"
	}
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
	return clip.Runes(s, maxEchoedName, clip.Ellipsis)
}

// jsonKind names the JSON type a Go kind is written as.
func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "struct", "map", "ptr":
		return "object"
	}
	return "number"
}
