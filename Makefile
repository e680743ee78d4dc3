# The whole test suite: `make test`. It makes sure PostgreSQL is up, builds
# (once, cached) the Vault dev server the integration tests start, installs
# Debian's chromium for the console's browser tests when it is missing, runs
# go vet and staticcheck, a bounded run of every fuzz target, then every
# package with the race detector, and last the one test that skips itself
# under it (compliance's paging over 100,000 entries, 25 s without the race
# detector, more than 5 minutes with it) without.
GO ?= go
TEST_TIMEOUT ?= 25m
FUZZTIME ?= 8s

.PHONY: test vet lint fuzz-smoke build run vault services chromium bench load faults-long

test: services vault chromium lint fuzz-smoke
	CLEARANCE_VAULT_BIN="$$(scripts/vault-binary.sh)" $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '^TestPagingOverLargeLog$$' ./compliance

vet:
	$(GO) vet ./...

lint:
	scripts/lint.sh

fuzz-smoke:
	FUZZTIME=$(FUZZTIME) scripts/fuzz-smoke.sh

services:
	scripts/ensure-services.sh

vault:
	@scripts/vault-binary.sh >/dev/null

chromium:
	@scripts/ensure-chromium.sh >/dev/null

build:
	$(GO) build -o bin/clearance ./cmd/clearance

run:
	$(GO) run ./cmd/clearance dev

bench:
	CLEARANCE_VAULT_BIN="$$(scripts/vault-binary.sh)" $(GO) test -run '^$$' -bench . -benchmem ./agreements/ ./keys/ ./audit/ ./broker/ ./connectors/...

faults-long:
	CLEARANCE_VAULT_BIN="$$(scripts/vault-binary.sh)" CLEARANCE_LONG=1 $(GO) test -count=1 -timeout 20m -run TestFaultInjection -v ./integration/faults/

load:
	CLEARANCE_VAULT_BIN="$$(scripts/vault-binary.sh)" $(GO) run ./integration/loadharness
