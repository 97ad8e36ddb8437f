#!/usr/bin/env bash
# Installs what the deploy checks (go test ./test/deploy/) need, and only what
# is missing; scripts/deps.sh runs it. Idempotent: a second run only checks.
#   promtool        built with go install at a pinned version into a cache
#                   folder kept between runs (a few minutes the first time)
#   docker-compose  Debian's package, for `docker-compose config -q`
#   kustomize       only when neither kubectl (kubectl kustomize) nor
#                   kustomize is on the machine
set -euo pipefail
cd "$(dirname "$0")/.."

# Prometheus 3.16.0: its Go module is tagged v0.3MM.P for Prometheus 3.MM.P.
PROMTOOL_VERSION=v0.316.0
KUSTOMIZE_VERSION=v5.5.0
# test/deploy looks here too (helpers_test.go: toolsDir).
TOOLS="${COMPOSIO_GUARD_TOOLS:-$HOME/.cache/composio-guard-tools/bin}"
mkdir -p "$TOOLS"

# go install with a version ignores the project's go.mod; GOFLAGS from CI
# (-mod=readonly) would be refused for it.
gi() { GOFLAGS= GOBIN="$TOOLS" go install "$1"; }

stamp="$TOOLS/.promtool-version"
if [ ! -x "$TOOLS/promtool" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$PROMTOOL_VERSION" ]; then
  echo "deploy/tools.sh: go install promtool@$PROMTOOL_VERSION into $TOOLS (minutes on a cold cache)"
  start=$SECONDS
  gi "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
  echo "$PROMTOOL_VERSION" >"$stamp"
  echo "deploy/tools.sh: promtool built in $((SECONDS - start))s"
fi

if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1 && [ ! -x "$TOOLS/kustomize" ]; then
  echo "deploy/tools.sh: go install kustomize@$KUSTOMIZE_VERSION into $TOOLS"
  gi "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi

if ! command -v docker-compose >/dev/null 2>&1; then
  echo "deploy/tools.sh: apt-get install docker-compose"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
exit 0
