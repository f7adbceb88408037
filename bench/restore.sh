#!/usr/bin/env bash
# restore.sh - how long a restore takes (docs/benchmarks.md, "Notes"); no target, a report.
#
# usage: bench/restore.sh [BUILD_DIR]                        (default build-bench)
#   env BENCH_WORK            scratch directory (default BUILD_DIR/work-restore; removed and recreated)
#       BENCH_RESTORE_COUNTS  subject counts (default "200000 1000000")
#
# For each count, into a fresh vault on the same disk:
#   baseline  custos import of the count's first lines of bench_gen_customers' file (seed 1),
#             timed: the same subjects written the other way, in the same minutes
#   backup    custos backup --out FILE (its size is reported)
#   restore   custos restore --in FILE into the same vault, under /usr/bin/time -v: the data
#             plane replaced, every erasure re-applied, the blind index rebuilt from the records
# restore/import compares the two ways of writing the same subjects; µs a subject shows how the
# restore grows with the count.  The vault and the backup are removed afterwards.
#
# Prints a table on stdout (bench/run.sh keeps it in its log); progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

bdir=${1:-build-bench}
bin=$bdir/custos
gen=$bdir/bench/bench_gen_customers
work=${BENCH_WORK:-$bdir/work-restore}
counts=${BENCH_RESTORE_COUNTS:-200000 1000000}
for x in "$bin" "$gen"; do [ -x "$x" ] || bench_die "$x not built"; done
[ -x /usr/bin/time ] || bench_die "/usr/bin/time is missing (Debian package 'time')"

rm -rf "$work"
mkdir -p "$work"
max=$(printf '%s\n' $counts | sort -g | tail -n1)
bench_log "restore: generating $max customers"
"$gen" "$max" 1 >"$work/all.jsonl"

: >"$work/raw"
for n in $counts; do
  f="$work/c$n.jsonl"
  head -n "$n" "$work/all.jsonl" >"$f"
  rm -rf "$work/vault" "$work/vault.bak"
  "$bin" init --data "$work/vault" --origin bench.custos.example/ledger >/dev/null
  bench_log "restore: $n: import (the baseline)"
  /usr/bin/time -v "$bin" import --data "$work/vault" "$f" >"$work/import.$n.out" 2>"$work/import.$n.time" ||
    bench_die "custos import of $n subjects failed (see $work/import.$n.out)"
  rm -f "$f"
  bench_log "restore: $n: backup"
  "$bin" backup --data "$work/vault" --out "$work/vault.bak" >"$work/backup.$n.out" 2>&1 ||
    bench_die "custos backup failed (see $work/backup.$n.out)"
  bench_log "restore: $n: restore"
  /usr/bin/time -v "$bin" restore --data "$work/vault" --in "$work/vault.bak" >"$work/restore.$n.out" \
    2>"$work/restore.$n.time" || bench_die "custos restore failed (see $work/restore.$n.out and .time)"
  iw=$(bench_time_wall "$work/import.$n.time")
  rw=$(bench_time_wall "$work/restore.$n.time")
  printf '%s %s %s %s %s %s %s\n' "$n" "$iw" "$rw" "$(bench_time_field "$work/restore.$n.time" 'User time')" \
    "$(bench_time_field "$work/restore.$n.time" 'System time')" "$(bench_time_field "$work/restore.$n.time" 'Maximum resident')" \
    "$(stat -c %s "$work/vault.bak")" >>"$work/raw"
  bench_log "restore: $n: $rw s (import $iw s)"
  rm -rf "$work/vault" "$work/vault.bak"
done
rm -f "$work/all.jsonl"

echo
echo "Restore (custos backup, then custos restore into the same vault; baseline: custos import of the same subjects)"
printf '%-10s %9s %10s %14s %14s %8s %8s %13s %12s\n' subjects "import s" "restore s" "restore/import" \
  "µs a subject" "user s" "sys s" "peak RSS MiB" "backup MiB"
awk '{printf "%-10s %9.1f %10.1f %14.2f %14.1f %8.1f %8.1f %13.0f %12.0f\n", $1, $2, $3, $3 / $2, $3 * 1e6 / $1, $4, $5, $6 / 1024, $7 / 1048576}' "$work/raw"
