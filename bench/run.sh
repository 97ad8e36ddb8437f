#!/usr/bin/env bash
# Load benchmark: composio-guard side by side with a bare httputil.ReverseProxy,
# a naive guard (guarded links) and the tiny upstream, over loopback, proxies
# pinned to CPU 0 and the load generator (wrk) + upstream to CPU 1. Prints a
# table with the targets and cost ratios and exits non-zero when a target is
# missed.
#
#   bench/run.sh            full run: 5 rounds of 5 s per target, targets back to back
#   bench/run.sh -short     a few seconds per workload (CI runs it as a report)
#   bench/run.sh -long      full run plus the 10-minute flat-memory soak
#   bench/run.sh -- -only get,post -profile /tmp/prof   (flags after -- go to loadbench)
#
# Needs: Go, wrk (apt-get install -y wrk), taskset (util-linux), 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
while (($#)); do
  case "$1" in
    -short | --short) args+=(-short) ;;
    -long | --long) args+=(-long) ;;
    --) shift; args+=("$@"); break ;;
    *) args+=("$1") ;;
  esac
  shift
done

command -v wrk >/dev/null || { echo "bench: missing dependency: wrk is not installed: run \`make deps\`" >&2; exit 2; }
command -v taskset >/dev/null || { echo "bench: missing dependency: taskset (util-linux) is not installed: run \`make deps\`" >&2; exit 2; }

bin=$(mktemp -d "${TMPDIR:-/tmp}/composio-guard-bench.XXXXXX")
pid=""
cleanup() {
  # Stop the one process this script started, by its PID; loadbench stops
  # every process it started by PID, and they die with it (PDEATHSIG) if not.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench: building into $bin" >&2
# As deploy/Dockerfile builds the release binary; the floors and the upstream alike.
release() { CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$@"; }
release "$bin/composio-guard" ./cmd/proxy
release "$bin/bareproxy" ./bench/cmd/bareproxy
release "$bin/naiveguard" ./bench/cmd/naiveguard
release "$bin/upstream" ./bench/cmd/upstream
go build -o "$bin/loadbench" ./bench/cmd/loadbench

# loadbench itself shares the load CPU; it starts the proxies with taskset -c 0.
taskset -c 1 "$bin/loadbench" -guard "$bin/composio-guard" -bare "$bin/bareproxy" -naive "$bin/naiveguard" -upstream "$bin/upstream" \
  -scripts bench/wrk "${args[@]}" &
pid=$!
set +e
wait "$pid"
code=$?
set -e
pid=""
exit "$code"
