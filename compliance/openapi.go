package compliance

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3 description of the /v1 compliance API, served at
// /v1/openapi.yaml. A test keeps it and the routes in step.
//
//go:embed openapi.yaml
var OpenAPI []byte

func (s *Server) getOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(OpenAPI)
}
