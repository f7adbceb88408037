#!/usr/bin/env bash
# test_cli_badinput.sh - the command line's rule for bad input (docs/cli.md, "Common rules"): a
# refused command exits non-zero (2 for a usage error, 1 when the operation failed, 3 when a
# witness cannot reach its server) with exactly one line on stderr, "custos: ...", valid UTF-8
# without control characters and of bounded length whatever the arguments held; never a signal,
# a sanitizer report or an assertion; never a partial write; and a vault it was pointed at keeps
# its keys, manifest and every database row, its ledger verifies, and whatever the ledger gained
# records refusals only.  --help on every command and action prints its usage on stdout, exit 0.
#
# Cases: no argument, unknown commands and options, options without their value or given twice,
# empty values, --data that does not exist / is a file / holds no vault / cannot be read, broken
# key files, garbage numbers, 100 KB arguments, bytes that are not UTF-8, import of missing,
# directory, empty, partly broken and 10 MB-line files, restore of what is not a backup, receipt
# verify of garbage, witness with bad URLs, keys and state files, serve with bad listen addresses,
# a port in use, a non-loopback address without TLS, half a TLS configuration.  The sanitizer run
# of ctest runs this file against the ASan/UBSan binary: every error path above under the
# sanitizers.
. "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 is needed (scripts/deps.sh test installs it)"

DATA="$CUSTOS_SRC/data/customers-2k.jsonl"
V="$T/vault"
LONG=$(head -c 102400 /dev/zero | tr '\0' a)
NOTUTF8=$'\xff\xfe\xc3'
NEWLINE=$'a\nb'
RUN_AS=()

# ---- running a command -------------------------------------------------------------------------
# (few processes per case: the sanitizer run pays for every one)

export LC_ALL=C # ${#s} counts bytes

# run ARGS...: custos ARGS (under RUN_AS; serve under a 20 s timeout), no stdin; exit code in RC,
# stdout in $T/out, stderr in $T/err and its lines in ERR
run() {
  local t=()
  [ "${1-}" != serve ] || t=(timeout 20)
  RC=0
  "${RUN_AS[@]}" "${t[@]}" "$CUSTOS" "$@" </dev/null >"$T/out" 2>"$T/err" || RC=$?
  mapfile -t ERR <"$T/err"
}

# no_crash WHAT: the last run ended by itself (no signal, no timeout) and said nothing of a
# sanitizer or an assertion
no_crash() {
  [ "$RC" -lt 124 ] || fail "$1: exit $RC (a signal or the timeout): ${ERR[*]:0:3}"
  case "${ERR[*]}" in
    *Sanitizer* | *"runtime error"* | *Assertion* | *"core dumped"* | *"SUMMARY: "*)
      fail "$1: sanitizer or assertion output: $(head -c 2000 "$T/err")" ;;
  esac
}

# refused CODE ARGS...: custos ARGS exits CODE with exactly one line on stderr, "custos: ...", of
# at most 700 bytes (UTF-8 and no control character: checked for all lines at once by texts_ok);
# a usage error (2) prints nothing on stdout
refused() {
  local want=$1 w
  shift
  w="$*"
  w=${w:0:200}
  run "$@"
  no_crash "custos $w"
  [ "$RC" -eq "$want" ] || fail "custos $w: exit $RC, want $want (${ERR[*]:0:3})"
  [ "${#ERR[@]}" -eq 1 ] || fail "custos $w: ${#ERR[@]} lines on stderr, want one: $(head -c 600 "$T/err")"
  [[ "${ERR[0]}" == "custos: "* ]] || fail "custos $w: stderr is not 'custos: ...': ${ERR[0]:0:300}"
  [ "${#ERR[0]}" -le 700 ] || fail "custos $w: a stderr line of ${#ERR[0]} bytes"
  [ "$RC" -ne 2 ] || [ ! -s "$T/out" ] || fail "custos $w: a usage error wrote to stdout"
  printf '%s\n' "${ERR[0]}" >>"$T/all.err"
}

# says TEXT: the last refusal's message contains TEXT
says() {
  [[ "${ERR[0]-}" == *"$1"* ]] || fail "the message is not about '$1': ${ERR[0]-}"
}

# texts_ok: every line refused collected is valid UTF-8 without control characters
texts_ok() {
  perl -ne 'chomp; utf8::decode(my $s = $_) && $s !~ /[\x00-\x1f\x7f]/ or die "not one line of text: $_\n"' \
    "$T/all.err" || fail "a message is not one line of UTF-8 text"
}

# helps ARGS...: custos ARGS prints a usage on stdout, nothing on stderr, exit 0
helps() {
  local w="$*"
  run "$@"
  no_crash "custos $w"
  [ "$RC" -eq 0 ] || fail "custos $w: exit $RC, want 0 (${ERR[*]:0:3})"
  [ "${#ERR[@]}" -eq 0 ] || fail "custos $w: wrote to stderr: ${ERR[*]:0:3}"
  mapfile -t -n 1 OUT <"$T/out"
  [[ "${OUT[0]-}" == "usage: custos "* ]] || fail "custos $w: no usage on stdout: ${OUT[0]-}"
}

# ---- what a refused command must leave alone ---------------------------------------------------

# state DIR: the vault's manifest and keys, and every row of both databases except the control
# plane's note of how far it has scanned the ledger (which any open of the vault moves on)
state() {
  (cd "$1" && sha256sum vault.json keys/*)
  sqlite3 -readonly "file:$1/control.db?mode=ro" .dump | grep -v "'erasures_scanned_through'"
  sqlite3 -readonly "file:$1/data.db?mode=ro" .dump
}

# remember DIR: take the vault's state and ledger size, for unchanged
remember() {
  SNAP_DIR=$1
  state "$1" >"$T/state.before"
  SNAP_SIZE=$(ledger_size "$1")
  [ -n "$SNAP_SIZE" ] || fail "ledger verify fails on $1 before the cases"
}

# unchanged WHAT: the remembered vault is as it was, its ledger verifies, and every entry it gained
# records a refusal (result error or denied, never ok); no leftover file in the directory
unchanged() {
  local dir=$SNAP_DIR
  state "$dir" >"$T/state.after"
  cmp -s "$T/state.before" "$T/state.after" ||
    fail "$1: the vault changed: $(diff "$T/state.before" "$T/state.after" | head -c 600)"
  run ledger verify --data "$dir"
  [ "$RC" -eq 0 ] || fail "$1: ledger verify after the cases: exit $RC: $(cat "$T/out" "$T/err" | head -c 400)"
  "$CUSTOS" ledger export --data "$dir" --start "$SNAP_SIZE" >"$T/gained" || fail "$1: ledger export"
  perl -MJSON::PP -ne '
    my $l = decode_json($_);
    my $e = $l->{event};
    ref $e eq "HASH" or die "entry $l->{index} is not a JSON object\n";
    $e->{result} ne "ok" or die "entry $l->{index} records a success: $e->{action}\n";
  ' "$T/gained" || fail "$1: the ledger gained more than refusals"
  [ -z "$(find "$dir" -name '*.tmp')" ] || fail "$1: leftover files: $(find "$dir" -name '*.tmp')"
}

# ---- a vault with data ---------------------------------------------------------------------------

step "a vault with 20 subjects and a service principal"
init_vault "$V"
head -n 20 "$DATA" >"$T/20.jsonl"
"$CUSTOS" import --data "$V" "$T/20.jsonl" >/dev/null 2>&1 || fail "import of 20 lines"
"$CUSTOS" principal add --data "$V" --id svc --kind service --roles service >/dev/null || fail "principal add"
VKEY=$("$CUSTOS" ledger key --data "$V" | tail -n1)
"$CUSTOS" backup --data "$V" --out "$T/good.backup" >/dev/null || fail "backup"
mkdir "$T/empty" "$T/junk"
echo hello >"$T/file"
echo keep >"$T/junk/notes"
: >"$T/empty.jsonl"
# a receipt that parses but whose signature is zeros
printf '{"subject":"%s","erased_at":"2026-01-01T00:00:00.000Z","ledger_index":1,"signature":"%s"}' \
  00112233445566778899aabbccddeeff "$(head -c 64 /dev/zero | base64 -w0)" >"$T/receipt.bad"

# ---- no argument, unknown commands, --help -----------------------------------------------------

step "no argument, unknown commands, --help everywhere"
run
no_crash "custos"
[ "$RC" -eq 2 ] || fail "custos alone: exit $RC, want 2"
grep -q '^usage: custos' "$T/err" || fail "custos alone: no usage on stderr"
[ ! -s "$T/out" ] || fail "custos alone wrote to stdout"
for c in frob "" --bogus -x "$NEWLINE$NOTUTF8" "$LONG"; do
  refused 2 "$c"
done
# (test_cli.sh asks every command and most actions for --help; here what it does not)
helps -h
helps help
helps init -h
helps ledger rebuild --help
helps receipt verify --help
helps backup --help --data "$T/nowhere" --bogus
helps ledger verify --data "$T/nowhere" --help
helps principal add --data "$T/nowhere" -h
# a command that needs an action prints its usage on stderr without one
run receipt
no_crash "custos receipt"
[ "$RC" -eq 2 ] && [[ "${ERR[0]-}" == "usage: custos receipt"* ]] && [ ! -s "$T/out" ] ||
  fail "custos receipt alone: exit $RC, stderr ${ERR[0]-}"
for c in principal token keys ledger receipt; do
  refused 2 "$c" "$NEWLINE$NOTUTF8"
  refused 2 "$c" "$LONG"
done

# ---- options: unknown, without value, twice, empty, extra arguments -------------------------------

# form NAME: F = a well-formed invocation of one command (not run as such), FLAST = an option it
# takes, for "option without its value"
forms=(init serve import padd pdisable tissue trevoke keys lverify lrebuild lexport lkey lwitness backup restore
  receipt)
form() {
  FLAST=--data
  case $1 in
    init) F=(init --data "$T/new") ;;
    serve) F=(serve --data "$V" --listen 127.0.0.1:0) ;;
    import) F=(import --data "$V" "$T/20.jsonl") ;;
    padd) F=(principal add --data "$V" --id p1 --kind service --roles service) ;;
    pdisable) F=(principal disable --data "$V" --id svc) ;;
    tissue) F=(token issue --data "$V" --principal svc) ;;
    trevoke) F=(token revoke --data "$V" "$ADMIN_TOKEN") ;;
    keys) F=(keys rotate --data "$V") ;;
    lverify) F=(ledger verify --data "$V") ;;
    lrebuild) F=(ledger rebuild --data "$V") ;;
    lexport) F=(ledger export --data "$V" --start 0 --count 1) ;;
    lkey) F=(ledger key --data "$V") ;;
    lwitness) F=(ledger witness --url http://127.0.0.1:1 --vkey "$VKEY" --state "$T/w.state") FLAST=--state ;;
    backup) F=(backup --data "$V" --out "$T/b.db") ;;
    restore) F=(restore --data "$V" --in "$T/good.backup") ;;
    receipt) F=(receipt verify "$T/receipt.bad" --data "$V") ;;
  esac
}

step "options: unknown, without a value, given twice, empty, extra arguments"
remember "$V"
# (every form gets an unknown option and an extra argument; every other form the rest, which
# all goes through one parser)
odd=0
for f in "${forms[@]}"; do
  form "$f"
  refused 2 "${F[@]}" --bogus
  refused 2 "${F[@]}" extra
  odd=$((1 - odd))
  if [ "$odd" = 1 ]; then refused 2 "${F[@]}" "$FLAST"; else refused 2 "${F[@]}" "$FLAST" "${F[@]: -1}"; fi
done
refused 2 init --data "$T/new" -q
refused 2 ledger export --data "$V" "--bogus$NOTUTF8$NEWLINE"
refused 2 import --data "$V" --data= "$T/20.jsonl"
refused 2 principal add --data "$V" --id p1 --kind service --roles ""
refused 2 ledger witness --url http://127.0.0.1:1 --vkey "$VKEY" --state ""
refused 2 serve --data "$V" --listen ""
refused 2 backup --data "$V" --out ""
refused 2 token revoke --data "$V" "$ADMIN_TOKEN" ""
# options of another action are refused, not ignored
refused 2 ledger key --data "$V" --url http://127.0.0.1:1
refused 2 ledger verify --data "$V" --count 1
refused 2 ledger witness --url http://127.0.0.1:1 --vkey "$VKEY" --state "$T/w.state" --data "$V"
refused 2 ledger verify --data "$V" --max-age 60
for n in 0 -1 1x 316224001 ""; do
  refused 2 ledger witness --url http://127.0.0.1:1 --vkey "$VKEY" --state "$T/w.state" --max-age "$n"
done
refused 2 principal disable --data "$V" --id svc --kind service
refused 2 token issue --data "$V" --principal svc --roles admin
refused 2 backup --data "$V" --out "$T/b.db" --in "$T/good.backup"
refused 2 restore --data "$V" --in "$T/good.backup" --out "$T/b.db"
refused 2 receipt verify "$T/receipt.bad" --data "$V" --in x
refused 2 serve --data "$V" --insecure --insecure
refused 2 serve --data "$V" --insecure=yes
# required options missing
refused 2 init
refused 2 serve --listen 127.0.0.1:0
refused 2 import "$T/20.jsonl"
refused 2 import --data "$V"
# an empty file name, as an unset variable gives it: a usage error, like an empty option value
refused 2 import --data "$V" ""
says "the input file name is empty"
refused 2 receipt verify "" --data "$V"
says "the receipt file name is empty"
refused 2 principal add --data "$V" --id p1
refused 2 principal disable --data "$V"
refused 2 token issue --data "$V"
refused 2 token revoke --data "$V"
refused 2 keys rotate
refused 2 ledger export --start 1
refused 2 ledger witness --vkey "$VKEY" --state "$T/w.state"
refused 2 backup --data "$V"
refused 2 restore --data "$V"
refused 2 receipt verify --data "$V"
refused 2 receipt verify "$T/receipt.bad"
says "give either --data DIR or --vkey VKEY"
refused 2 receipt verify "$T/receipt.bad" --data "$V" --vkey "$VKEY"
says "give either --data DIR or --vkey VKEY"
refused 2 receipt verify "$T/receipt.bad" --vkey "${VKEY%+*}+00000000+AQ"
says "--vkey is not a valid Ed25519 verifier key"
refused 1 receipt verify "$T/receipt.bad" --vkey "$VKEY"
unchanged "option errors"
[ ! -e "$T/new" ] && [ ! -e "$T/b.db" ] && [ ! -e "$T/w.state" ] || fail "an option error created a file"

# ---- --data that is not a vault ------------------------------------------------------------------

# DATA_USERS: the forms that open --data (all but init and witness)
DATA_USERS=(serve import padd pdisable tissue trevoke keys lverify lrebuild lexport lkey backup restore receipt)

# with_data DIR FORM...: each form with --data DIR is refused (exit 1)
with_data() {
  local dir=$1 f i
  shift
  for f in "$@"; do
    form "$f"
    for i in "${!F[@]}"; do [ "${F[$i]}" = "$V" ] && F[i]=$dir; done
    refused 1 "${F[@]}"
  done
  [ ! -e "$T/b.db" ] || fail "a backup of $dir was written"
}

step "--data: missing, a file, an empty directory, no vault, long, not UTF-8"
remember "$V"
with_data "$T/nowhere" "${DATA_USERS[@]}"
with_data "$T/file" padd lverify backup
with_data "$T/empty" import lexport receipt
with_data "$T/junk" tissue lkey restore
with_data "$T/$LONG" padd lverify backup
with_data "$T/$NOTUTF8$NEWLINE" keys lrebuild receipt
[ -z "$(ls -A "$T/empty")" ] || fail "a command wrote into an empty directory: $(ls -A "$T/empty")"
[ "$(ls -A "$T/junk")" = notes ] || fail "a command wrote into a directory without a vault: $(ls -A "$T/junk")"
[ "$(cat "$T/file")" = hello ] || fail "a command changed a file given as --data"
[ ! -e "$T/nowhere" ] || fail "a command created --data"
unchanged "--data that is not a vault"

step "init: what it refuses leaves no trace"
refused 1 init --data "$V"
refused 1 init --data "$T/file"
refused 1 init --data "$T/junk"
refused 1 init --data "$T/nowhere/sub"
refused 1 init --data "$T/$LONG"
refused 1 init --data "$T/new" --origin "a b"
refused 1 init --data "$T/new" --origin "$NOTUTF8"
refused 1 init --data "$T/new" --origin "$LONG"
# the first line of erasure receipts: the ledger key, which signs nothing that begins with the
# origin's line, could then sign no receipt (regression: accepted, and every DELETE answered 400
# after erasing, with no receipt ever to be had)
refused 1 init --data "$T/new" --origin "custos-erasure-receipt/v1"
says "is the first line of erasure receipts"
refused 1 init --data "$T/new" --schema "$T/nowhere.json"
refused 1 init --data "$T/new" --schema "$T/empty"
says "cannot read --schema $T/empty: Is a directory"
refused 1 init --data "$T/new" --schema "$T/file"
refused 1 init --data "$T/new" --schema "$T/empty.jsonl"
refused 1 init --data "$T/new" --policy "$T/20.jsonl"
refused 1 init --data "$T/new" --policy "$T/$NOTUTF8"
[ ! -e "$T/new" ] && [ ! -e "$T/nowhere" ] || fail "a refused init created its directory"
[ "$(ls -A "$T/junk")" = notes ] && [ "$(cat "$T/file")" = hello ] || fail "a refused init touched what it was given"
unchanged "init over a vault"

# ---- unreadable files, broken keys ---------------------------------------------------------------

# NOPRIV: how to run without the power to bypass file modes (root drops CAP_DAC_*), or empty
NOPRIV=()
if [ "$(id -u)" -eq 0 ]; then
  # shellcheck disable=SC2054 # setpriv takes a comma-separated list
  NOPRIV=(setpriv --bounding-set=-dac_override,-dac_read_search --inh-caps=-all)
  "${NOPRIV[@]}" true 2>/dev/null || NOPRIV=(none)
fi
mkdir "$T/probe" && chmod 000 "$T/probe"
if [ "${NOPRIV[0]-}" != none ] && ! "${NOPRIV[@]}" ls "$T/probe" >/dev/null 2>&1; then
  CAN_DENY=1
else
  CAN_DENY=0
  step "(cannot take away the power to read any file here: unreadable-file cases skipped)"
fi
chmod 700 "$T/probe"

# on_copy FORM...: each form with --data $T/k (a copy of the vault) is refused (exit 1)
on_copy() {
  local f i
  for f in "$@"; do
    form "$f"
    for i in "${!F[@]}"; do [ "${F[$i]}" = "$V" ] && F[i]=$T/k; done
    refused 1 "${F[@]}"
  done
}

step "key files missing, truncated, empty, a directory, too open, unreadable; vault.json broken"
rm -rf "$T/k"
cp -a "$V" "$T/k"
remember "$T/k"
for key in master-1.key ledger.key; do
  cp -p "$T/k/keys/$key" "$T/key.orig"
  for how in missing truncated empty directory mode644 unreadable; do
    [ "$how" != unreadable ] || [ "$CAN_DENY" = 1 ] || continue
    case $how in
      missing) rm "$T/k/keys/$key" ;;
      truncated) truncate -s 40 "$T/k/keys/$key" ;;
      empty) : >"$T/k/keys/$key" ;;
      directory) rm "$T/k/keys/$key" && mkdir -m 700 "$T/k/keys/$key" ;;
      mode644) chmod 644 "$T/k/keys/$key" ;;
      unreadable) chmod 000 "$T/k/keys/$key" && RUN_AS=("${NOPRIV[@]}") ;;
    esac
    # what needs the key refuses (what does not need it may work: ledger verify without the master key)
    if [ "$key" = master-1.key ]; then on_copy padd keys; else on_copy lkey padd; fi
    RUN_AS=()
    rm -rf "${T:?}/k/keys/$key"
    cp -p "$T/key.orig" "$T/k/keys/$key"
  done
done
for how in garbage empty missing; do
  case $how in
    garbage) printf '{"format":1,"origin":"x y"}' >"$T/k/vault.json" ;;
    empty) : >"$T/k/vault.json" ;;
    missing) rm "$T/k/vault.json" ;;
  esac
  on_copy padd lkey
  cp -p "$V/vault.json" "$T/k/vault.json"
done
# a data.db that is no database is named as the damaged file (not as control.db's attach)
cp -p "$T/k/data.db" "$T/data.db.keep"
head -c 65536 /dev/urandom >"$T/k/data.db"
on_copy padd
says "open data.db"
cp -p "$T/data.db.keep" "$T/k/data.db"
if [ "$CAN_DENY" = 1 ]; then
  RUN_AS=("${NOPRIV[@]}")
  chmod 000 "$T/k"
  on_copy padd lverify backup
  chmod 700 "$T/k"
  chmod 000 "$T/k/ledger"
  on_copy padd lexport
  chmod 700 "$T/k/ledger"
  chmod 000 "$T/k/data.db"
  on_copy padd
  says "open data.db"
  chmod 600 "$T/k/data.db"
  cp "$T/20.jsonl" "$T/locked.jsonl" && chmod 000 "$T/locked.jsonl"
  refused 1 import --data "$T/k" "$T/locked.jsonl"
  refused 1 receipt verify "$T/locked.jsonl" --data "$T/k"
  refused 1 restore --data "$T/k" --in "$T/locked.jsonl"
  refused 1 init --data "$T/new" --schema "$T/locked.jsonl"
  RUN_AS=()
fi
unchanged "broken keys, manifest, unreadable files"

# ---- values: numbers, long, not UTF-8 ------------------------------------------------------------

step "garbage numbers, 100 KB values, bytes that are not UTF-8"
remember "$V"
for n in -1 99999999999999999999 abc " 1" 0x10 "$NOTUTF8"; do
  refused 2 ledger export --data "$V" --start "$n"
done
for n in -1 1e3 "$LONG"; do
  refused 2 ledger export --data "$V" --count "$n"
done
for n in 0 3651 " 5" +5 5x ""; do
  refused 2 principal rotate --data "$V" --id admin --secret-ttl-days "$n"
done
for n in 0 17 99999999999999999999 1x; do
  refused 2 import --data "$V" --threads "$n" "$T/20.jsonl"
done
for n in 65 -1 abc; do
  refused 2 serve --data "$V" --threads "$n"
done
X=$LONG
refused 1 import --data "$V" "$T/$X"
refused 1 principal disable --data "$V" --id "$X"
refused 1 restore --data "$V" --in "$T/$X"
refused 1 receipt verify "$T/$X" --data "$V"
refused 1 serve --data "$V" --listen 127.0.0.1:0 --tls-cert "$T/$X" --tls-key "$T/$X"
for X in "$LONG" "$NOTUTF8$NEWLINE"; do
  refused 1 principal add --data "$V" --id "$X" --kind service --roles service
  [ "$X" = "$LONG" ] || says "must be text"
  refused 1 principal add --data "$V" --id p2 --kind "$X" --roles service
  refused 1 principal add --data "$V" --id p2 --kind service --roles "$X"
  refused 1 token issue --data "$V" --principal "$X"
  says "malformed principal id"
  refused 1 token revoke --data "$V" "$X"
  says "malformed token"
  refused 1 serve --data "$V" --listen "$X"
  refused 2 ledger witness --url "http://127.0.0.1:1/$X" --vkey "$VKEY" --state "$T/w.state"
  refused 2 ledger witness --url http://127.0.0.1:1 --vkey "$X" --state "$T/w.state"
done
unchanged "bad values"
[ ! -e "$T/w.state" ] && [ ! -e "$T/w.state.lock" ] || fail "a refused witness created its state or lock"

# ---- import --------------------------------------------------------------------------------------

step "import: a missing file, a directory, an empty file, a 10 MB line"
remember "$V"
refused 1 import --data "$V" "$T/nowhere.jsonl"
refused 1 import --data "$V" "$T/empty"
says "cannot read $T/empty: Is a directory"
run import --data "$V" "$T/empty.jsonl"
no_crash "import of an empty file"
[ "$RC" -eq 0 ] && grep -q '^imported 0 subjects (0 lines, 0 rejected)' "$T/out" ||
  fail "import of an empty file: exit $RC: $(cat "$T/out" "$T/err")"
head -c $((10 * 1024 * 1024)) /dev/zero | tr '\0' x >"$T/big.jsonl"
echo >>"$T/big.jsonl"
run import --data "$V" "$T/big.jsonl"
no_crash "import of a 10 MB line"
[ "$RC" -eq 1 ] || fail "import of a 10 MB line: exit $RC, want 1"
[ "$(cat "$T/err")" = "line 1 rejected: line exceeds 65536 bytes" ] || fail "import of a 10 MB line: $(head -c 300 "$T/err")"
grep -q '^imported 0 subjects (1 lines, 1 rejected)' "$T/out" || fail "import of a 10 MB line: $(cat "$T/out")"
printf '%s\n' "$NOTUTF8" '{"name":"x' '[]' 'null' '{"name":"a","name":"b"}' >"$T/bad.jsonl"
run import --data "$V" "$T/bad.jsonl"
no_crash "import of bad lines only"
[ "$RC" -eq 1 ] && grep -q '^imported 0 subjects (5 lines, 5 rejected)' "$T/out" ||
  fail "import of bad lines only: exit $RC: $(cat "$T/out")"
[ "$(grep -c '^line [1-5] rejected: ' "$T/err")" -eq 5 ] && [ "$(wc -l <"$T/err")" -eq 5 ] ||
  fail "import of bad lines: stderr: $(head -c 600 "$T/err")"
unchanged "import of nothing valid"

step "import: a broken line in the middle is reported and skipped, the others imported"
{
  sed -n 21,25p "$DATA"
  printf '{"name":"broken\n'
  sed -n 26,30p "$DATA"
} >"$T/mid.jsonl"
before=$(ledger_size "$V")
rows=$(sqlite3 -readonly "file:$V/data.db?mode=ro" 'SELECT count(*) FROM subjects')
run import --data "$V" "$T/mid.jsonl"
no_crash "import with a broken line"
[ "$RC" -eq 1 ] || fail "import with a broken line: exit $RC, want 1"
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^line 6 rejected: ' "$T/err" ||
  fail "import with a broken line: stderr: $(cat "$T/err")"
grep -q '^imported 10 subjects (11 lines, 1 rejected)' "$T/out" || fail "import with a broken line: $(cat "$T/out")"
[ "$(sqlite3 -readonly "file:$V/data.db?mode=ro" 'SELECT count(*) FROM subjects')" -eq $((rows + 10)) ] ||
  fail "import with a broken line: not 10 more subjects"
run ledger verify --data "$V"
[ "$RC" -eq 0 ] || fail "ledger verify after a partial import: $(cat "$T/out" "$T/err")"
"$CUSTOS" ledger export --data "$V" --start "$before" >"$T/gained"
[ "$(grep -c '"action":"subject.import","result":"ok"' "$T/gained")" -eq 10 ] && [ "$(wc -l <"$T/gained")" -eq 10 ] ||
  fail "a partial import of 10 lines left $(wc -l <"$T/gained") ledger entries"

# ---- restore, backup, receipt ------------------------------------------------------------------------

step "restore of what is not a backup, backup where it cannot write"
remember "$V"
"$CUSTOS" init --data "$T/other" >/dev/null || fail "init of another vault"
"$CUSTOS" backup --data "$T/other" --out "$T/other.backup" >/dev/null || fail "backup of another vault"
head -c 5000 "$T/good.backup" >"$T/cut.backup"
for f in "$T/nowhere.db" "$T/empty" "$T/empty.jsonl" "$T/file" "$T/20.jsonl" "$V/control.db" "$T/other.backup" \
  "$T/cut.backup" "$T/big.jsonl"; do
  refused 1 restore --data "$V" --in "$f"
  case $f in
    */nowhere.db) says "cannot read $f: No such file" ;;
    */empty) says "cannot read $f: Is a directory" ;;
  esac
done
# a FIFO with no writer: refused at once, not waited on (red-team finding: the open hung)
mkfifo "$T/fifo.backup"
RC=0
timeout 10 "$CUSTOS" restore --data "$V" --in "$T/fifo.backup" >"$T/out" 2>"$T/err" || RC=$?
[ "$RC" -eq 1 ] || fail "restore --in FIFO: exit $RC (124: it hung)"
grep -q "not a regular file" "$T/err" || fail "restore --in FIFO: $(cat "$T/err")"
rm -f "$T/fifo.backup"
refused 1 backup --data "$V" --out "$T/nowhere/b.db"
refused 1 backup --data "$V" --out "$T/empty"
refused 1 backup --data "$V" --out "$T/file"
[ "$(cat "$T/file")" = hello ] && [ -z "$(ls -A "$T/empty")" ] || fail "backup wrote over what exists"
unchanged "restore and backup"

step "a data directory whose schema.json this version refuses"
# (a vault made by an older version with laxer checks: the message names the file to edit)
"$CUSTOS" init --data "$T/lax" >/dev/null || fail "init of the lax vault"
printf '{"fields":{"name":{"type":"string","class":"pii","mask":"name"},"orders":{"type":"string","class":"pii","retention":{"days":10,"legal_basis":"a\xe2\x80\x8fb","role":"auditor"}}}}' \
  >"$T/lax/schema.json"
refused 1 principal add --data "$T/lax" --id p --kind service --roles service
says "$T/lax/schema.json: "
says "edit that file"
says "legal_basis must be one line of visible text"

step "receipt verify of garbage"
remember "$V"
printf '{"a":1}' >"$T/r.unknown"
printf '{"x\\nvalid: yes":1}' >"$T/r.newline"
printf '%s' "$NOTUTF8" >"$T/r.notutf8"
head -c 70000 /dev/zero | tr '\0' ' ' >"$T/r.big"
for r in "$T/receipt.bad" "$T/r.unknown" "$T/r.newline" "$T/r.notutf8" "$T/empty.jsonl" "$T/file" "$T/20.jsonl"; do
  refused 1 receipt verify "$r" --data "$V"
  grep -q '^INVALID: ' "$T/out" && [ "$(wc -l <"$T/out")" -eq 1 ] || fail "receipt verify $r: stdout: $(cat "$T/out")"
done
for r in "$T/r.big" "$T/empty" "$T/nowhere.json" "$T/big.jsonl"; do
  refused 1 receipt verify "$r" --data "$V"
  [ ! -s "$T/out" ] || fail "receipt verify $r: what cannot be read is not an INVALID receipt: $(cat "$T/out")"
done
# a pipe is read to its end like a file (a receipt piped in), and capped alike
refused 1 receipt verify <(cat "$T/r.unknown") --data "$V"
grep -q "^INVALID: unknown field 'a'" "$T/out" || fail "receipt verify from a pipe: stdout: $(cat "$T/out")"
refused 1 receipt verify <(cat "$T/r.big") --data "$V"
says "receipt file is too large"
# nothing is known about a receipt when the vault cannot be read
refused 1 receipt verify "$T/receipt.bad" --data "$T/nowhere"
says "cannot check the receipt"
[ ! -s "$T/out" ] || fail "receipt verify without a vault: $(cat "$T/out")"
unchanged "receipt verify"

# ---- ledger witness --------------------------------------------------------------------------------

step "ledger witness: bad URLs, keys and state files"
for u in notaurl ftp://127.0.0.1/ file:///etc/passwd "http://127.0.0.1:1/ x" "http://$LONG"; do
  refused 2 ledger witness --url "$u" --vkey "$VKEY" --state "$T/w.state"
done
for k in x "$VKEY"x "${VKEY%+*}+AAAA" "$NOTUTF8" "$LONG"; do
  refused 2 ledger witness --url http://127.0.0.1:1 --vkey "$k" --state "$T/w.state"
done
[ ! -e "$T/w.state" ] && [ ! -e "$T/w.state.lock" ] || fail "a refused witness created its state or lock"
refused 3 ledger witness --url http://127.0.0.1:1 --vkey "$VKEY" --state "$T/w.state"
refused 3 ledger witness --url 'http://[::1' --vkey "$VKEY" --state "$T/w.state"
[ ! -e "$T/w.state" ] || fail "a witness that reached nothing wrote its state"
for s in "$T/file" "$T/empty" "$T/20.jsonl" "$T/big.jsonl" "$T/nowhere/w.state"; do
  sum=$(sha256sum "$s" 2>/dev/null || true)
  refused 1 ledger witness --url http://127.0.0.1:1 --vkey "$VKEY" --state "$s"
  [ "$(sha256sum "$s" 2>/dev/null || true)" = "$sum" ] || fail "a refused witness changed its state file $s"
done
if [ "$CAN_DENY" = 1 ]; then
  cp "$T/file" "$T/w.locked" && chmod 000 "$T/w.locked"
  RUN_AS=("${NOPRIV[@]}")
  refused 1 ledger witness --url http://127.0.0.1:1 --vkey "$VKEY" --state "$T/w.locked"
  RUN_AS=()
fi

# ---- serve ----------------------------------------------------------------------------------------

step "serve: bad listen addresses, a port in use, no plain HTTP off loopback, half a TLS setup"
remember "$V"
for l in garbage 127.0.0.1: 127.0.0.1:65536 127.0.0.1:99999999999999999999 ::1:0 '[::1:0' example.com:0 \
  $'127.0.0.1:0\n'; do
  refused 1 serve --data "$V" --listen "$l"
done
for l in 0.0.0.0:0 '[::]:0' 192.0.2.1:0; do
  refused 1 serve --data "$V" --listen "$l"
  grep -q 'refusing to serve plain HTTP on a non-loopback address' "$T/err" || fail "serve on $l: $(cat "$T/err")"
done
refused 1 serve --data "$V" --listen 127.0.0.1:0 --tls-cert "$T/file"
refused 1 serve --data "$V" --listen 127.0.0.1:0 --tls-key "$T/file"
refused 1 serve --data "$V" --listen 0.0.0.0:0 --tls-cert "$T/file"
refused 1 serve --data "$V" --listen 127.0.0.1:0 --tls-cert "$T/nowhere.pem" --tls-key "$T/nowhere.pem"
refused 1 serve --data "$V" --listen 127.0.0.1:0 --port-file "$T/nowhere/port"
# a certificate and key that are not PEM: one line that says the TLS files were refused, and why
# (libmicrohttpd's own complaint), not the library's lines and a meaningless strerror
printf 'not a certificate\n' >"$T/notpem"
chmod 600 "$T/notpem"
refused 1 serve --data "$V" --listen 127.0.0.1:0 --tls-cert "$T/notpem" --tls-key "$T/notpem"
says "the TLS certificate or key was refused"
# a key that is not a regular file (a directory, a FIFO): refused before anything reads it
mkfifo -m 600 "$T/keyfifo"
refused 1 serve --data "$V" --listen 127.0.0.1:0 --tls-cert "$T/notpem" --tls-key "$T"
says "not a regular file"
refused 1 serve --data "$V" --listen 127.0.0.1:0 --tls-cert "$T/notpem" --tls-key "$T/keyfifo"
says "not a regular file"
# a port file that cannot be written once the port is known: serve does not run without it
if [ -w /dev/full ]; then
  refused 1 serve --data "$V" --listen 127.0.0.1:0 --port-file /dev/full
  says "cannot write --port-file"
fi
refused 1 serve --data "$V" --listen 127.0.0.1:0 --port-file "$T/empty"
unchanged "serve refusals"
# a port in use: the other vault's server holds it
start_server "$T/other"
remember "$V"
refused 1 serve --data "$V" --listen "127.0.0.1:$PORT" --port-file "$T/port.busy"
grep -q 'in use' "$T/err" || fail "serve on a port in use: $(cat "$T/err")"
[ ! -e "$T/port.busy" ] || fail "serve that did not start left its port file"
unchanged "serve on a port in use"
stop_server
texts_ok
step "$(wc -l <"$T/all.err") refusals"
finish
