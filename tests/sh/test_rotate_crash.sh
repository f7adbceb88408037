#!/usr/bin/env bash
# test_rotate_crash.sh - a master key rotation run by a server (POST /v1/keys/rotate) survives
# kill -9 wherever it lands.
#
# A vault of 30,000 subjects (the sample's 2,000 lines fifteen times, emails made unique).  Three
# rounds: POST /v1/keys/rotate, kill -9 the server after a delay (0, 0.03, 0.1 s: the first
# rounds land mid-way on most machines, a later one may land after the end; every check below
# holds either way), restart.  After each restart: the server resumed what was left (its log
# says so and the rotation ends `done` with `resumed`) or had nothing left (no rotation to
# report); either way one master key version is left, its file alone in keys/, and sampled
# subjects read back with their values.  At the end (server stopped): `custos ledger verify`
# passes, and the ledger holds one `started` entry per round and a `recovered` outcome for each
# round whose rotation the restart resumed.
. "$(dirname "$0")/lib.sh"

D="$T/data"
DATA="$CUSTOS_SRC/data/customers-2k.jsonl"
N_COPIES=15

init_vault "$D"
TOKEN=$(add_principal_token "$D" svc service service)
for r in $(seq 1 "$N_COPIES"); do
  perl -pe 's/"email":"/"email":"r'"$r"'-/' "$DATA"
done >"$T/subjects.jsonl"
"$CUSTOS" import --data "$D" "$T/subjects.jsonl" >/dev/null 2>"$T/import.err" || fail "import: $(tail -n2 "$T/import.err")"

# sample: every 997th line's email and name
perl -MJSON::PP -ne 'if ($. % 997 == 1) { my $d = decode_json($_); print "$d->{email}\t"; binmode STDOUT, ":utf8"; print "$d->{name}\n" }' \
  "$T/subjects.jsonl" >"$T/sample.tsv"
[ "$(wc -l <"$T/sample.tsv")" -ge 30 ] || fail "sample too small"

check_sample() {
  local what=$1 email name id
  while IFS=$'\t' read -r email name; do
    http GET "/v1/subjects?email=$email&purpose=account"
    expect_status 200 "$what: search $email"
    id=$(jget ids.0 "$T/resp") || fail "$what: $email not found"
    http GET "/v1/subjects/$id?purpose=account&fields=name"
    expect_status 200 "$what: read $email"
    [ "$(jget fields.name "$T/resp")" = "$name" ] || fail "$what: $email reads back '$(jget fields.name "$T/resp")', want '$name'"
  done <"$T/sample.tsv"
}

# wait_rotation: GET /v1/keys until no rotation runs (60 s at most); leaves it in $T/resp
wait_rotation() {
  local end=$((SECONDS + 60))
  while :; do
    http GET /v1/keys "" "$ADMIN_TOKEN"
    expect_status 200 "GET /v1/keys"
    [ "$(jget rotation.state "$T/resp" 2>/dev/null || echo none)" = running ] || return 0
    [ "$SECONDS" -lt "$end" ] || fail "the rotation still runs after 60 s: $RESP"
    sleep 0.05
  done
}

cut_short=0
round=0
for delay in 0 0.03 0.1; do
  round=$((round + 1))
  start_server "$D"
  http POST /v1/keys/rotate "" "$ADMIN_TOKEN"
  expect_status 202 "round $round: POST /v1/keys/rotate"
  sleep "$delay"
  crash_server
  step "round $round: killed $delay s after the request"

  start_server "$D"
  wait_rotation
  state=$(jget rotation.state "$T/resp" 2>/dev/null || echo none)
  if grep -q 'resuming the unfinished master key rotation' "$SERVER_LOG"; then
    cut_short=$((cut_short + 1))
    [ "$state" = done ] || fail "round $round: the resumed rotation ended '$state': $RESP"
    [ "$(jget rotation.resumed "$T/resp")" = 1 ] || [ "$(jget rotation.resumed "$T/resp")" = true ] ||
      fail "round $round: not marked resumed: $RESP"
  else
    [ "$state" = none ] || fail "round $round: nothing to resume, yet a rotation: $RESP"
  fi
  [ "$(jget versions "$T/resp")" = "[$((round + 1))]" ] || fail "round $round: versions $(jget versions "$T/resp"), want [$((round + 1))]"
  ls "$D/keys" | grep '^master-[0-9]*\.key$' >"$T/keyfiles" || true # (leftover .tmp files are ignored)
  [ "$(cat "$T/keyfiles")" = "master-$((round + 1)).key" ] || fail "round $round: key files: $(tr '\n' ' ' <"$T/keyfiles")"
  check_sample "round $round"
  stop_server
done
step "$cut_short of 3 rounds cut short by the kill"

"$CUSTOS" ledger verify --data "$D" >"$T/verify.out" 2>&1 || fail "ledger verify: $(tail -n3 "$T/verify.out")"
"$CUSTOS" ledger export --data "$D" 2>/dev/null | grep '"keys.rotate"' >"$T/rotate.jsonl" || true
[ "$(grep -c '"reason":"started"' "$T/rotate.jsonl")" -eq 3 ] || fail "started entries: $(cat "$T/rotate.jsonl")"
# a resumed rotation's outcome says `recovered`; so does a destroy the next open finished (a kill
# between the last re-wrap and the destroy), which the server's log does not call resuming
rec=$(grep -c '"reason":"recovered"' "$T/rotate.jsonl" || true)
[ "$rec" -ge "$cut_short" ] && [ "$rec" -le 3 ] || fail "recovered entries: $rec, want $cut_short to 3"
finish
