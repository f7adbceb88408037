#!/usr/bin/env bash
# test_interop.sh - a verifier that shares no code with custos accepts its ledger, checkpoints,
# proofs and erasure receipts, byte for byte as docs/format.md and docs/api.md describe them.
#
# The verifier is tests/sh/interop_verify.py: Python 3's standard library (hashlib, base64,
# json, urllib) and the openssl command line (pkeyutl -verify -rawin, the raw Ed25519 key in its
# 12-byte SubjectPublicKeyInfo DER prefix).  Against a running server it checks: the vkey's key
# id (C2SP signed-note); the checkpoint (C2SP tlog-checkpoint: LF only, blank separator, em dash
# signature line, padded base64, Ed25519 over the text); the RFC 6962 root recomputed from every
# entry's bytes; inclusion (RFC 9162 2.1.3.2) and consistency (2.1.4.2) proofs at the edges
# (size 1, index 0 and size - 1, powers of two, from = to) and between two checkpoints taken
# before and after more activity; 400 for out of range proof requests; erasure receipts from
# DELETE and GET .../erasure against the canonical text of docs/format.md, their ledger entry an
# ok subject.erase of that subject included in a later checkpoint.  Two vaults: the built-in
# schema with data/customers-2k.jsonl imported, and a custom schema whose retained fields (a
# legal basis in Korean, with quotes, a backslash, two spaces and an em dash) put `retained`
# lines in the receipts, under an origin made of unusual printable ASCII.
#
# Needs python3 and openssl (scripts/deps.sh test installs both).
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 is needed (scripts/deps.sh test installs it)"
command -v openssl >/dev/null || fail "openssl is needed (scripts/deps.sh test installs it)"
VERIFY="$CUSTOS_SRC/tests/sh/interop_verify.py"

# verify URL VKEY AUDITOR SERVICE [options...]: run the verifier; its report goes to the log
verify() {
  local url=$1 vkey=$2 aud=$3 svc=$4 out rc=0
  shift 4
  out=$(python3 "$VERIFY" --url "$url" --vkey "$vkey" --auditor-token "$aud" --service-token "$svc" "$@" 2>&1) ||
    rc=$?
  printf '%s\n' "$out" | grep -v '^ok ' >&2 || true
  [ "$rc" -eq 0 ] || { printf '%s\n' "$out" | grep '^FAIL' >&2 || true; fail "the independent verifier failed ($url)"; }
}

# ---- 1. the built-in schema, 2,000 imported subjects ------------------------------------------
step "vault 1: built-in schema, customers-2k imported"
D1="$T/v1"
init_vault "$D1"
"$CUSTOS" import --data "$D1" "$CUSTOS_SRC/data/customers-2k.jsonl" >/dev/null || fail "import failed"
SVC1=$(add_principal_token "$D1" shop service service)
AUD1=$(add_principal_token "$D1" audit staff auditor)
VK1=$("$CUSTOS" ledger key --data "$D1" | tail -n1)
start_server "$D1"
verify "$URL" "$VK1" "$AUD1" "$SVC1" --imported 2000 --purpose delivery --state "$T/witness1"
# the same vault after a restart: the new server's checkpoints extend the old ones (a consistency
# proof from the last checkpoint the first run saw)
stop_server
start_server "$D1"
verify "$URL" "$VK1" "$ADMIN_TOKEN" "$SVC1" --imported 1990 --purpose account --state "$T/witness1"
stop_server

# ---- 2. retained fields in the receipts, an unusual origin -------------------------------------
step "vault 2: retained fields, origin of unusual printable ASCII"
D2="$T/v2"
cat >"$T/schema.json" <<'EOF'
{"fields": {
  "name":     {"type": "string", "class": "pii", "max_length": 100},
  "email":    {"type": "string", "class": "pii", "format": "email", "searchable": true},
  "orders":   {"type": "array", "class": "pii", "max_items": 20,
               "retention": {"days": 1825, "role": "compliance",
                             "legal_basis": "전자상거래법 제6조  (5년) \\ \"quoted\" — art. 6"},
               "items": {"order_id": {"type": "string", "class": "pii", "max_length": 32}}},
  "invoices": {"type": "string", "class": "pii",
               "retention": {"days": 3650, "legal_basis": "Tax Act art. 1", "role": "compliance"}}
}}
EOF
printf '%s\n' '{"roles": {"compliance": {"ops": ["ledger.read"]}}}' >"$T/policy.json"
ORIGIN2='x.example/a~!@#$%^&*()=[]{}|;:",.<>?\`/log'
init_vault "$D2" --schema "$T/schema.json" --policy "$T/policy.json" --origin "$ORIGIN2"
SVC2=$(add_principal_token "$D2" shop service service)
VK2=$("$CUSTOS" ledger key --data "$D2" | tail -n1)
[ "${VK2%%+*}" = "$ORIGIN2" ] || fail "vkey name is not the origin: $VK2"
start_server "$D2"
verify "$URL" "$VK2" "$ADMIN_TOKEN" "$SVC2" \
  --subject-json '{"name":"B","email":"b@example.org","orders":[{"order_id":"O-1"}],"invoices":"I-1"}' \
  --expect-retained orders,invoices
# the verifier is not vacuous: under the other vault's vkey nothing verifies
if python3 "$VERIFY" --url "$URL" --vkey "$VK1" --auditor-token "$ADMIN_TOKEN" --service-token "$SVC2" \
  >"$T/wrong-key.out" 2>&1; then
  fail "the verifier accepted vault 2's checkpoint under vault 1's vkey"
fi
grep -q '^FAIL checkpoint 1: origin equals the vkey name\|^FAIL checkpoint 1: signed by the vkey' "$T/wrong-key.out" ||
  fail "the verifier failed for another reason under the wrong vkey: $(grep '^FAIL' "$T/wrong-key.out" | head -n3)"
stop_server

finish
