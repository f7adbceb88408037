#!/usr/bin/env bash
# erase.sh - erase latency (docs/benchmarks.md, section 4): p50 of DELETE /v1/subjects/{id}
# against the p50 of POST /v1/subjects, measured in the same run on the same server.
#
# usage: bench/erase.sh [BUILD_DIR]                          (default build-bench)
#   env BENCH_WORK   scratch directory (default BUILD_DIR/work-erase; removed and recreated)
#       BENCH_N      requests of each kind (default 1500)
#       BENCH_BLOCK  requests per block (default 50)
#
# A vault with the 2,000 sample customers is served by the normal build.  The requests go in
# alternating blocks: BENCH_BLOCK sequential POST /v1/subjects (bodies: bench_gen_customers
# output, seed 101), then BENCH_BLOCK sequential DELETE /v1/subjects/{id} of exactly the
# subjects that block created, and so on, so both kinds sample the same minutes of disk and
# CPU weather (fsync latency on a shared machine varies by 10x from minute to minute).  One
# keep-alive curl per block, one request at a time; each request's time is curl's time_total.
# Both are full durable operations (SQLite synchronous=FULL commits, ledger entry fdatasync'ed).
#
# Prints a table and SUMMARY| lines (parsed by bench/run.sh) on stdout; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

bdir=${1:-build-bench}
bin=$bdir/custos
gen=$bdir/bench/bench_gen_customers
work=${BENCH_WORK:-$bdir/work-erase}
n=${BENCH_N:-1500}
block=${BENCH_BLOCK:-50}
[ -x "$bin" ] || bench_die "$bin not built"
[ -x "$gen" ] || bench_die "$gen not built"

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
S_pid=
trap 'bench_stop "$S_pid"' EXIT

bench_log "erase: making the vault (2,000 sample customers)"
bench_vault "$bin" "$work/vault"
token=$(bench_token "$bin" "$work/vault")
bench_serve "$bin" "$work/vault" S
base="http://127.0.0.1:$S_port/v1/subjects"

# percentile FILE P: the P-th percentile (nearest rank) of the numbers (seconds) in FILE, in ms
percentile() { sort -g "$1" | awk -v p="$2" '{a[NR] = $1} END {i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; printf "%.2f", a[i] * 1000}'; }

# curl config groups: one per request (headers do not carry over "next")
"$gen" "$n" 101 | sed 's/\\/\\\\/g; s/"/\\"/g' | split -l "$block" -a 4 - "$work/body."
: >"$work/post.t"
: >"$work/delete.t"
bench_log "erase: $n x POST and $n x DELETE in alternating blocks of $block"
for f in "$work"/body.*; do
  awk -v url="$base" -v tok="$token" '{
      if (NR > 1) print "next"
      print "url = \"" url "\""
      print "header = \"Authorization: Bearer " tok "\""
      print "header = \"Content-Type: application/json\""
      print "data-binary = \"" $0 "\""
      print "write-out = \"\\t%{http_code}\\t%{time_total}\\n\""
    }' "$f" >"$work/post.curl"
  curl -sS -K "$work/post.curl" >"$work/post.out"
  awk -F'\t' '$2 != 201 {bad++} END {exit bad > 0}' "$work/post.out" ||
    bench_die "a POST /v1/subjects failed (see $work/post.out)"
  awk -F'\t' '{print $3}' "$work/post.out" >>"$work/post.t"
  sed 's/.*"id":"\([0-9a-f]*\)".*/\1/' "$work/post.out" >"$work/ids"
  awk -v url="$base" -v tok="$token" '{
      if (NR > 1) print "next"
      print "url = \"" url "/" $1 "\""
      print "request = \"DELETE\""
      print "header = \"Authorization: Bearer " tok "\""
      print "write-out = \"\\t%{http_code}\\t%{time_total}\\n\""
    }' "$work/ids" >"$work/delete.curl"
  curl -sS -K "$work/delete.curl" >"$work/delete.out"
  awk -F'\t' '$2 != 200 {bad++} END {exit bad > 0}' "$work/delete.out" ||
    bench_die "a DELETE /v1/subjects/{id} failed (see $work/delete.out)"
  awk -F'\t' '{print $3}' "$work/delete.out" >>"$work/delete.t"
  rm -f "$f"
done
[ "$(wc -l <"$work/post.t")" -eq "$n" ] && [ "$(wc -l <"$work/delete.t")" -eq "$n" ] ||
  bench_die "expected $n timings of each kind"

echo
echo "Erase latency ($n of each, sequential on one keep-alive connection per block of $block," \
  "POST and DELETE blocks alternating; milliseconds)"
printf '%-26s %8s %8s %8s %8s %8s\n' request p10 p50 p90 p99 max
for k in post delete; do
  printf '%-26s %8s %8s %8s %8s %8s\n' "$([ $k = post ] && echo "POST /v1/subjects" || echo "DELETE /v1/subjects/{id}")" \
    "$(percentile "$work/$k.t" 10)" "$(percentile "$work/$k.t" 50)" "$(percentile "$work/$k.t" 90)" \
    "$(percentile "$work/$k.t" 99)" "$(percentile "$work/$k.t" 100)"
done
pp=$(percentile "$work/post.t" 50); dp=$(percentile "$work/delete.t" 50)
ratio=$(awk -v a="$dp" -v b="$pp" 'BEGIN {printf "%.2f", a / b}')
echo "DELETE p50 / POST p50 = $ratio"
v=$(awk -v r="$ratio" 'BEGIN {print (r <= 2.0 ? "PASS" : "FAIL")}')
echo "SUMMARY|4. erase p50 vs create p50|DELETE $dp ms / POST $pp ms = $ratio|<= 2.00|$v"
