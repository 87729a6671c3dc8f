package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// Media types the document uses.
const (
	mediaJSON    = "application/json"
	mediaProblem = problem.ContentType
	mediaPNG     = "image/png"
)

// problemRef is the schema of every error answer of the gateway's own.
const problemRef = "#/components/schemas/problem.Details"

// operation is what completing one operation's answers needs to know about it.
type operation struct {
	name    string // "METHOD /path"
	op      *openapi3.Operation
	scopes  []string // x-scopes
	relayed []string // x-relayed
}

// completeResponse completes one answer of an operation: error answers become problem+json
// with examples, the others get their example.
func completeResponse(doc *openapi3.T, o operation, status string, resp *openapi3.Response) error {
	if problemSchema := problemSchemaOf(resp); problemSchema != nil {
		return problemResponse(doc, o, status, resp, problemSchema)
	}
	for mt, media := range resp.Content {
		if mt == mediaPNG {
			media.Schema = openapi3.NewSchemaRef("", openapi3.NewStringSchema().WithFormat("binary"))
			continue
		}
		if build, ok := responseExamples[o.name+" "+status]; ok {
			ex, err := build(doc)
			if err != nil {
				return err
			}
			media.Example = ex
			continue
		}
		if status == "default" && len(o.relayed) > 0 {
			media.Example = upstreamError(0)
			continue
		}
		ex, err := exampleOf(media.Schema, "")
		if err != nil {
			return fmt.Errorf("%s: %w", mt, err)
		}
		media.Example = ex
	}
	return nil
}

// problemSchemaOf returns the problem.Details schema when the answer is documented with it.
func problemSchemaOf(resp *openapi3.Response) *openapi3.SchemaRef {
	for _, media := range resp.Content {
		if media.Schema != nil && media.Schema.Ref == problemRef {
			return media.Schema
		}
	}
	return nil
}

// problemResponse makes an error answer application/problem+json, with one example per problem
// code the answer's description names (the annotations write "CODE" or "CODE: when" or
// "CODE or OTHER_CODE"); the examples are shared in components/examples. Where the upstream's
// own answer may be relayed instead, that is documented beside it as application/json.
func problemResponse(doc *openapi3.T, o operation, status string, resp *openapi3.Response, schema *openapi3.SchemaRef) error {
	code, err := strconv.Atoi(status)
	if err != nil || code < 400 {
		return fmt.Errorf("problem details documented for a %s answer", status)
	}
	codes := problemCodes(*resp.Description)
	if len(codes) == 0 {
		return fmt.Errorf("the description %q names no problem code known to openapi-gen (problemDetails)", *resp.Description)
	}
	media := openapi3.NewMediaType().WithSchemaRef(schema)
	media.Examples = openapi3.Examples{}
	for _, c := range codes {
		name, value := problemExample(o, code, c)
		ref, err := sharedExample(doc, name, value)
		if err != nil {
			return err
		}
		media.Examples[c] = ref
	}
	resp.Content = openapi3.Content{mediaProblem: media}
	if slices.Contains(o.relayed, status) {
		resp.Content[mediaJSON] = upstreamErrorMedia(code)
		desc := *resp.Description + "; or the upstream's own error answer, relayed as it is (" + mediaJSON + ")"
		resp.Description = &desc
	}
	return nil
}

// sharedExample puts an example into components/examples under name (or, if another example
// holds that name, under name and a number) and returns a reference to it.
func sharedExample(doc *openapi3.T, name string, value any) (*openapi3.ExampleRef, error) {
	if doc.Components.Examples == nil {
		doc.Components.Examples = openapi3.Examples{}
	}
	for i := 1; i < 100; i++ {
		key := name
		if i > 1 {
			key += "_" + strconv.Itoa(i)
		}
		have, taken := doc.Components.Examples[key]
		if taken && !reflect.DeepEqual(have.Value.Value, value) {
			continue
		}
		if !taken {
			doc.Components.Examples[key] = &openapi3.ExampleRef{Value: openapi3.NewExample(value)}
		}
		return &openapi3.ExampleRef{Ref: "#/components/examples/" + key, Value: doc.Components.Examples[key].Value}, nil
	}
	return nil, fmt.Errorf("too many different examples named %s", name)
}

// codeWord finds the words of a description that may be problem codes.
var codeWord = regexp.MustCompile(`\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b|\b[A-Z]{4,}\b`)

// problemCodes lists the problem codes a description names, in order, each once.
func problemCodes(desc string) []string {
	var out []string
	for _, w := range codeWord.FindAllString(desc, -1) {
		if _, known := problemDetails[w]; known && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

// problemExample is the body the gateway answers with for code at status, built by package
// problem itself so that it has the exact shape, type URI and title of a real answer, and the
// name it is shared under.
func problemExample(o operation, status int, code string) (string, any) {
	name := code
	e := &problem.Error{Status: status, Code: code, Detail: problemDetails[code], RetryAfter: problemRetryAfter[code]}
	switch {
	case code == problem.CodeInvalidRequest:
		f := invalidField(o.op)
		e.Fields = []problem.FieldError{f}
		name += "_" + f.Field
	case code == problem.CodeForbidden && len(o.scopes) > 0:
		e.Detail = fmt.Sprintf("This route needs the scope %q, which the caller %q does not hold.", o.scopes[0], exampleCaller)
		name += "_" + strings.ReplaceAll(o.scopes[0], ":", "_")
	}
	return name, jsonValue(e.Body(exampleRequestID))
}

// invalidField is the offending input of an INVALID_REQUEST example: the operation's first path
// parameter, else its first query parameter, else its body.
func invalidField(op *openapi3.Operation) problem.FieldError {
	for _, in := range []string{openapi3.ParameterInPath, openapi3.ParameterInQuery} {
		for _, p := range op.Parameters {
			if p.Value != nil && p.Value.In == in {
				return problem.Field(p.Value.Name, "is not valid")
			}
		}
	}
	return problem.Field("body", "must be a JSON object")
}

// upstreamErrorMedia is an upstream error answer relayed as it is: the upstream's JSON envelope.
func upstreamErrorMedia(status int) *openapi3.MediaType {
	schema := openapi3.NewObjectSchema().WithAnyAdditionalProperties()
	schema.Description = "The upstream's error envelope, relayed as it is."
	media := openapi3.NewMediaType().WithSchema(schema)
	media.Example = upstreamError(status)
	return media
}

// upstreamError is an example of the upstream's error envelope for status (0: any status).
func upstreamError(status int) any {
	code, msg := "SESSION_NOT_FOUND", "Sesión no encontrada"
	switch status {
	case 400:
		code, msg = "VALIDATION_ERROR", "Datos de entrada inválidos"
	case 403:
		code, msg = "FORBIDDEN", "Acceso denegado"
	case 429:
		code, msg = "RATE_LIMIT_EXCEEDED", "Demasiadas solicitudes, intente más tarde"
	case 500, 502, 503, 504:
		code, msg = "INTERNAL_ERROR", "Error interno del servidor"
	}
	return map[string]any{"success": false, "error": msg, "code": code, "timestamp": "2026-11-28T10:00:00Z"}
}

// jsonValue turns a Go value into the plain JSON value (maps, slices, float64s) that
// examples hold, so that they validate and serialise like the rest of the document.
func jsonValue(v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err) // only values of this package's own making are passed
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(err)
	}
	return out
}

// maxDepth bounds the walk of exampleOf (the schemas have no cycles; this catches one).
const maxDepth = 16

// exampleOf builds an example of a schema from the examples of its fields. at names the place
// in the schemas ("component.property...") for the error messages and mapKeyExamples.
func exampleOf(sr *openapi3.SchemaRef, at string) (any, error) {
	return exampleAt(sr, at, 0)
}

func exampleAt(sr *openapi3.SchemaRef, at string, depth int) (any, error) {
	if sr == nil || sr.Value == nil {
		return nil, fmt.Errorf("%s: no schema", at)
	}
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: schemas nest deeper than %d", at, maxDepth)
	}
	if sr.Ref != "" {
		at = strings.TrimPrefix(sr.Ref, "#/components/schemas/")
	}
	s := sr.Value
	switch {
	case s.Example != nil:
		return s.Example, nil
	case len(s.AllOf) > 0:
		return allOfExample(s.AllOf, at, depth)
	case s.Type.Is(openapi3.TypeArray):
		if s.Items != nil && isPrimitiveWithoutExample(s.Items.Value) {
			return []any{}, nil // a list of plain values whose fields give no example: empty
		}
		item, err := exampleAt(s.Items, at+"[]", depth+1)
		if err != nil {
			return nil, err
		}
		return []any{item}, nil
	case s.Type.Is(openapi3.TypeObject) || len(s.Properties) > 0:
		return objectExample(s, at, depth)
	case len(s.Enum) > 0:
		return s.Enum[0], nil
	}
	return nil, fmt.Errorf("%s has no example: give the field an example tag", at)
}

func allOfExample(parts openapi3.SchemaRefs, at string, depth int) (any, error) {
	if len(parts) == 1 {
		return exampleAt(parts[0], at, depth+1)
	}
	merged := map[string]any{}
	for _, p := range parts {
		ex, err := exampleAt(p, at, depth+1)
		if err != nil {
			return nil, err
		}
		m, ok := ex.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: allOf of something else than objects", at)
		}
		maps.Copy(merged, m)
	}
	return merged, nil
}

func objectExample(s *openapi3.Schema, at string, depth int) (any, error) {
	out := map[string]any{}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
		ex, err := exampleAt(s.Properties[name], at+"."+name, depth+1)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[name] = ex
	}
	if ap := s.AdditionalProperties.Schema; ap != nil && len(s.Properties) == 0 && !isFreeForm(ap.Value) {
		key, ok := mapKeyExamples[at]
		if !ok {
			return nil, fmt.Errorf("%s is a map: give it an example key in mapKeyExamples", at)
		}
		ex, err := exampleAt(ap, at+"["+key+"]", depth+1)
		if err != nil {
			return nil, err
		}
		out[key] = ex
	}
	return out, errors.Join(errs...)
}

// isFreeForm reports whether a schema says nothing (any JSON value).
func isFreeForm(s *openapi3.Schema) bool {
	return s == nil || (s.Type.IsEmpty() && len(s.Properties) == 0 && len(s.AllOf) == 0 && s.Items == nil)
}

func isPrimitiveWithoutExample(s *openapi3.Schema) bool {
	return s != nil && s.Example == nil && len(s.Enum) == 0 &&
		(s.Type.Is(openapi3.TypeString) || s.Type.Is(openapi3.TypeInteger) ||
			s.Type.Is(openapi3.TypeNumber) || s.Type.Is(openapi3.TypeBoolean))
}
