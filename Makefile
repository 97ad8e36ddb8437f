# The two commands of the README: `go run ./cmd/proxy` (or `make demo`) and `make test`.
GO ?= go
FUZZTIME ?= 30000x

.PHONY: run demo test test-fast deps vet unit allocs fuzz bench bench-short build generate

run:
	$(GO) run ./cmd/proxy

demo:
	$(GO) run ./cmd/proxy -demo

deps:
	scripts/deps.sh

vet:
	$(GO) vet ./...

# Every suite: unit, end-to-end over the real binary, Redis replicas, real SDKs,
# faults, hostile clients, the 60 s soak, deploy artefacts.
unit:
	$(GO) test -race -shuffle=on -count=1 -timeout 20m ./...

# Allocation budgets are asserted without the race detector (it changes them).
allocs:
	$(GO) test -count=1 -run 'AllocBudget' ./internal/server ./internal/intercept ./internal/upstream ./bench

# Each fuzz target for FUZZTIME, beyond the seed corpora that `unit` runs.
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# The full suite runs last, so its summary closes the output.
test: deps vet allocs fuzz unit

# The fast lane: unit tests and the end-to-end suite over the binary, with
# nothing to install beyond Go. scripts/fast-packages.sh lists the packages:
# all but those whose tests need redis-server, node, promtool, kustomize or
# docker-compose (they import internal/testdeps) and the suites beyond
# test/e2e (faults, hostile, soak). Without -race: one build serves the test
# binaries and the binaries under test (a cold cache fits in two minutes),
# and the allocation budgets, skipped under -race, run too. `make test` runs
# everything, with -race.
test-fast:
	$(GO) test -shuffle=on -count=1 -timeout 10m $$(GO=$(GO) scripts/fast-packages.sh)

generate:
	$(GO) generate ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/composio-guard ./cmd/proxy

# The load benchmark (wrk over loopback; bench/run.sh prints the table), full or short.
bench:
	bench/run.sh

bench-short:
	bench/run.sh -short
