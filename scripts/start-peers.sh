#!/usr/bin/env bash
# Start the long-running servers the tests use, if they are installed but not running.
# (On the project's machines PostgreSQL already runs; a fresh machine needs it started.)
set -euo pipefail
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -n "$version" ]; then
    if [ "$(id -u)" = 0 ]; then
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    else
      sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
  fi
fi
