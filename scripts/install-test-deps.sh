#!/usr/bin/env bash
# Installs what paddock's tests need on a fresh Debian/Ubuntu machine (run as root, or
# with sudo available). Idempotent: skips what is already there.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
# Sandboxed tests run the system's interpreters by absolute path (a pyenv or nvm copy in
# $HOME is not visible inside a sandbox).
[ -x /usr/bin/python3 ] || need+=(python3)
# Python `requests` through the proxy (the system's, for /usr/bin/python3).
/usr/bin/python3 -c 'import requests' >/dev/null 2>&1 || need+=(python3-requests)
[ -x /usr/bin/curl ]    || need+=(curl)
have git      || need+=(git)
have openssl  || need+=(openssl)   # the egress tests' upstream CA
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
have ip       || need+=(iproute2)
have setpriv  || need+=(util-linux)
have ps       || need+=(procps)
have cc       || need+=(gcc libc6-dev)
have bwrap    || need+=(bubblewrap)
[ -x /usr/bin/node ]    || need+=(nodejs)
# The agent tests install the real claude, codex and gemini CLIs from npm (paddock's own
# tool layer, cached in target/tmp/agent-tools).
have npm      || need+=(npm)

if ((${#need[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! have cargo; then
  echo "error: cargo is not installed; install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi
