#!/usr/bin/env bash
# Installs what paddock's tests need on a fresh Debian/Ubuntu machine (run as root, or
# with sudo available). Idempotent: skips what is already there.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have python3  || need+=(python3)
have curl     || need+=(curl)
have git      || need+=(git)
have ip       || need+=(iproute2)
have setpriv  || need+=(util-linux)
have ps       || need+=(procps)
have cc       || need+=(gcc libc6-dev)
have bwrap    || need+=(bubblewrap)
have node     || need+=(nodejs)

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
