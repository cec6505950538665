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
# The dashboard's browser test (crates/paddock-cli/tests/dashboard.rs) drives Debian's
# chromium through playwright-core (tests/ui, from npm; no browser download).
[ -x /usr/bin/chromium ] || need+=(chromium)
# The docker runtime's tests (scripts/dockerd.sh): Debian's engine, checked by path since
# another docker client may be on PATH (docker.io: /usr/sbin/dockerd, its client
# /usr/bin/docker, and /usr/bin/docker-init from tini for --init), gVisor as the runsc
# runtime, and debootstrap to make the base image without a registry (it verifies the
# archive with gpgv against Debian's keyring).
[ -x /usr/sbin/dockerd ]     || need+=(docker.io)
[ -x /usr/bin/docker-init ]  || need+=(tini)
[ -x /usr/bin/runsc ]        || need+=(runsc)
[ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
have gpgv        || need+=(gpgv)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)

if ((${#need[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  # Installing docker.io must not start the system's own dockerd (docker.service on
  # /var/run/docker.sock): the tests run a private one. policy-rc.d stops package scripts
  # from starting services; one is put in place only for this install if there is none.
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || rc=$?
  if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || exit "$rc"
fi

if ! have cargo; then
  echo "error: cargo is not installed; install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi
