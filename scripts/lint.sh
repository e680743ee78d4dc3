#!/usr/bin/env bash
# lint.sh: go vet and staticcheck on the whole module, with the checks and
# exclusions of staticcheck.conf. staticcheck is fetched from the Go module
# proxy at a pinned version that supports this Go release (Go 1.26), and
# cached by the go command after the first run.
#
# govulncheck is not run here: it needs the vulnerability database at
# vuln.go.dev, which the build machines cannot reach (see SECURITY.md). Where
# it can, run: go run golang.org/x/vuln/cmd/govulncheck@v1.1.4 ./...
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2} # staticcheck 2026.2.2

"$GO" vet ./...
"$GO" run "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}" ./...
echo "lint: go vet and staticcheck ${STATICCHECK_VERSION} clean"
