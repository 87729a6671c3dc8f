// Package docs holds the API reference generated from the handlers' swag annotations by
// ./scripts/swag: swag's Swagger 2.0 document (swagger.json, swagger.yaml) and the OpenAPI 3
// document converted from it (openapi.json, openapi.yaml), embedded in the binary. The gateway
// serves them; nothing here is edited by hand but this file.
package docs

import _ "embed"

var (
	//go:embed openapi.json
	openAPIJSON []byte
	//go:embed openapi.yaml
	openAPIYAML []byte
	//go:embed swagger.json
	swaggerJSON []byte
)

// OpenAPIJSON returns the OpenAPI 3 document as JSON. The bytes are shared: do not modify them.
func OpenAPIJSON() []byte { return openAPIJSON }

// OpenAPIYAML returns the OpenAPI 3 document as YAML. The bytes are shared: do not modify them.
func OpenAPIYAML() []byte { return openAPIYAML }

// SwaggerJSON returns the Swagger 2.0 document the OpenAPI 3 one is converted from. The bytes are
// shared: do not modify them.
func SwaggerJSON() []byte { return swaggerJSON }
