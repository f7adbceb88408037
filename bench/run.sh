#!/usr/bin/env bash
# run.sh - `make bench`: build optimized, run every benchmark, print a results table.
#
# usage: bench/run.sh [--ledger-100m] [--quick] [--only NAME[,NAME...]]
#   --ledger-100m  also build a 100,000,000-entry ledger with bench_ledger_gen and measure it
#                  (long: tens of minutes, ~30 GB of disk; off by default)
#   --quick        smoke run: short wrk runs, 1 round, 20k/50k import, 200 erasures (numbers
#                  are not the recorded ones)
#   --only         run only some of: ledger, http, erase, import, restore (restore is not in the
#                  default run: a report without a target, about 2 minutes)
#
# Builds (Release, in their own directories, tests off):
#   build-bench           the normal build
#   build-bench-noledger  -DCUSTOS_BENCH_NO_LEDGER=ON (the ledger append compiled out of the
#                         audit path), for the ledger-cost benchmark only
# Every ratio is between two measurements of this run (same machine, same minutes).  The full
# log goes to build-bench/bench-results.txt.  What is measured and why: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ledger100m=0 quick=0 only=ledger,http,erase,import
while [ $# -gt 0 ]; do
  case $1 in
    --ledger-100m) ledger100m=1 ;;
    --quick) quick=1 ;;
    --only) only=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) bench_die "unknown option $1 (see --help)" ;;
  esac
  shift
done
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

scripts/deps.sh bench
if [ ! -x /usr/bin/time ]; then   # Debian package "time": /usr/bin/time -v reports peak RSS
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -q --no-install-recommends time >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends time >/dev/null; }
  else sudo apt-get install -y -q --no-install-recommends time >/dev/null; fi
fi

# -O3 builds; warnings are not errors here (the dev build keeps -Werror): GCC at -O3 reports
# maybe-uninitialized cases that -O2 does not, and a benchmark must not stop on them.
common=(-DCMAKE_BUILD_TYPE=Release -DCUSTOS_TESTS=OFF -DCUSTOS_WERROR=OFF)
build() { # DIR OPTION...: build quietly; the compiler's output goes to DIR.log
  local dir=$1; shift
  bench_log "building $dir (Release $*)"
  scripts/build.sh "$dir" "${common[@]}" "$@" >"$dir.log" 2>&1 || { cat "$dir.log" >&2; bench_die "build of $dir failed"; }
}
build build-bench -DCUSTOS_BENCH_NO_LEDGER=OFF
if want http; then build build-bench-noledger -DCUSTOS_BENCH_NO_LEDGER=ON; fi

out=build-bench/bench-results.txt
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t_start=$(date +%s)
{
  echo "custos benchmarks, $started"
  echo "machine: $(bench_machine)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (plus uncommitted changes)')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"

if [ $quick -eq 1 ]; then
  export BENCH_DURATION=${BENCH_DURATION:-3} BENCH_ROUNDS=${BENCH_ROUNDS:-1} BENCH_N=${BENCH_N:-200}
  export BENCH_COUNTS=${BENCH_COUNTS:-20000 50000} BENCH_LEDGER_N=${BENCH_LEDGER_N:-200000}
  export BENCH_RESTORE_COUNTS=${BENCH_RESTORE_COUNTS:-20000}
fi

if want ledger; then
  if [ -x build-bench/bench/bench_ledger_append ]; then
    bench_log "ledger: bench_ledger_append"
    {
      echo
      echo "Ledger append (bench_ledger_append, in process)"
      build-bench/bench/bench_ledger_append build-bench/work-ledger ${BENCH_LEDGER_N:-2000000}
    } 2>&1 | tee -a "$out" | tee build-bench/ledger-append.txt
    rate=$(awk '/^ledger enqueue/ {for (i = 1; i <= NF; i++) if ($(i + 1) == "entries/s") print $i}' \
      build-bench/ledger-append.txt | head -n1)
    if [ -n "$rate" ]; then
      v=$(awk -v r="$rate" 'BEGIN {print (r >= 300000 ? "PASS" : "FAIL")}')
      echo "SUMMARY|0. ledger append in process (1 producer)|$rate entries/s|>= 300000/s|$v" | tee -a "$out"
    fi
  else
    echo "(bench_ledger_append not built: skipped)" | tee -a "$out"
  fi
fi
if want http; then bench/http.sh build-bench build-bench-noledger | tee -a "$out"; fi
if want erase; then bench/erase.sh build-bench | tee -a "$out"; fi
if want import; then bench/import.sh build-bench | tee -a "$out"; fi
if want restore; then bench/restore.sh build-bench | tee -a "$out"; fi
if [ $ledger100m -eq 1 ]; then
  if [ -x build-bench/bench/bench_ledger_gen ]; then
    bench_log "ledger: bench_ledger_gen 100,000,000 entries (long)"
    rm -rf build-bench/work-ledger-100m
    { echo; echo "100M-entry ledger (bench_ledger_gen)"
      build-bench/bench/bench_ledger_gen build-bench/work-ledger-100m 100000000; } 2>&1 | tee -a "$out"
    rm -rf build-bench/work-ledger-100m
  else
    echo "(bench_ledger_gen not built: skipped)" | tee -a "$out"
  fi
fi

{
  echo
  echo "== Results ($started, $(($(date +%s) - t_start)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
  printf '%-58s | %-44s | %-11s | %s\n' benchmark result target verdict
  printf '%s\n' "-----------------------------------------------------------+----------------------------------------------+-------------+--------"
  grep '^SUMMARY|' "$out" | sort -t'|' -k2,2V | while IFS='|' read -r _ name result target verdict; do
    printf '%-58s | %-44s | %-11s | %s\n' "$name" "$result" "$target" "$verdict"
  done
  [ $quick -eq 0 ] || echo "(--quick: smoke run, not the recorded numbers)"
  echo "full log: $out"
} | tee -a "$out.tmp"
cat "$out.tmp" >>"$out"
rm -f "$out.tmp"
