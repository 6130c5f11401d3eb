#!/usr/bin/env bash
# Install what the benchmark drives beside mailward: Debian's Postfix and openssl, and the
# PyPI packages of the `bench` extra (aiosmtpd, matplotlib, py-spy). Idempotent: run it again
# and it installs only what is missing.
#
# The system's own Postfix is never left running: Debian's package is preseeded with
# "No configuration" (so nothing listens on port 25), and if its service is running after the
# install it is stopped. The benchmark runs its own instance (bench/run.py writes a
# config_directory and queue_directory under its work folder and listens on a high port).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; else SUDO=; fi
else SUDO=; fi

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/sbin/postfix ] || need+=(postfix)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    echo "bench/setup.sh: please install as root: apt-get install ${need[*]}" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian's own instance: never leave it listening on port 25.
if [ -x /usr/sbin/postfix ] && $SUDO /usr/sbin/postfix status >/dev/null 2>&1; then
  $SUDO /usr/sbin/postfix stop >/dev/null 2>&1 || true
fi

[ -x "$BIN/python" ] || { python3 -m venv .venv; "$BIN/pip" install -q --upgrade pip; }
"$BIN/python" - <<'PY' || "$BIN/pip" install -q -e '.[test,bench]'
import importlib.util, sys
sys.exit(0 if all(importlib.util.find_spec(m) for m in ("mailward", "aiosmtpd", "matplotlib")) else 1)
PY
[ -x "$BIN/py-spy" ] || "$BIN/pip" install -q -e '.[test,bench]'
echo "bench/setup.sh: ready (postfix $(/usr/sbin/postconf -dh mail_version 2>/dev/null || echo '?'), $(openssl version))"
