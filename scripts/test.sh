#!/usr/bin/env bash
# Quick start, command 2: install everything, including the real peers the tests talk to,
# and run the full test suite (slow end-to-end tests included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
scripts/start-peers.sh
# The suite runs in one pytest worker per core (tests take their own ports, folders and
# databases); MERCURE_TEST_WORKERS=0 runs it in this process, e.g. to use a debugger.
exec .venv/bin/python -m pytest -n "${MERCURE_TEST_WORKERS:-auto}" "$@"
