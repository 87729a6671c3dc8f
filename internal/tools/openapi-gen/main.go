// Command openapi-gen writes the gateway's OpenAPI 3 document, docs/openapi.json and
// docs/openapi.yaml, from the Swagger 2.0 document that swag generates from the handlers'
// annotations (docs/swagger.json). ./scripts/swag runs it right after swag.
//
// The conversion itself is kin-openapi's openapi2conv. This command then says what Swagger 2.0
// cannot:
//   - the bearer scheme is HTTP bearer with JWTs (Swagger 2.0 knows only API keys in a header);
//   - error answers are application/problem+json with the problem.Details schema, with one
//     example for each problem code the answer's annotation names, built by package problem;
//   - the scopes an operation needs (its "@x-scopes" annotation, kept as x-scopes) are written
//     into its description and its 403 example;
//   - the error answers that may also be the upstream's own, relayed as it is (the "@x-relayed"
//     annotation, a list of statuses, consumed here), document that JSON beside the problem;
//   - every request body, answer, and path or header parameter has an example, built from the
//     schemas' field examples (swag's example tags) or, where a schema has none to give (the
//     upstream's free-form bodies, text streams), taken from the tables in examples.go.
//
// The result is validated with kin-openapi's validator (examples against their schemas
// included) before anything is written. It reads nothing but its input, so that the same
// annotations always give the same bytes (CI checks that ./scripts/swag leaves docs/ unchanged).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"sigs.k8s.io/yaml"
)

func main() {
	in := flag.String("in", "docs/swagger.json", "the Swagger 2.0 document swag wrote")
	out := flag.String("out", "docs", "the folder to write openapi.json and openapi.yaml to")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "openapi-gen:", err)
		os.Exit(1)
	}
}

// run reads, converts, completes, validates and writes the document.
func run(in, outDir string) error {
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(raw, &doc2); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	doc, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return fmt.Errorf("converting to OpenAPI 3: %w", err)
	}
	if err := complete(doc); err != nil {
		return err
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		return fmt.Errorf("the converted document does not validate: %w", err)
	}
	js, err := json.MarshalIndent(doc, "", "    ")
	if err != nil {
		return err
	}
	js = append(js, '\n')
	ym, err := yaml.JSONToYAML(js)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "openapi.json"), js, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outDir, "openapi.yaml"), ym, 0o644)
}

// complete adds to the converted document what Swagger 2.0 could not say (see the package doc).
func complete(doc *openapi3.T) error {
	if err := securitySchemes(doc); err != nil {
		return err
	}
	var errs []error
	for _, path := range slices.Sorted(maps.Keys(doc.Paths.Map())) {
		ops := doc.Paths.Value(path).Operations()
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			op := ops[method]
			if err := completeOperation(doc, method+" "+path, op); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", method, path, err))
			}
		}
	}
	return errors.Join(errs...)
}

// securitySchemes declares the bearer scheme as what it is: HTTP bearer carrying a JWT.
func securitySchemes(doc *openapi3.T) error {
	schemes := doc.Components.SecuritySchemes
	key, bearer := schemes[schemeAPIKey], schemes[schemeBearer]
	if key == nil || key.Value == nil || bearer == nil || bearer.Value == nil {
		return fmt.Errorf("the annotations declare no %s or no %s security scheme", schemeAPIKey, schemeBearer)
	}
	if key.Value.Type != "apiKey" || key.Value.In != "header" || key.Value.Name != "X-API-Key" {
		return fmt.Errorf("%s is not an API key in the X-API-Key header", schemeAPIKey)
	}
	bearer.Value = &openapi3.SecurityScheme{Type: "http", Scheme: "bearer", BearerFormat: "JWT",
		Description: bearer.Value.Description}
	return nil
}

// Names of the security schemes, as the annotations of cmd/gateway declare them.
const (
	schemeAPIKey = "ApiKey"
	schemeBearer = "BearerJWT"
)

// Operation extensions the annotations set (swag's @x-... lines).
const (
	// extScopes lists the scopes a caller needs for the operation (a JSON array of strings).
	extScopes = "x-scopes"
	// extRelayed lists the documented error statuses of an operation that may also be the
	// upstream's own answer, relayed as it is (JSON array of status strings).
	extRelayed = "x-relayed"
)

// completeOperation completes one operation, named "METHOD /path" in errors and tables.
func completeOperation(doc *openapi3.T, name string, op *openapi3.Operation) error {
	scopes, err := stringList(op, extScopes)
	if err != nil {
		return err
	}
	switch len(scopes) {
	case 0:
	case 1:
		op.Description += "\n\nNeeds the scope " + quoteList(scopes) + "."
	default:
		op.Description += "\n\nNeeds the scopes " + quoteList(scopes) + "."
	}
	relayed, err := stringList(op, extRelayed)
	if err != nil {
		return err
	}
	for _, status := range relayed {
		if op.Responses.Value(status) == nil {
			return fmt.Errorf("%s names %s, which is not a documented answer", extRelayed, status)
		}
	}
	delete(op.Extensions, extRelayed) // said by the answers themselves from here on
	if err := parameterExamples(op); err != nil {
		return err
	}
	if err := requestExample(name, op); err != nil {
		return err
	}
	o := operation{name: name, op: op, scopes: scopes, relayed: relayed}
	for _, status := range slices.Sorted(maps.Keys(op.Responses.Map())) {
		resp := op.Responses.Value(status)
		if resp.Value == nil {
			return fmt.Errorf("answer %s is a reference; the converter expects it inline", status)
		}
		if err := completeResponse(doc, o, status, resp.Value); err != nil {
			return fmt.Errorf("answer %s: %w", status, err)
		}
	}
	return nil
}

// stringList reads an annotation that holds a JSON array of strings; absent is nil.
func stringList(op *openapi3.Operation, ext string) ([]string, error) {
	v, ok := op.Extensions[ext]
	if !ok {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("%s is not a non-empty JSON array", ext)
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		str, ok := s.(string)
		if !ok || str == "" {
			return nil, fmt.Errorf("%s holds %v, not a non-empty string", ext, s)
		}
		out = append(out, str)
	}
	return out, nil
}

func quoteList(items []string) string {
	out := ""
	for i, s := range items {
		switch {
		case i == 0:
		case i == len(items)-1:
			out += " and "
		default:
			out += ", "
		}
		out += "`" + s + "`"
	}
	return out
}

// parameterExamples gives every path and header parameter its example from paramExamples.
func parameterExamples(op *openapi3.Operation) error {
	for _, p := range op.Parameters {
		if p.Value == nil || (p.Value.In != openapi3.ParameterInPath && p.Value.In != openapi3.ParameterInHeader) {
			continue
		}
		ex, ok := paramExamples[p.Value.Name]
		if !ok {
			return fmt.Errorf("parameter %s has no example: add it to paramExamples", p.Value.Name)
		}
		p.Value.Example = ex
	}
	return nil
}

// requestExample gives the request body its example: from requestExamples, else from its schema.
// An operation that takes a JSON body without declaring one gets the body from requestBodies.
func requestExample(name string, op *openapi3.Operation) error {
	if op.RequestBody == nil {
		if body, ok := requestBodies[name]; ok {
			op.RequestBody = &openapi3.RequestBodyRef{Value: body()}
		}
	}
	if op.RequestBody == nil {
		return nil
	}
	if op.RequestBody.Value == nil {
		return errors.New("the request body is a reference; the converter expects it inline")
	}
	for mt, media := range op.RequestBody.Value.Content {
		if ex, ok := requestExamples[name]; ok {
			media.Example = ex
			continue
		}
		ex, err := exampleOf(media.Schema, "")
		if err != nil {
			return fmt.Errorf("request body %s: %w", mt, err)
		}
		media.Example = ex
	}
	return nil
}
