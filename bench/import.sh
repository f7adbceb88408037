#!/usr/bin/env bash
# import.sh - bulk import throughput and memory (docs/benchmarks.md, section 3).
#
# usage: bench/import.sh [BUILD_DIR]                         (default build-bench)
#   env BENCH_WORK     scratch directory (default BUILD_DIR/work-import; removed and recreated)
#       BENCH_COUNTS   subject counts (default "100000 300000 1000000")
#
# bench_gen_customers writes the largest count once (seed 1; line i depends only on the seed and
# i, so the first N lines of it are exactly the N-subject file).
#   baseline  bench_parse_jsonl: read + parse every line with jansson on one thread (best of 3 on
#             the smallest count's lines; the rate is per line, independent of the count)
# and each count is
#   import    custos import --data NEW_VAULT FILE, under /usr/bin/time -v (wall time, peak RSS,
#             bytes written to disk)
# into a fresh vault on the same disk, removed afterwards.  subjects/s = N / wall time of the
# whole command (open, import, final log compaction, close).  Peak RSS across counts shows
# whether memory stays flat.
#
# Prints a table and SUMMARY| lines (parsed by bench/run.sh) on stdout; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

bdir=${1:-build-bench}
bin=$bdir/custos
gen=$bdir/bench/bench_gen_customers
parse=$bdir/bench/bench_parse_jsonl
work=${BENCH_WORK:-$bdir/work-import}
counts=${BENCH_COUNTS:-100000 300000 1000000}
for x in "$bin" "$gen" "$parse"; do [ -x "$x" ] || bench_die "$x not built"; done
[ -x /usr/bin/time ] || bench_die "/usr/bin/time is missing (Debian package 'time')"

rm -rf "$work"
mkdir -p "$work"
max=$(printf '%s\n' $counts | sort -g | tail -n1)
bench_log "import: generating $max customers"
t0=$(date +%s.%N)
"$gen" "$max" 1 >"$work/all.jsonl"
t1=$(date +%s.%N)
gen_rate=$(awk -v n="$max" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')


# the baseline: parse rate is per line, so measure it on the smallest count's lines, best of 3
min=$(printf '%s\n' $counts | sort -g | head -n1)
head -n "$min" "$work/all.jsonl" >"$work/base.jsonl"
bench_log "import: baseline: parse $min lines (best of 3)"
prate=$(for _ in 1 2 3; do "$parse" "$work/base.jsonl"; done | awk '$(NF) == "lines/s" && $(NF - 1) > b {b = $(NF - 1)} END {print b}')
rm -f "$work/base.jsonl"

: >"$work/raw"
for n in $counts; do
  f="$work/c$n.jsonl"
  if [ "$n" = "$max" ]; then ln -sf all.jsonl "$f"; else head -n "$n" "$work/all.jsonl" >"$f"; fi
  rm -rf "$work/vault"
  "$bin" init --data "$work/vault" --origin bench.custos.example/ledger >/dev/null
  bench_log "import: $n: custos import"
  /usr/bin/time -v "$bin" import --data "$work/vault" "$f" >"$work/import.$n.out" 2>"$work/import.$n.time" ||
    bench_die "custos import of $n subjects failed (see $work/import.$n.out and .time)"
  grep -q "imported $n subjects" "$work/import.$n.out" || bench_die "import of $n: $(cat "$work/import.$n.out")"
  wall=$(bench_time_wall "$work/import.$n.time"); rss=$(bench_time_field "$work/import.$n.time" 'Maximum resident')
  # bytes the import wrote to disk ("File system outputs" counts 512-byte blocks), per subject
  wkib=$(awk -F': ' -v n="$n" '/File system outputs/ {printf "%.1f", $2 * 512 / 1024 / n}' "$work/import.$n.time")
  size=$(du -sm "$work/vault" | awk '{print $1}')
  rate=$(awk -v n="$n" -v w="$wall" 'BEGIN {printf "%.0f", n / w}')
  printf '%s %s %s %s %s %s %s\n' "$n" "$wall" "$rate" "$rss" "$prate" "$size" "$wkib" >>"$work/raw"
  bench_log "import: $n: $rate subjects/s, peak RSS $((rss / 1024)) MiB"
  rm -rf "$work/vault"
  [ "$n" = "$max" ] || rm -f "$f"
done
rm -f "$work"/*.jsonl

echo
echo "Import (custos import, default threads = $(nproc) workers; generator: $gen_rate lines/s)"
printf '%-10s %8s %11s %15s %13s %13s %10s %17s\n' subjects "wall s" "import /s" "parse-only /s" "import/parse" \
  "peak RSS MiB" "vault MiB" "disk writes KiB/s."
awk '{printf "%-10s %8.1f %11s %15s %13.3f %13.0f %10s %17s\n", $1, $2, $3, $5, $3 / $5, $4 / 1024, $6, $7}' "$work/raw"
big=$(awk -v m="$max" '$1 == m {print $3}' "$work/raw")
small=$(awk 'NR == 1 {print $4}' "$work/raw"); large=$(awk -v m="$max" '$1 == m {print $4}' "$work/raw")
flat=$(awk -v a="$small" -v b="$large" 'BEGIN {printf "%.2f", b / a}')
v1=$(awk -v r="$big" 'BEGIN {print (r >= 50000 ? "PASS" : "FAIL")}')
# "flat": peak RSS at the largest count within 1.5x of the smallest count's
v2=$(awk -v r="$flat" 'BEGIN {print (r <= 1.5 ? "PASS" : "FAIL")}')
echo "SUMMARY|3a. import throughput ($max subjects)|$big subjects/s|>= 50000/s|$v1"
echo "SUMMARY|3b. import memory flat (peak RSS $max / $(awk 'NR == 1 {print $1}' "$work/raw"))|$((large / 1024)) / $((small / 1024)) MiB = $flat|<= 1.50|$v2"
