// Package deps pins the project's chosen dependencies in go.mod while the
// packages that use them are being written. Delete it once every import is
// used by real code.
package deps

import (
	_ "github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	_ "github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	_ "github.com/coder/websocket"
	_ "github.com/evanphx/json-patch/v5"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/invopop/jsonschema"
	_ "github.com/jackc/pglogrepl"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/wI2L/jsondiff"
	_ "go.uber.org/goleak"
	_ "go.yaml.in/yaml/v3"
)
