# The two commands of the README: `make run` and `make test`.
GO ?= go

.PHONY: run demo test deps vet unit bench build

run:
	$(GO) run ./cmd/proxy

demo:
	$(GO) run ./cmd/proxy -demo

deps:
	scripts/deps.sh

vet:
	$(GO) vet ./...

# Every test: unit, end-to-end over the real binary, Redis replicas, real SDKs,
# deploy artefacts. Installs what is missing first.
test: deps vet
	$(GO) test -race -shuffle=on -count=1 -timeout 15m ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/composio-guard ./cmd/proxy
