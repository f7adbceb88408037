# lib.sh - shell helpers shared by the benchmark scripts (sourced, not run).
#
# Servers are started on 127.0.0.1 with port 0 (a free port, read back from
# --port-file) and stopped by their own pid with SIGTERM.  Nothing here
# kills a process it did not start.

# bench_log MSG...: progress on stderr (stdout is for results)
bench_log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# bench_die MSG...
bench_die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# bench_vault BIN DIR: a new vault in DIR with the 2,000 sample customers and the service
# principal "bench"; prints nothing.  DIR must not exist.
bench_vault() {
  local bin=$1 dir=$2
  "$bin" init --data "$dir" --origin bench.custos.example/ledger >/dev/null
  "$bin" import --data "$dir" data/customers-2k.jsonl >/dev/null
  "$bin" principal add --data "$dir" --id bench --kind service --roles service >/dev/null
}

# bench_token BIN DIR: a fresh service token for "bench" (the server must be stopped)
bench_token() { "$1" token issue --data "$2" --principal bench | tail -n1; }

# bench_serve BIN DIR VAR: start a server on a free port; sets ${VAR}_pid and ${VAR}_port.
bench_serve() {
  local bin=$1 dir=$2 var=$3 pf="$2.port" pid port i
  rm -f "$pf"
  # shellcheck disable=SC2086 # BENCH_SERVE_ARGS: extra serve options, split on spaces
  "$bin" serve --data "$dir" --listen 127.0.0.1:0 --port-file "$pf" ${BENCH_SERVE_ARGS:-} 2>>"$dir.log" &
  pid=$!
  for i in $(seq 100); do
    [ -s "$pf" ] && break
    kill -0 "$pid" 2>/dev/null || bench_die "server for $dir did not start (see $dir.log)"
    sleep 0.05
  done
  port=$(cat "$pf")
  for i in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break
    sleep 0.05
  done
  printf -v "${var}_pid" '%s' "$pid"
  printf -v "${var}_port" '%s' "$port"
}

# bench_stop PID: SIGTERM and wait (the server signs a final checkpoint)
bench_stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# bench_ids PORT TOKEN OUT: the ids of the 2,000 sample customers, found by email search
# (one keep-alive curl, 32 requests in flight), one hex id a line in OUT.
bench_ids() {
  local port=$1 tok=$2 out=$3 cfg="$3.curl"
  sed 's/.*"email":"\([^"]*\)".*/url = "http:\/\/127.0.0.1:'"$port"'\/v1\/subjects?email=\1\&purpose=account"/' \
    data/customers-2k.jsonl >"$cfg"
  curl -sS --no-progress-meter -Z --parallel-max 32 -H "Authorization: Bearer $tok" -K "$cfg" -w '\n' |
    grep -o '"ids":\["[0-9a-f]*' | cut -d'"' -f4 | sort -u >"$out"
  rm -f "$cfg"
  [ "$(wc -l <"$out")" -eq 2000 ] || bench_die "expected 2000 subject ids, found $(wc -l <"$out")"
}

# bench_cpu_ticks PID: user+system clock ticks used so far by a process (all threads)
bench_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# bench_time_wall FILE: SECONDS from /usr/bin/time -v's output in FILE ("Elapsed (wall clock)
# time (h:mm:ss or m:ss): M:SS.ss")
bench_time_wall() {
  awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; print s}' "$1"
}

# bench_time_field FILE KEY: the value of /usr/bin/time -v's line whose name matches KEY
# (e.g. "Maximum resident" in KiB, "User time" in seconds)
bench_time_field() { awk -F': ' -v k="$2" '$1 ~ k {print $2}' "$1"; }

# bench_median N1 N2 ...: the median of the numbers (middle one; mean of the two middles)
bench_median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# bench_max N1 N2 ...
bench_max() { printf '%s\n' "$@" | sort -g | tail -n1; }

# bench_machine: one line describing the machine
bench_machine() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  printf '%s, %s cores, %s GiB RAM, %s, kernel %s' "${cpu:-unknown cpu}" "$(nproc)" \
    "$(awk '/^MemTotal/ {printf "%d", $2/1048576 + 0.5}' /proc/meminfo)" \
    "$(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-linux}")" "$(uname -r)"
}
