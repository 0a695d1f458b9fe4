#!/usr/bin/env bash
# Install mercure-router into ./.venv (idempotent; fast when nothing changed).
#   scripts/install.sh          the router and its Python dependencies
#   scripts/install.sh --test   also the test tools and the real peers the tests talk to
#                               (Debian packages: DCMTK, Orthanc, PostgreSQL, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=run
[ "${1:-}" = "--test" ] && mode=test

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "install.sh: installing Debian packages: ${missing[*]}"
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Python 3.11 or newer with venv support.
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  apt_install python3 python3-venv python3-pip
fi
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)'; then
  echo "install.sh: mercure-router needs Python 3.11 or newer ($python is older)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$python" -m venv .venv; }
fi

# The receiver's dataset scanner is compiled at install (setup.py): a C compiler and Python's
# headers. Without them the install goes on and the same scanner runs in Python, slower.
command -v cc >/dev/null || apt_install gcc libc6-dev || true
headers=$("$python" -c 'import sysconfig; print(sysconfig.get_path("include"))')
[ -f "$headers/Python.h" ] || apt_install python3-dev || true

# The rsync target runs the rsync and ssh programs (on this host and rsync on the server).
apt_install rsync openssh-client

if [ "$mode" = test ]; then
  # Real peers of the test suite (see docs/testing.md).
  # Chromium drives the web interface's browser tests (Playwright uses it; never `playwright install`).
  apt_install dcmtk orthanc orthanc-dicomweb postgresql openssl openssh-server podman runc busybox-static chromium
fi

extras=""
[ "$mode" = test ] && extras="[test]"
stamp=.venv/.mercure-installed
hash=$(cat pyproject.toml setup.py src/mercure/dicomnet/_scanner.c | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
# A test install also satisfies a plain one.
if [ "$have" != "$hash test" ] && [ "$have" != "$hash $mode" ]; then
  echo "install.sh: installing the Python package${extras:+ with test tools}"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # A new file for the compiled scanner, not the old one rewritten: running receivers keep
  # the old one mapped, and rewriting it in place would crash them (SIGBUS).
  rm -f src/mercure/dicomnet/_scanner.*.so
  .venv/bin/python -m pip install -q -e ".$extras"
  echo "$hash $mode" > "$stamp"
fi
if ! .venv/bin/python -c 'import mercure.dicomnet._scanner' 2>/dev/null; then
  echo "install.sh: the compiled dataset scanner was not built (no C compiler or Python headers);" \
    "the receiver uses the Python one, with more CPU per instance (docs/performance.md)" >&2
fi
