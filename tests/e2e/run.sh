#!/usr/bin/env bash
# Runs the carevault end-to-end suites. Each *.test.mjs starts its own server.
#   CV_BIN=/path/to/carevault ./run.sh            # all suites
#   ./run.sh crud.test.mjs negative.test.mjs       # selected suites
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi

if [ "$#" -gt 0 ]; then
  exec node --test --test-concurrency=2 "$@"
fi

files=(cli.test.mjs at-rest.test.mjs examples.test.mjs crud.test.mjs negative.test.mjs transport.test.mjs durability.test.mjs migrate.test.mjs transaction.test.mjs search.test.mjs users.test.mjs login.test.mjs backend.test.mjs clients.test.mjs smart.test.mjs jwksurl.test.mjs access.test.mjs audit.test.mjs keys.test.mjs custody.test.mjs backup.test.mjs)
# nodes.test.mjs restarts the PostgreSQL server that the other suites share on the
# PostgreSQL pass: it runs alone, after them
rc=0
node --test --test-concurrency=2 "${files[@]}" || rc=$?
node --test nodes.test.mjs || rc=$?
exit "$rc"
