#!/usr/bin/env bash
# Quick start, command 1: install everything and run the whole router on the embedded default
# (SQLite, ./data, all services). Configuration: ./mercure.yaml (written on first run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
[ -f mercure.yaml ] || .venv/bin/mercure init .
exec .venv/bin/mercure run --config mercure.yaml
