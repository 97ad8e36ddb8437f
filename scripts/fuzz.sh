#!/usr/bin/env bash
# Runs every fuzz target of the project for a bounded number of inputs each
# (FUZZTIME, default 30000x; a duration such as 10s works too, but a
# time-bounded run can end in a spurious "context deadline exceeded" on a
# loaded machine). The seed corpora under testdata/fuzz run in every `go test`
# anyway; this adds new, coverage-guided inputs. A crasher is written to the
# package's testdata/fuzz/<Target>/ and fails the run: commit it as a
# regression test after fixing the cause.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-30000x}"
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
  pkg="./$(dirname "${file#./}")"
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/composio-guard-fuzz.log 2>&1 || {
      cat /tmp/composio-guard-fuzz.log
      exit 1
    }
  done
done
