package docs

import _ "embed"

// The OpenAPI 3 document converted from the swag annotations by ./scripts/swag
// (internal/tools/openapi-gen); this file is not generated.
var (
	//go:embed openapi.json
	openAPIJSON []byte
	//go:embed openapi.yaml
	openAPIYAML []byte
)

// OpenAPIJSON returns the OpenAPI 3 document as JSON. The bytes are shared: do not modify them.
func OpenAPIJSON() []byte { return openAPIJSON }

// OpenAPIYAML returns the OpenAPI 3 document as YAML. The bytes are shared: do not modify them.
func OpenAPIYAML() []byte { return openAPIYAML }
