#!/usr/bin/env bash
# build.sh [DIR] [cmake options...] - configure and build custos into DIR (default build/).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j "$jobs" >/dev/null || cmake --build "$dir" -j 1
