#!/usr/bin/env bash
# demo.sh - quick start (1): install what is missing, build, create a vault on the embedded
# store (SQLite) in ./demo-data if there is none, load the 2,000 sample customers, and serve it
# on 127.0.0.1:8420, printing the admin token and three example calls.  Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
scripts/build.sh build
custos=build/custos
data=${CUSTOS_DEMO_DATA:-demo-data}
listen=${CUSTOS_DEMO_LISTEN:-127.0.0.1:8420}
port=${listen##*:}

if [ ! -f "$data/vault.json" ]; then
  echo "== creating a vault in $data"
  "$custos" init --data "$data" --origin custos.demo/ledger | head -n -2   # a fresh admin token is printed below
  echo "== loading data/customers-2k.jsonl (synthetic customers)"
  "$custos" import --data "$data" data/customers-2k.jsonl
  "$custos" principal add --data "$data" --id demo-shop --kind service --roles service,minter >/dev/null
  "$custos" principal add --data "$data" --id demo-support --kind staff --roles support >/dev/null
fi
admin=$("$custos" token issue --data "$data" --principal admin | tail -n1)
shop=$("$custos" token issue --data "$data" --principal demo-shop | tail -n1)

"$custos" serve --data "$data" --listen "$listen" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
for _ in $(seq 50); do
  curl -fsS "http://$listen/v1/health" >/dev/null 2>&1 && break
  sleep 0.1
done
email=$(head -n1 data/customers-2k.jsonl | sed 's/.*"email":"\([^"]*\)".*/\1/')
id=$(curl -fsS -H "Authorization: Bearer $shop" "http://$listen/v1/subjects?email=$email&purpose=account" |
     sed 's/.*"ids":\["\([0-9a-f]*\)".*/\1/')
cat <<MSG

== custos is serving the demo vault on http://$listen (Ctrl-C stops it)
admin token (15 minutes; admin manages principals and keys, reads no personal data):
$admin

A service token for the principal demo-shop (60 minutes) is in the examples:

  # 1. health
  curl -s http://$listen/v1/health

  # 2. find a customer by email (equality search on a blind index; nothing decrypted)
  curl -s -H "Authorization: Bearer $shop" "http://$listen/v1/subjects?email=$email&purpose=account"

  # 3. read that customer for delivery: name, phone and address book only; audited in the ledger
  curl -s -H "Authorization: Bearer $shop" "http://$listen/v1/subjects/$id?purpose=delivery"

The ledger's signed checkpoint: curl -s http://$listen/v1/ledger/checkpoint
More in docs/api.md.  New tokens: build/custos token issue --data $data --principal admin (server stopped).
MSG
wait $pid
