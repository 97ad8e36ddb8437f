#!/usr/bin/env bash
# Prints the packages `make test-fast` runs: the unit tests and the
# end-to-end suite over the binary (test/e2e), nothing that needs a program
# beyond Go. What it leaves out follows rules, not a hand-kept list:
#  - every package whose tests import internal/testdeps (directly or through
#    internal/lock/redistest): they need redis-server, node and the pinned
#    SDKs, promtool, kustomize or docker-compose (today
#    internal/lock/redisserver, test/replicas, test/sdk, test/deploy);
#    testdeps's own tests need nothing, nor internal/lock's (miniredis);
#  - the suites over the binary beyond test/e2e: test/faults, test/hostile
#    and test/soak (a 60 s soak).
# `make test` runs all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
mod=$($GO list -m)
needs=$($GO list -test -f '{{if and .ForTest (ne .ForTest "'"$mod"'/internal/testdeps")}}{{range .Deps}}{{if eq . "'"$mod"'/internal/testdeps"}}{{$.ForTest}}{{"\n"}}{{end}}{{end}}{{end}}' ./... | sort -u)
$GO list ./... | grep -vxF -f <(printf '%s\n' $needs "$mod/test/faults" "$mod/test/hostile" "$mod/test/soak")
