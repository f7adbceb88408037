#!/usr/bin/env bash
# test_rotate_load.sh - master key rotations in a running server under load lose nothing.
#
# A vault of 12,000 imported subjects.  For 8 s (ROTATE_LOAD_SECONDS), six clients create
# subjects, change their customs_code (a sensitive field: each change makes a new subject key,
# wrapped under whichever master version is current), erase some and read them back, while a
# seventh rotates the master key again and again (POST /v1/keys/rotate, then GET /v1/keys until
# it is done): tests/sh/rotate_load.py.  Every answer must be what the client's own record says
# (a read: the latest values; an erased subject: 410), every rotation must end `done`, and at
# least two must run.  Then, with the server stopped: one master key file is left, every
# subject still reads back (rotate_load.py reads each once more at its end), and `custos ledger
# verify` passes with one `started` and one outcome entry per rotation.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "SKIP: python3 is needed"; exit 77; }

D="$T/data"
N=12000
SECS=${ROTATE_LOAD_SECONDS:-8}

init_vault "$D"
TOKEN=$(add_principal_token "$D" svc service service)
python3 - "$N" "$T/subjects.jsonl" "$T/subjects.tsv" <<'PY'
import json, sys
n = int(sys.argv[1])
with open(sys.argv[2], 'w', encoding='utf-8') as j, open(sys.argv[3], 'w', encoding='utf-8') as t:
    for i in range(n):
        em, cc = 'rot%d@example.com' % i, 'P%012d' % i
        j.write(json.dumps({'name': '회전%d' % i, 'email': em, 'phone': '010-%04d-%04d' % (i // 10000, i % 10000),
                            'customs_code': cc}, ensure_ascii=False) + '\n')
        t.write('%s\t%s\n' % (em, cc))
PY
"$CUSTOS" import --data "$D" "$T/subjects.jsonl" >/dev/null 2>"$T/import.err" || fail "import: $(tail -n2 "$T/import.err")"

start_server "$D"
python3 "$CUSTOS_SRC/tests/sh/rotate_load.py" "$PORT" "$ADMIN_TOKEN" "$TOKEN" "$T/subjects.tsv" "$SECS" 6 \
  >"$T/load.out" 2>&1 || fail "under load: $(cat "$T/load.out")"
step "$(head -n1 "$T/load.out")"
stop_server

ls "$D/keys" | grep '^master-[0-9]*\.key$' >"$T/keyfiles" || true
[ "$(wc -l <"$T/keyfiles")" -eq 1 ] || fail "key files left: $(tr '\n' ' ' <"$T/keyfiles")"
"$CUSTOS" ledger verify --data "$D" >"$T/verify.out" 2>&1 || fail "ledger verify: $(tail -n3 "$T/verify.out")"
"$CUSTOS" ledger export --data "$D" 2>/dev/null | grep '"action":"keys.rotate"' >"$T/rotate.jsonl" || true
started=$(grep -c '"reason":"started"' "$T/rotate.jsonl" || true)
ended=$(grep -v '"reason":"started"' "$T/rotate.jsonl" | grep -c '"result":"ok"' || true)
[ "$started" -ge 2 ] && [ "$started" -eq "$ended" ] || fail "keys.rotate entries: $started started, $ended ended ok"
finish
