#!/usr/bin/env bash
# http.sh - HTTP read-path benchmarks (docs/benchmarks.md, sections 1 and 2), with wrk on loopback.
#
# usage: bench/http.sh [BUILD_DIR [NOLEDGER_BUILD_DIR]]     (defaults build-bench, build-bench-noledger)
#   env BENCH_WORK      scratch directory (default BUILD_DIR/work-http; removed and recreated)
#       BENCH_DURATION  seconds per wrk run (default 8)
#       BENCH_ROUNDS    rounds at the main connection count (default 3)
#       BENCH_CONNS     connection counts to try (default "16 64 128"); the others get one round
#       BENCH_MAIN      the connection count the verdicts use (default 64)
#       BENCH_WARMUP    seconds of unrecorded reads on each server first (default 10)
#
# One vault with the 2,000 sample customers is made with BUILD_DIR's custos and copied, so both
# servers hold identical data: server L (the normal build: every read audited into the ledger,
# fdatasync'ed, group commit) and server N (built with -DCUSTOS_BENCH_NO_LEDGER=ON: the ledger
# append compiled out of the audit path).  Both run side by side; each round measures, at each
# connection count, in an order that alternates between rounds:
#   health   GET /v1/health on server L (the HTTP stack alone: the baseline for the read target)
#   read     GET /v1/subjects/{id}?purpose=account on server L (bench/read.lua, 2,000 ids)
#   read-nl  the same on server N (the baseline for the ledger-cost target)
# Ratios are computed between measurements of this run only.  Any non-2xx answer fails the run.
#
# Prints a table and SUMMARY| lines (parsed by bench/run.sh) on stdout; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

bdir=${1:-build-bench}
ndir=${2:-build-bench-noledger}
bin_l=$bdir/custos
bin_n=$ndir/custos
work=${BENCH_WORK:-$bdir/work-http}
dur=${BENCH_DURATION:-8}
rounds=${BENCH_ROUNDS:-3}
conns=${BENCH_CONNS:-16 64 128}
main=${BENCH_MAIN:-64}
[ -x "$bin_l" ] || bench_die "$bin_l not built"
[ -x "$bin_n" ] || bench_die "$bin_n not built"
command -v wrk >/dev/null || bench_die "wrk is missing: scripts/deps.sh bench"
case " $conns " in *" $main "*) ;; *) conns="$main $conns" ;; esac

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
L_pid= N_pid=
cleanup() { bench_stop "$L_pid"; bench_stop "$N_pid"; }
trap cleanup EXIT

bench_log "http: making the vault (2,000 sample customers)"
bench_vault "$bin_l" "$work/vault-l"
token=$(bench_token "$bin_l" "$work/vault-l")
cp -a "$work/vault-l" "$work/vault-n"
bench_serve "$bin_l" "$work/vault-l" L
bench_serve "$bin_n" "$work/vault-n" N
bench_ids "$L_port" "$token" "$work/ids"

# run_wrk NAME PORT CONNS: one wrk run; appends "name conns rps p50 p99 cpu_us_per_req" to $work/raw
run_wrk() {
  local name=$1 port=$2 c=$3 pid out rps p50 p99 non2xx t0 t1 n
  pid=$([ "$port" = "$L_port" ] && echo "$L_pid" || echo "$N_pid")
  t0=$(bench_cpu_ticks "$pid")
  if [ "$name" = health ]; then
    out=$(wrk -t2 -c"$c" -d"${dur}s" --latency "http://127.0.0.1:$port/v1/health")
  else
    out=$(wrk -t2 -c"$c" -d"${dur}s" --latency -s bench/read.lua "http://127.0.0.1:$port" -- "$work/ids" "$token")
  fi
  t1=$(bench_cpu_ticks "$pid")
  printf '%s\n' "$out" >>"$work/wrk.log"
  non2xx=$(printf '%s\n' "$out" | awk '/Non-2xx/ {print $NF}')
  [ -z "$non2xx" ] || bench_die "$name c=$c: $non2xx non-2xx answers (see $work/wrk.log)"
  rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec/ {print $2}')
  p50=$(printf '%s\n' "$out" | awk '$1 == "50%" {print $2}')
  p99=$(printf '%s\n' "$out" | awk '$1 == "99%" {print $2}')
  n=$(printf '%s\n' "$out" | awk '/requests in/ {print $1}')
  # server CPU (user+system, all threads) per request, in microseconds; 100 ticks a second
  printf '%s %s %s %s %s %s\n' "$name" "$c" "$rps" "$p50" "$p99" \
    "$(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", d / hz * 1e6 / n}')" \
    >>"$work/raw"
  bench_log "http: $name c=$c: $rps req/s (p50 $p50, p99 $p99)"
}

# Warm-up, not recorded: a fresh server grows a SQLite connection (and its page cache), a thread
# and its malloc arena per concurrent request; the first seconds measure that, not steady state.
maxc=$(printf '%s\n' $conns | sort -g | tail -n1)
bench_log "http: warm-up (${BENCH_WARMUP:-10} s of reads on each server at c=$maxc)"
for port in "$L_port" "$N_port"; do
  wrk -t2 -c"$maxc" -d"${BENCH_WARMUP:-10}s" -s bench/read.lua "http://127.0.0.1:$port" -- "$work/ids" "$token" \
    >>"$work/wrk.log"
done

: >"$work/raw"
for r in $(seq "$rounds"); do
  for c in $conns; do
    [ "$r" -eq 1 ] || [ "$c" = "$main" ] || continue
    if [ $((r % 2)) -eq 1 ]; then
      run_wrk health "$L_port" "$c"; run_wrk read "$L_port" "$c"; run_wrk read-nl "$N_port" "$c"
    else
      run_wrk read-nl "$N_port" "$c"; run_wrk read "$L_port" "$c"; run_wrk health "$L_port" "$c"
    fi
  done
done

# best of the rounds per (name, conns)
best() { awk -v n="$1" -v c="$2" '$1 == n && $2 == c && $3 > b {b = $3} END {printf "%.0f", b}' "$work/raw"; }
field_of_best() { # NAME CONNS FIELD: a column of the best run
  awk -v n="$1" -v c="$2" -v f="$3" '$1 == n && $2 == c && $3 > b {b = $3; v = $f} END {print v}' "$work/raw"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

echo
echo "HTTP read path (wrk -t2, ${dur} s a run, best of $rounds rounds at c=$main, 1 round otherwise)"
printf '%-6s %10s %10s %10s %12s %12s %22s %22s\n' conns health/s read/s read-nl/s read/health read/read-nl \
  "p50 / p99 read" "server CPU us/req h r nl"
for c in $conns; do
  h=$(best health "$c"); rd=$(best read "$c"); nl=$(best read-nl "$c")
  printf '%-6s %10s %10s %10s %12s %12s %22s %22s\n' "$c" "$h" "$rd" "$nl" "$(ratio "$rd" "$h")" "$(ratio "$rd" "$nl")" \
    "$(field_of_best read "$c" 4) / $(field_of_best read "$c" 5)" \
    "$(field_of_best health "$c" 6) $(field_of_best read "$c" 6) $(field_of_best read-nl "$c" 6)"
done
echo "per-round ratios at c=$main (read/health, read/read-nl):"
awk -v c="$main" '$2 == c {v[$1] = v[$1] " " $3} END {
  split(v["health"], h); split(v["read"], r); split(v["read-nl"], n);
  for (i = 1; i in r; i++) printf "  round %d: %.2f  %.2f\n", i, r[i] / h[i], r[i] / n[i] }' "$work/raw"

h=$(best health "$main"); rd=$(best read "$main"); nl=$(best read-nl "$main")
r1=$(ratio "$rd" "$h"); r2=$(ratio "$rd" "$nl")
v1=$(awk -v r="$r1" 'BEGIN {print (r >= 0.50 ? "PASS" : "FAIL")}')
v2=$(awk -v r="$r2" 'BEGIN {print (r >= 0.80 ? "PASS" : "FAIL")}')
echo "SUMMARY|1. HTTP read vs health (c=$main)|$rd / $h req/s = $r1|>= 0.50|$v1"
echo "SUMMARY|2. ledger cost: read vs no-ledger read (c=$main)|$rd / $nl req/s = $r2|>= 0.80|$v2"
