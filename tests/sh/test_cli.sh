#!/usr/bin/env bash
# test_cli.sh - the custos command line (docs/cli.md): --help on every subcommand, usage errors
# (exit 2, one line on stderr), init (no overwrite, modes, the token alone on the last line),
# serve (loopback-only without TLS, clean SIGTERM, one server per vault), import (rejected lines
# by number, exit 1), principal add/disable, token issue/revoke, stdout through a pipe and a write
# error on it, keys rotate.
. "$(dirname "$0")/lib.sh"

D="$T/data"
DATA="$CUSTOS_SRC/data/customers-2k.jsonl"

# run NAME CMD...: run a command, keep its exit code in RC, stdout in $T/out, stderr in $T/err
run() {
  RC=0
  "$@" >"$T/out" 2>"$T/err" || RC=$?
}

# usage_error WHAT ARGS...: exit 2, nothing on stdout, exactly one line on stderr starting "custos: "
usage_error() {
  local what=$1 lines
  shift
  run "$CUSTOS" "$@"
  [ "$RC" -eq 2 ] || fail "$what (custos $*): exit $RC, want 2"
  [ ! -s "$T/out" ] || fail "$what (custos $*): wrote to stdout: $(head -c 200 "$T/out")"
  lines=$(wc -l <"$T/err")
  [ "$lines" -eq 1 ] || fail "$what (custos $*): $lines lines on stderr, want one: $(tr '\n' '|' <"$T/err")"
  grep -q '^custos: ' "$T/err" || fail "$what (custos $*): stderr is not 'custos: ...': $(cat "$T/err")"
}

step "--help everywhere"
run "$CUSTOS" --help
[ "$RC" -eq 0 ] || fail "custos --help exit $RC"
mapfile -t cmds < <(sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p' "$T/out")
[ "${#cmds[@]}" -ge 7 ] || fail "custos --help lists ${#cmds[@]} commands"
for want in init serve import principal token keys ledger; do
  printf '%s\n' "${cmds[@]}" | grep -x "$want" >/dev/null || fail "custos --help does not list '$want'"
done
for c in "${cmds[@]}"; do
  run "$CUSTOS" "$c" --help
  [ "$RC" -eq 0 ] || fail "custos $c --help: exit $RC ($(cat "$T/err"))"
  grep -q '^usage: custos '"$c" "$T/out" || fail "custos $c --help: no usage line on stdout"
  [ ! -s "$T/err" ] || fail "custos $c --help wrote to stderr"
done
for sub in "principal add" "principal disable" "token issue" "token revoke" "keys rotate" "ledger verify" \
  "ledger export" "ledger key" "ledger witness"; do
  # shellcheck disable=SC2086
  run "$CUSTOS" $sub --help
  [ "$RC" -eq 0 ] || fail "custos $sub --help: exit $RC"
  grep -q '^usage: ' "$T/out" || fail "custos $sub --help: no usage on stdout"
done

step "usage errors: exit 2, one line on stderr"
usage_error "unknown command" frobnicate
usage_error "init without --data" init
usage_error "init with an extra argument" init --data "$T/x" extra
usage_error "serve without --data" serve
usage_error "import without a file" import --data "$T/x"
usage_error "import with two files" import --data "$T/x" a b
usage_error "import --threads out of range" import --data "$T/x" --threads 99 f
usage_error "principal with an unknown action" principal frob
usage_error "principal add without --id" principal add --data "$T/x"
usage_error "token revoke without a token" token revoke --data "$T/x"
usage_error "token issue without --principal" token issue --data "$T/x"
usage_error "keys with an unknown action" keys spin
usage_error "ledger verify without --data" ledger verify
usage_error "ledger with an unknown action" ledger frob --data "$T/x"
usage_error "ledger witness without --vkey" ledger witness --url http://127.0.0.1:1 --state "$T/s"
usage_error "ledger witness with a bad vkey" ledger witness --url http://127.0.0.1:1 --vkey nonsense --state "$T/s"
# bad options: one line too (regression: getopt_long printed a line of its own before custos's,
# "init: unrecognized option '--bogus'"; fixed in a4bf443)
soft usage_error "init with an unknown option" init --bogus
soft usage_error "serve with an option missing its argument" serve --data
soft usage_error "ledger verify with an unknown option" ledger verify --data "$T/x" --frob
soft usage_error "import with an unknown short option" import -q --data "$T/x" f
# a command alone prints its usage on stderr and exits 2
for c in principal token keys ledger; do
  run "$CUSTOS" "$c"
  [ "$RC" -eq 2 ] || fail "custos $c alone: exit $RC, want 2"
  grep -q '^usage: ' "$T/err" || fail "custos $c alone: no usage on stderr"
done
run "$CUSTOS"
[ "$RC" -eq 2 ] || fail "custos alone: exit $RC, want 2"
# nothing was created by all of the above
[ ! -e "$T/x" ] || fail "a usage error created $T/x"

step "init"
run "$CUSTOS" init --data "$D"
[ "$RC" -eq 0 ] || fail "init: exit $RC: $(cat "$T/err")"
ADMIN_TOKEN=$(tail -n1 "$T/out")
[[ "$ADMIN_TOKEN" =~ ^cus_[A-Za-z0-9_-]{43}$ ]] || fail "init's last line is not the token alone: '$ADMIN_TOKEN'"
[ "$(grep -c "$ADMIN_TOKEN" "$T/out")" -eq 1 ] || fail "the token appears more than once"
[ "$(stat -c %a "$D")" = 700 ] || fail "data dir mode $(stat -c %a "$D"), want 700"
[ "$(stat -c %a "$D/keys")" = 700 ] || fail "keys dir mode $(stat -c %a "$D/keys"), want 700"
nkeys=0
for k in "$D"/keys/*; do
  [ "$(stat -c %a "$k")" = 600 ] || fail "key file $k mode $(stat -c %a "$k"), want 600"
  nkeys=$((nkeys + 1))
done
[ "$nkeys" -ge 2 ] || fail "expected a master key and a ledger key, found $nkeys files"
[ -f "$D/keys/master-1.key" ] || fail "no keys/master-1.key"
# no file in the data directory is readable by others
others=$(find "$D" -perm /077 -print)
[ -z "$others" ] || fail "group/other access on: $others"
# init refuses an existing vault and leaves it alone
sum=$(sha256sum "$D/keys/master-1.key" "$D/vault.json")
run "$CUSTOS" init --data "$D"
[ "$RC" -ne 0 ] || fail "init over an existing vault succeeded"
[ "$RC" -ne 2 ] || fail "init over an existing vault is not a usage error (exit 2)"
grep -q . "$T/err" || fail "init over an existing vault: no message"
[ "$(sha256sum "$D/keys/master-1.key" "$D/vault.json")" = "$sum" ] || fail "init over a vault changed it"
# and a non-empty directory that is not a vault
mkdir "$T/notempty" && echo keep >"$T/notempty/file"
run "$CUSTOS" init --data "$T/notempty"
[ "$RC" -ne 0 ] || fail "init into a non-empty directory succeeded"
[ "$(cat "$T/notempty/file")" = keep ] || fail "init touched a file in a non-empty directory"

step "serve: loopback only without TLS"
run timeout 20 "$CUSTOS" serve --data "$D" --listen 0.0.0.0:0
[ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] || fail "serve on 0.0.0.0 without TLS: exit $RC (must refuse at once)"
grep -qi 'tls\|insecure' "$T/err" || fail "serve on 0.0.0.0: the message does not say why: $(cat "$T/err")"
run timeout 20 "$CUSTOS" serve --data "$D" --listen '[::]:0'
[ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] || fail "serve on [::] without TLS: exit $RC"
run timeout 20 "$CUSTOS" serve --data "$D" --listen 127.0.0.1:99999
[ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] || fail "serve on port 99999: exit $RC"
# with --insecure it serves (reachable on loopback, since 0.0.0.0 includes it)
pf="$T/port.insecure"
"$CUSTOS" serve --data "$D" --listen 0.0.0.0:0 --insecure --port-file "$pf" 2>"$T/insecure.log" &
SERVER_PID=$!
SERVER_PIDS+=("$SERVER_PID")
SERVER_LOG="$T/insecure.log"
wait_port "$pf" "$SERVER_PID" "serve --insecure on 0.0.0.0"
URL="http://127.0.0.1:$PORT"
wait_health "$URL" "serve --insecure on 0.0.0.0"
http GET /v1/health "" ""
expect_status 200 "health on the --insecure server"
stop_server

step "serve: TLS 1.2+ with AEAD ciphers only; a private key others can read is refused"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$T/tls.key" -out "$T/tls.crt" >/dev/null 2>&1 || fail "openssl could not make a test certificate"
chmod 644 "$T/tls.key"
run timeout 20 "$CUSTOS" serve --data "$D" --listen 127.0.0.1:0 --tls-cert "$T/tls.crt" --tls-key "$T/tls.key"
[ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] || fail "serve with a world-readable TLS key: exit $RC (must refuse at once)"
grep -q 'others may read it (mode 0644)' "$T/err" || fail "world-readable key: the message does not say why: $(cat "$T/err")"
chmod 600 "$T/tls.key"
pf="$T/port.tls"
"$CUSTOS" serve --data "$D" --listen 127.0.0.1:0 --tls-cert "$T/tls.crt" --tls-key "$T/tls.key" \
  --port-file "$pf" 2>"$T/tls.log" &
SERVER_PID=$!
SERVER_PIDS+=("$SERVER_PID")
SERVER_LOG="$T/tls.log"
for i in $(seq 200); do [ -s "$pf" ] && break; kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$SERVER_PID" 2>/dev/null || fail "serve with TLS did not start: $(cat "$T/tls.log")"
tls_port=$(tr -dc 0-9 <"$pf")
# handshake ARGS...: the protocol and cipher negotiated, or "refused"; @SECLEVEL=0 so that the
# client would offer the old protocols and ciphers: a refusal is then the server's
handshake() {
  local out
  out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$tls_port" "$@" 2>&1 </dev/null) || true
  printf '%s\n' "$out" | sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is \(.*\)$/\1 \2/p' | grep . || echo refused
}
for i in $(seq 100); do curl -fsS -k -o /dev/null "https://127.0.0.1:$tls_port/v1/health" 2>/dev/null && break; sleep 0.05; done
h=$(handshake -tls1_3); case $h in TLSv1.3*) ;; *) fail "TLS 1.3 handshake: $h" ;; esac
h=$(handshake -tls1_2 -cipher 'ECDHE-ECDSA-AES128-GCM-SHA256'); [ "$h" = "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256" ] ||
  fail "TLS 1.2 with an AEAD cipher: $h"
h=$(handshake -tls1_2 -cipher 'ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0'); [ "$h" = refused ] || fail "TLS 1.2 with a CBC cipher was accepted: $h"
# a TLS 1.2 client that offers only SHA-1 handshake signatures (RFC 9155: must not be used)
h=$(handshake -tls1_2 -sigalgs 'ECDSA+SHA1' -cipher 'ECDHE-ECDSA-AES128-GCM-SHA256:@SECLEVEL=0')
[ "$h" = refused ] || fail "TLS 1.2 with a SHA-1 handshake signature was accepted: $h"
h=$(handshake -tls1_1 -cipher 'ALL:@SECLEVEL=0'); [ "$h" = refused ] || fail "TLS 1.1 was accepted: $h"
h=$(handshake -tls1 -cipher 'ALL:@SECLEVEL=0'); [ "$h" = refused ] || fail "TLS 1.0 was accepted: $h"
stop_server

step "serve: SIGTERM stops it cleanly; one server per vault"
start_server "$D"
http GET /v1/health "" ""
expect_status 200 "health"
[ "$(jget status "$T/resp")" = ok ] || fail "health body: $RESP"
run timeout 20 "$CUSTOS" serve --data "$D" --listen 127.0.0.1:0
[ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] || fail "a second serve on a running vault: exit $RC"
grep -qi 'in use\|lock' "$T/err" || fail "second serve: the message does not say the vault is in use: $(cat "$T/err")"
# operator commands refuse a vault in use too
run "$CUSTOS" keys rotate --data "$D"
[ "$RC" -ne 0 ] || fail "keys rotate on a running vault succeeded"
grep -q 'POST /v1/keys/rotate' "$T/err" || fail "keys rotate on a running vault: no word of the online way: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "keys rotate on a running vault: not one line: $(cat "$T/err")"
run "$CUSTOS" import --data "$D" "$DATA"
[ "$RC" -ne 0 ] || fail "import on a running vault succeeded"
# the init token works
http POST /v1/principals '{"id":"svc","kind":"service","roles":["service"]}' "$ADMIN_TOKEN"
expect_status 201 "create a principal with the init token"
stop_server
grep -q 'stopped' "$SERVER_LOG" || fail "no 'stopped' line in the server log"
# stopped means the lock is released
start_server "$D"
stop_server

step "import: rejected lines by number, exit 1"
{
  sed -n 1,3p "$DATA"
  echo '{"name":"가다연","email":"SECRET-not-an-email"}'
  sed -n 4p "$DATA"
  echo 'this is not json SECRET'
  echo '{"name":"x","nick":"SECRET"}'
  sed -n 5,6p "$DATA"
} >"$T/mixed.jsonl"
run "$CUSTOS" import --data "$D" "$T/mixed.jsonl"
[ "$RC" -eq 1 ] || fail "import with rejected lines: exit $RC, want 1"
for n in 4 6 7; do
  grep -q "line $n rejected" "$T/err" || fail "import does not report line $n: $(cat "$T/err")"
done
[ "$(grep -c 'rejected:' "$T/err")" -eq 3 ] || fail "import reports $(grep -c 'rejected:' "$T/err") rejected lines, want 3"
grep -q SECRET "$T/err" "$T/out" && fail "import quotes rejected content"
grep -q 'imported 6 subjects' "$T/out" || fail "import summary: $(cat "$T/out")"
run "$CUSTOS" import --data "$D" "$DATA"
[ "$RC" -eq 0 ] || fail "clean import: exit $RC: $(tail -n2 "$T/err")"
grep -q 'imported 2000 subjects' "$T/out" || fail "clean import: $(cat "$T/out")"
run "$CUSTOS" import --data "$D" "$T/does-not-exist.jsonl"
[ "$RC" -eq 1 ] || fail "import of a missing file: exit $RC, want 1"

step "principal add / disable, token issue / revoke"
run "$CUSTOS" principal add --data "$D" --id shop --kind service --roles service
[ "$RC" -eq 0 ] || fail "principal add: exit $RC: $(cat "$T/err")"
SECRET=$(tail -n1 "$T/out")
[[ "$SECRET" =~ ^cps_[A-Za-z0-9_-]{43}$ ]] || fail "principal add's last line is not the secret: '$SECRET'"
run "$CUSTOS" principal add --data "$D" --id shop --kind service --roles service
[ "$RC" -eq 1 ] || fail "principal add of an existing id: exit $RC, want 1"
run "$CUSTOS" principal add --data "$D" --id other --kind service --roles nosuchrole
[ "$RC" -eq 1 ] || fail "principal add with an unknown role: exit $RC, want 1"
run "$CUSTOS" token issue --data "$D" --principal shop
[ "$RC" -eq 0 ] || fail "token issue: exit $RC"
T1=$(tail -n1 "$T/out")
[[ "$T1" =~ ^cus_[A-Za-z0-9_-]{43}$ ]] || fail "token issue's last line is not a token: '$T1'"
run "$CUSTOS" token issue --data "$D" --principal shop
T2=$(tail -n1 "$T/out")
run "$CUSTOS" token issue --data "$D" --principal nobody
[ "$RC" -eq 1 ] || fail "token issue for nobody: exit $RC, want 1"
start_server "$D"
http POST /v1/auth/token "{\"principal\":\"shop\",\"secret\":\"$SECRET\"}" ""
expect_status 200 "token for the new principal's secret"
T3=$(jget token "$T/resp")
for t in "$T1" "$T2" "$T3"; do
  http GET "/v1/subjects?email=christiana.dietrich688@naver.com&purpose=account" "" "$t"
  expect_status 200 "search with a fresh token"
  [ -n "$(jget ids.0 "$T/resp")" ] || fail "imported subject not found"
done
stop_server
run "$CUSTOS" token revoke --data "$D" "$T1"
[ "$RC" -eq 0 ] || fail "token revoke: exit $RC: $(cat "$T/err")"
run "$CUSTOS" token revoke --data "$D" "cus_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
[ "$RC" -eq 1 ] || fail "token revoke of an unknown token: exit $RC, want 1"
start_server "$D"
http GET "/v1/subjects?email=x@example.com&purpose=account" "" "$T1"
expect_status 401 "a revoked token"
http GET "/v1/subjects?email=x@example.com&purpose=account" "" "$T2"
expect_status 200 "another token of the same principal"
stop_server
run "$CUSTOS" principal disable --data "$D" --id shop
[ "$RC" -eq 0 ] || fail "principal disable: exit $RC: $(cat "$T/err")"
run "$CUSTOS" principal disable --data "$D" --id nobody
[ "$RC" -eq 1 ] || fail "principal disable nobody: exit $RC, want 1"
start_server "$D"
for t in "$T2" "$T3"; do
  http GET "/v1/subjects?email=x@example.com&purpose=account" "" "$t"
  expect_status 401 "a token of a disabled principal"
done
http POST /v1/auth/token "{\"principal\":\"shop\",\"secret\":\"$SECRET\"}" ""
expect_status 401 "a new token for a disabled principal"
stop_server
run "$CUSTOS" token issue --data "$D" --principal shop
[ "$RC" -eq 1 ] || fail "token issue for a disabled principal: exit $RC, want 1"

step "stdout: its own buffer (wiped at exit) loses nothing through a pipe; a write error is reported"
# piped: stdout is fully buffered; every line, the secret or token last, comes out at exit
piped() {
  "$CUSTOS" "$@" 2>"$T/err" | cat >"$T/out"
  [ "${PIPESTATUS[0]}" -eq 0 ] || fail "custos $* | cat: exit ${PIPESTATUS[0]}: $(cat "$T/err")"
}
piped principal add --data "$D" --id piped --kind service --roles service
[ "$(head -n1 "$T/out")" = "principal piped created; its secret (shown once):" ] &&
  [ "$(wc -l <"$T/out")" -eq 2 ] || fail "principal add | cat: $(cat "$T/out")"
PIPED_SECRET=$(tail -n1 "$T/out")
[[ "$PIPED_SECRET" =~ ^cps_[A-Za-z0-9_-]{43}$ ]] || fail "principal add | cat: the last line is not the secret: '$PIPED_SECRET'"
piped principal rotate --data "$D" --id piped
[[ "$(tail -n1 "$T/out")" =~ ^cps_[A-Za-z0-9_-]{43}$ ]] && [ "$(wc -l <"$T/out")" -eq 2 ] ||
  fail "principal rotate | cat: $(cat "$T/out")"
PIPED_SECRET=$(tail -n1 "$T/out")
piped token issue --data "$D" --principal piped
[[ "$(tail -n1 "$T/out")" =~ ^cus_[A-Za-z0-9_-]{43}$ ]] && [ "$(wc -l <"$T/out")" -eq 2 ] ||
  fail "token issue | cat: $(cat "$T/out")"
start_server "$D"
http POST /v1/auth/token "{\"principal\":\"piped\",\"secret\":\"$PIPED_SECRET\"}" ""
expect_status 200 "a token for the secret rotate printed through a pipe"
stop_server
# more than one buffer's worth (ledger export: one line an entry), and exit() (--help after an action)
"$CUSTOS" ledger export --data "$D" >"$T/export.file" || fail "ledger export to a file"
piped ledger export --data "$D"
[ "$(stat -c %s "$T/out")" -gt 65536 ] && cmp -s "$T/out" "$T/export.file" ||
  fail "ledger export | cat: $(stat -c %s "$T/out") bytes, differs from the $(stat -c %s "$T/export.file") written to a file"
piped principal add --help
[ "$(tail -n1 "$T/out")" = "POST /v1/principals/{id}/disable and POST /v1/principals/{id}/rotate." ] ||
  fail "principal add --help | cat: the help is cut: $(tail -n2 "$T/out")"
if [ -w /dev/full ]; then
  # a secret that could not be written is not a success: one line, exit 1 (the principal exists)
  run sh -c '"$0" "$@" >/dev/full' "$CUSTOS" principal add --data "$D" --id full --kind service --roles service
  [ "$RC" -eq 1 ] && [ "$(cat "$T/err")" = "custos: write error on standard output" ] ||
    fail "principal add >/dev/full: exit $RC, stderr: $(cat "$T/err")"
  # a command that reports its own write error is not reported twice
  run sh -c '"$0" "$@" >/dev/full' "$CUSTOS" principal list --data "$D"
  [ "$RC" -eq 1 ] && [ "$(cat "$T/err")" = "custos: cannot write the list" ] ||
    fail "principal list >/dev/full: exit $RC, stderr: $(cat "$T/err")"
fi

step "keys rotate"
"$CUSTOS" principal add --data "$D" --id reader --kind service --roles service >/dev/null
TOKEN=$("$CUSTOS" token issue --data "$D" --principal reader | tail -n1)
run "$CUSTOS" keys rotate --data "$D"
[ "$RC" -eq 0 ] || fail "keys rotate: exit $RC: $(cat "$T/err")"
grep -q 'version 2' "$T/out" || fail "keys rotate output: $(cat "$T/out")"
[ ! -e "$D/keys/master-1.key" ] || fail "master-1.key still there after rotation"
[ "$(stat -c %a "$D/keys/master-2.key")" = 600 ] || fail "master-2.key missing or not 0600"
run "$CUSTOS" keys rotate --data "$D"
[ "$RC" -eq 0 ] || fail "second keys rotate: exit $RC"
[ ! -e "$D/keys/master-2.key" ] && [ -e "$D/keys/master-3.key" ] || fail "second rotation: $(ls "$D/keys")"
start_server "$D"
http GET "/v1/subjects?email=christiana.dietrich688@naver.com&purpose=account"
expect_status 200 "search after rotation"
id=$(jget ids.0 "$T/resp") || fail "subject not found after rotation"
http GET "/v1/subjects/$id?purpose=account"
expect_status 200 "read after rotation"
[ "$(jget fields.name "$T/resp")" = "가다연" ] || fail "wrong name after rotation: $RESP"

step "receipt verify, with the vault and with the published vkey alone"
http DELETE "/v1/subjects/$id"
expect_status 200 "erasure"
cp "$T/resp" "$T/receipt.json"
stop_server
VKEY=$("$CUSTOS" ledger key --data "$D" | tail -n1)
run "$CUSTOS" receipt verify "$T/receipt.json" --data "$D"
[ "$RC" -eq 0 ] && grep -q '^valid: signature verifies and ledger entry [0-9]* records the erasure$' "$T/out" ||
  fail "receipt verify --data: exit $RC: $(cat "$T/out" "$T/err")"
run "$CUSTOS" receipt verify "$T/receipt.json" --vkey "$VKEY"
[ "$RC" -eq 0 ] && grep -q "^valid: signature verifies under ${VKEY%%+*} (ledger entry [0-9]* not cross-checked)$" "$T/out" ||
  fail "receipt verify --vkey: exit $RC: $(cat "$T/out" "$T/err")"
sed 's/"ledger_index":\([0-9]*\)/"ledger_index":1\1/' "$T/receipt.json" >"$T/receipt.edited"
! cmp -s "$T/receipt.json" "$T/receipt.edited" || fail "no ledger_index in the receipt: $(cat "$T/receipt.json")"
run "$CUSTOS" receipt verify "$T/receipt.edited" --vkey "$VKEY"
[ "$RC" -eq 1 ] && grep -q '^INVALID: signature does not verify under the given key$' "$T/out" ||
  fail "an edited receipt under --vkey: exit $RC: $(cat "$T/out" "$T/err")"
"$CUSTOS" init --data "$T/other" >/dev/null || fail "init of a second vault"
run "$CUSTOS" receipt verify "$T/receipt.json" --vkey "$("$CUSTOS" ledger key --data "$T/other" | tail -n1)"
[ "$RC" -eq 1 ] && grep -q '^INVALID: ' "$T/out" || fail "a receipt under another vault's vkey: exit $RC: $(cat "$T/out")"
run "$CUSTOS" ledger verify --data "$D"
[ "$RC" -eq 0 ] || fail "ledger verify after all of this: exit $RC: $(cat "$T/out" "$T/err")"
finish
