#!/usr/bin/env bash
# serverstat.sh - what one HTTP request costs the server: CPU time, context switches, page faults
# and the syscalls that matter, per request, counted with perf over every server thread
# (including the thread-per-connection threads created during the run).  A diagnostic for the
# HTTP benchmarks (docs/benchmarks.md): independent of how busy the rest of the machine is.
#
# usage: bench/serverstat.sh [BUILD_DIR [read|health [CONNS [SECONDS]]]]
#        (defaults build-bench, read, 64, 5; needs perf and root or perf_event_paranoid <= -1)
#   env BENCH_WORK  scratch directory (default BUILD_DIR/work-serverstat; removed and recreated)
#
# The server runs under `perf stat` with counting disabled; after a 10 s warm-up of the same
# load, counting is enabled for exactly one wrk run, and the totals are divided by the requests
# wrk completed.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

bdir=${1:-build-bench}
kind=${2:-read}
c=${3:-64}
secs=${4:-5}
bin=$bdir/custos
work=${BENCH_WORK:-$bdir/work-serverstat}
[ -x "$bin" ] || bench_die "$bin not built"
command -v perf >/dev/null || bench_die "perf is missing"

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
bench_vault "$bin" "$work/vault"
token=$(bench_token "$bin" "$work/vault")

events=task-clock,context-switches,page-faults
for s in futex fcntl newfstatat pread64 pwrite64 fdatasync mprotect getrandom epoll_wait epoll_ctl read write recvfrom sendmsg sendto; do
  [ -d /sys/kernel/tracing/events/syscalls/sys_enter_$s ] || [ -d /sys/kernel/debug/tracing/events/syscalls/sys_enter_$s ] &&
    events="$events,syscalls:sys_enter_$s"
done
mkfifo "$work/ctl" "$work/ack"
exec {ctl}<>"$work/ctl" {ack}<>"$work/ack"
perf stat -D -1 -x, -e "$events" --control "fd:$ctl,$ack" -o "$work/perf.csv" -- \
  "$bin" serve --data "$work/vault" --listen 127.0.0.1:0 --port-file "$work/port" 2>"$work/serve.log" &
pp=$!
trap 'kill -TERM $(pgrep -P $pp) 2>/dev/null || true; wait $pp 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
port=$(cat "$work/port")
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break; sleep 0.05; done
bench_ids "$port" "$token" "$work/ids"

load() {
  if [ "$kind" = health ]; then wrk -t2 -c"$c" -d"$1s" "http://127.0.0.1:$port/v1/health"
  else wrk -t2 -c"$c" -d"$1s" -s bench/read.lua "http://127.0.0.1:$port" -- "$work/ids" "$token"; fi
}
load 10 >/dev/null
echo enable >&$ctl; read -r -u $ack _
out=$(load "$secs")
echo disable >&$ctl; read -r -u $ack _
n=$(printf '%s\n' "$out" | awk '/requests in/ {print $1}')
rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec/ {print $2}')
kill -TERM "$(pgrep -P $pp)"
wait $pp 2>/dev/null || true
trap - EXIT

echo "$bdir, $kind, c=$c: $n requests in ${secs} s ($rps/s); per request:"
awk -F, -v n="$n" '$1 ~ /^[0-9.]+$/ {
  name = $3; v = $1 / n
  if (name == "task-clock") printf "  %-34s %10.1f us\n", "server CPU (task-clock)", v * 1000
  else printf "  %-34s %10.2f\n", name, v }' "$work/perf.csv"
