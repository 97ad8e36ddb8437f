#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, and nothing
# that is already there: redis-server and redis-cli (replica, failover,
# Sentinel, Cluster and TLS tests), Node.js + npm
# and the pinned SDKs (real-SDK conformance suite), promtool (alert rules),
# kustomize (manifests), wrk (the load benchmark). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_need=()
command -v redis-server >/dev/null 2>&1 || apt_need+=(redis-server)
# redis-cli (redis-tools; a dependency of redis-server on Debian, checked on
# its own) builds the Cluster of the Cluster smoke test; Sentinel runs as
# redis-server --sentinel, so no redis-sentinel package is needed.
command -v redis-cli >/dev/null 2>&1 || apt_need+=(redis-tools)
command -v node >/dev/null 2>&1 || apt_need+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_need+=(npm)
command -v wrk >/dev/null 2>&1 || apt_need+=(wrk)         # bench/run.sh
command -v taskset >/dev/null 2>&1 || apt_need+=(util-linux)
if ((${#apt_need[@]})); then
  echo "deps: apt-get install ${apt_need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
fi

go mod download

if [ -f test/sdk/package-lock.json ]; then
  # npm ci wipes node_modules: skip it when the installed tree matches the lock file.
  stamp=test/sdk/node_modules/.lock-sha
  want=$(sha256sum test/sdk/package-lock.json | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "deps: npm ci (test/sdk)"
    npm ci --prefix test/sdk --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
  fi
fi

[ -x deploy/tools.sh ] && deploy/tools.sh
exit 0
