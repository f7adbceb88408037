# lib.sh - helpers for the shell scenario tests in tests/sh (sourced, not run).
#
# Environment (set by ctest, tests/CMakeLists.txt): CUSTOS = the built binary, CUSTOS_SRC = the
# repository root.  Each test gets its own directory under ${TMPDIR:-/tmp}, removed at exit
# (kept when KEEP_TMP=1, for debugging).  Servers listen on 127.0.0.1 port 0 and report the
# port through --port-file; every server a test starts is stopped at exit, by its own pid only.
#
# Tools: bash, coreutils, curl, perl (core modules only: JSON::PP, Digest::SHA, MIME::Base64),
# all present wherever custos builds (perl comes with build-essential); test_cli_badinput also
# reads the databases with sqlite3, and test_interop runs its independent verifier with python3
# (standard library only) and openssl (scripts/deps.sh test installs all three).

set -euo pipefail

: "${CUSTOS:?set CUSTOS to the custos binary}"
: "${CUSTOS_SRC:?set CUSTOS_SRC to the repository root}"
[ -x "$CUSTOS" ] || { echo "FAIL: $CUSTOS is not an executable" >&2; exit 1; }
command -v curl >/dev/null || { echo "FAIL: curl is needed" >&2; exit 1; }
command -v perl >/dev/null || { echo "FAIL: perl is needed" >&2; exit 1; }

TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "${TMPDIR:-/tmp}/custos-$TEST_NAME-XXXXXX")
SERVER_PIDS=()
HELPER_PIDS=()

cleanup() {
  local rc=$? p
  for p in "${HELPER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${SERVER_PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "($TEST_NAME: exit $rc; files kept in $T)" >&2
  else
    rm -rf "$T"
  fi
}
trap cleanup EXIT

# fail MSG...: stop the test with a clear message
fail() { printf 'FAIL: %s: %s\n' "$TEST_NAME" "$*" >&2; exit 1; }
# soft CMD...: run a check in a subshell; if it fails, note it and go on (for checks that expose a
# known bug, so the rest of the scenario still runs); finish fails the test if any soft check failed
DEFERRED=()
soft() {
  if ! ( "$@" ); then DEFERRED+=("$*"); fi
}
finish() {
  local d
  if [ "${#DEFERRED[@]}" -gt 0 ]; then
    for d in "${DEFERRED[@]}"; do printf 'FAILED CHECK: %s\n' "$d" >&2; done
    fail "${#DEFERRED[@]} check(s) failed (see above)"
  fi
  step "ok"
}

# step MSG...: progress
step() { printf -- '--- %s %s\n' "$(date +%T)" "$*" >&2; }

# ---- the vault ---------------------------------------------------------------------------------

# init_vault DIR [init options...]: a new vault; sets ADMIN_TOKEN (the last line of init's output)
init_vault() {
  local dir=$1 out
  shift
  out=$("$CUSTOS" init --data "$dir" "$@") || fail "custos init --data $dir failed"
  ADMIN_TOKEN=$(printf '%s\n' "$out" | tail -n1)
  [[ "$ADMIN_TOKEN" =~ ^cus_[A-Za-z0-9_-]{43}$ ]] || fail "init's last line is not a token: '$ADMIN_TOKEN'"
}

# add_principal_token DIR ID KIND ROLES: a new principal (server stopped); prints a fresh token for it
add_principal_token() {
  local dir=$1 id=$2 kind=$3 roles=$4
  "$CUSTOS" principal add --data "$dir" --id "$id" --kind "$kind" --roles "$roles" >/dev/null ||
    fail "principal add $id failed"
  "$CUSTOS" token issue --data "$dir" --principal "$id" | tail -n1
}

# ---- servers -----------------------------------------------------------------------------------

# How long a starting server may take to write its port and to answer /v1/health, in seconds of
# wall time (not loop turns: under load each turn of a polling loop takes longer, and a vault's
# open, which fsyncs after a crash, can take seconds when the disk is busy).  Only a server that
# never comes up waits this long; a server that exits at start fails at once.
SERVER_START_S=${SERVER_START_S:-60}

# wait_port PORTFILE PID WHAT: wait until the server PID has written its port (a whole line) to
# PORTFILE; sets PORT.  Fails when it exits first or SERVER_START_S pass.
wait_port() {
  local pf=$1 pid=$2 what=$3 log=${SERVER_LOG:-/dev/null} end=$((SECONDS + SERVER_START_S))
  until [ -s "$pf" ] && [ "$(tail -c1 "$pf" | od -An -c | tr -d ' ')" = '\n' ]; do
    kill -0 "$pid" 2>/dev/null || fail "$what exited at start: $(tail -n3 "$log")"
    [ "$SECONDS" -lt "$end" ] || fail "$what wrote no port in ${SERVER_START_S}s: $(tail -n3 "$log")"
    sleep 0.05
  done
  PORT=$(tr -dc 0-9 <"$pf")
  [ -n "$PORT" ] || fail "$what wrote no port"
}

# wait_health URL WHAT: wait until URL/v1/health answers 200, at most SERVER_START_S
wait_health() {
  local url=$1 what=$2 end=$((SECONDS + SERVER_START_S))
  until curl -fsS -m 10 -o /dev/null "$url/v1/health" 2>/dev/null; do
    [ "$SECONDS" -lt "$end" ] || fail "$what does not answer /v1/health in ${SERVER_START_S}s"
    sleep 0.05
  done
}

# start_server DIR [serve options...]: start custos serve on 127.0.0.1:0; sets SERVER_PID, PORT,
# URL; its stderr goes to $T/server.<n>.log (SERVER_LOG)
start_server() {
  local dir=$1 pf
  shift
  pf="$T/port.$$.${#SERVER_PIDS[@]}"
  SERVER_LOG="$T/server.${#SERVER_PIDS[@]}.log"
  rm -f "$pf"
  "$CUSTOS" serve --data "$dir" --listen 127.0.0.1:0 --port-file "$pf" "$@" 2>"$SERVER_LOG" &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  wait_port "$pf" "$SERVER_PID" "server on $dir"
  URL="http://127.0.0.1:$PORT"
  wait_health "$URL" "server on $dir"
}

# stop_server [PID]: SIGTERM, wait; the server must exit 0
stop_server() {
  local pid=${1:-$SERVER_PID} rc=0
  kill -TERM "$pid" 2>/dev/null || fail "server $pid is not running"
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "server $pid exited $rc on SIGTERM (log: $(tail -n3 "$SERVER_LOG"))"
}

# crash_server [PID]: SIGKILL, wait
crash_server() {
  local pid=${1:-$SERVER_PID}
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# ---- HTTP --------------------------------------------------------------------------------------

# http METHOD PATH [BODY] [TOKEN]: one request to $URL; sets STATUS, response body in $T/resp
# (and RESP).  TOKEN defaults to $TOKEN when set.
http() {
  local m=$1 p=$2 body=${3-} tok=${4-${TOKEN-}}
  local args=(-sS -o "$T/resp" -w '%{http_code}' -X "$m")
  [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  STATUS=$(curl "${args[@]}" "$URL$p" 2>/dev/null) || STATUS=000
  RESP=$(cat "$T/resp" 2>/dev/null || true)
}

# expect_status WANT WHAT: the last http call answered WANT
expect_status() {
  [ "$STATUS" = "$1" ] || fail "$2: HTTP $STATUS, want $1 (body: ${RESP:0:300})"
}

# jget PATH [FILE]: a value from JSON (FILE or stdin); PATH like fields.name or ids.0 or error.code
jget() {
  perl -MJSON::PP -e '
    local $/; my $d = eval { JSON::PP->new->utf8->allow_nonref->decode(<STDIN>) };
    exit 1 unless defined $d;
    for my $k (split /\./, $ARGV[0]) {
      if (ref $d eq "ARRAY") { $d = $d->[$k] } elsif (ref $d eq "HASH") { $d = $d->{$k} } else { $d = undef }
      exit 1 unless defined $d;
    }
    binmode STDOUT, ":utf8";
    print ref $d ? JSON::PP->new->canonical->encode($d) : $d;
  ' "$1" <"${2:-/dev/stdin}"
}

# ---- the ledger --------------------------------------------------------------------------------

# ledger_size DIR: number of entries, from `custos ledger verify` (server stopped)
ledger_size() {
  { "$CUSTOS" ledger verify --data "$1" 2>/dev/null || true; } | sed -n 's/^ledger intact: \([0-9]*\) entries.*/\1/p'
}
