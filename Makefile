# The whole test suite: `make test`. It builds (once, cached) the Vault dev
# server the integration tests start, makes sure PostgreSQL is up, vets, and
# runs every package with the race detector.
GO ?= go
TEST_TIMEOUT ?= 25m

.PHONY: test vet build run vault services bench

test: services vault vet
	CLEARANCE_VAULT_BIN="$$(scripts/vault-binary.sh)" $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

vet:
	$(GO) vet ./...

services:
	scripts/ensure-services.sh

vault:
	@scripts/vault-binary.sh >/dev/null

build:
	$(GO) build -o bin/clearance ./cmd/clearance

run:
	$(GO) run ./cmd/clearance dev

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./agreements/ ./keys/ ./audit/
