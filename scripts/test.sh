#!/usr/bin/env bash
# Quick start, command 2: install everything, including the real peers the tests talk to,
# and run the full test suite (slow end-to-end tests included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
scripts/start-peers.sh
exec .venv/bin/python -m pytest "$@"
