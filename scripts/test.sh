#!/usr/bin/env bash
# test.sh - quick start (2): install what is missing, build, and run every test:
#   1. the dev build (-Werror): unit, integration (API, CLI, crash, tamper) tests;
#   2. the sanitizer build (ASan + UBSan): unit and integration tests again;
#   3. the ThreadSanitizer build: the tests that run the server's threads (API, held responses,
#      erasure, ledger writer, key cache, master key rotation under load);
#   4. the libFuzzer targets (clang), each over its seed corpus and for a short time.
# Exit status 0 only when all of it passed.  .ci/run runs this script.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${CUSTOS_FUZZ_SECONDS:-20}

echo "== dev build"
scripts/build.sh build
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== sanitizer build (ASan + UBSan)"
scripts/build.sh build-asan -DCUSTOS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -L 'unit|integration' -LE slow

echo "== thread sanitizer build (TSan)"
scripts/build.sh build-tsan -DCUSTOS_TSAN=ON
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  ctest --test-dir build-tsan --output-on-failure -j "$jobs" -R 'api/|server/|sh/test_rotate_load$|unit/test_(erase|ledger|vault|import|server)$'

if [ -f tests/fuzz/CMakeLists.txt ]; then
  echo "== fuzz targets (${fuzz_seconds}s each)"
  CC=clang scripts/build.sh build-fuzz -DCUSTOS_FUZZ=ON -DCUSTOS_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug
  for t in build-fuzz/tests/fuzz/fuzz_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    corpus=tests/fuzz/corpus/${name#fuzz_}
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus/." "$work/"
    echo "-- $name"
    "$t" -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -print_final_stats=0 "$work" >"$work.log" 2>&1 ||
      { tail -n 40 "$work.log"; echo "fuzz target $name failed" >&2; exit 1; }
    rm -rf "$work" "$work.log"
  done
fi
echo "== all tests passed"
