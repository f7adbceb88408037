#!/usr/bin/env bash
# deps.sh [build|test|bench] - install the Debian 12 packages custos needs, only those missing.
# Run as root (or with sudo available).  Idempotent: a machine that has everything installs nothing.
set -euo pipefail

want=(build-essential cmake pkg-config libsodium-dev libsqlite3-dev libmicrohttpd-dev libjansson-dev
      libcurl4-openssl-dev curl ca-certificates)
case "${1:-build}" in
  build) ;;
  test)  want+=(libcmocka-dev clang libclang-rt-14-dev procps perl openssl sqlite3 python3) ;;
  bench) want+=(libcmocka-dev wrk procps) ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# try without refreshing first (fast on machines with fresh lists), then with
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
  { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
