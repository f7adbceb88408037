#!/usr/bin/env bash
# test_offline_kill.sh - offline commands killed half-way leave nothing that passes for a result.
#
# 1. `custos backup` killed with SIGKILL while it copies: no file under the backup's name (the
#    copy is written as FILE.partial-XXXXXX and linked to FILE once complete), so a rerun with
#    the same name works and nobody keeps a truncated file as a backup.  Every backup that did
#    finish restores.
# 2. `custos restore` killed between its copy and the rename leaves DIR/data.db.restore: the
#    backup's records, erased subjects' among them.  The next open of the vault, by any command,
#    removes it (it used to stay until the next restore).
# Crash-torture findings (offline commands).
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || fail "sqlite3 is needed (scripts/deps.sh test installs it)"

D="$T/data"
init_vault "$D"
for i in 0 1 2 3 4 5 6 7 8 9; do
  perl -pe "s/\"email\":\"/\"email\":\"k$i./" "$CUSTOS_SRC/data/customers-2k.jsonl"
done >"$T/in.jsonl"
"$CUSTOS" import --data "$D" "$T/in.jsonl" >/dev/null || fail "import"

# complete FILE: a whole, labelled backup of the 20,000 subjects
complete() {
  [ "$(sqlite3 -readonly "$1" "SELECT (SELECT count(*) FROM meta WHERE k = 'backup_origin') || ' ' ||
      (SELECT count(*) FROM subjects)" 2>/dev/null)" = "1 20000" ]
}

step "backup killed at increasing delays"
killed=0 finished=0
for ms in 2 5 10 15 20 30 40 50 60 80 100 130 160 200 250 300 400; do
  out="$T/b-$ms.db"
  "$CUSTOS" backup --data "$D" --out "$out" >/dev/null 2>&1 &
  pid=$!
  sleep "$(printf '0.%03d' "$ms")"
  kill -KILL "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" || rc=$?
  if [ "$rc" = 137 ]; then
    killed=$((killed + 1))
    if [ -e "$out" ]; then
      # killed after the link (while closing): then it is the whole backup
      complete "$out" || fail "a backup killed after ${ms} ms left an incomplete file under its name"
    else
      # the rerun with the same name works
      "$CUSTOS" backup --data "$D" --out "$out" >/dev/null || fail "backup again after a kill"
    fi
  else
    [ "$rc" = 0 ] || fail "backup exited $rc"
    finished=$((finished + 1))
  fi
  complete "$out" || fail "backup $out is not complete"
done
step "killed $killed, finished $finished"
[ "$killed" -gt 0 ] || fail "no kill landed during a backup: the test checked nothing"
ls "$T" | grep -q '\.partial-' || fail "no killed backup left its partial copy (kills came too early or too late)"

step "a killed restore's copy is removed by the next open"
cp "$T/b-400.db" "$D/data.db.restore"
: >"$D/data.db.restore-journal"
"$CUSTOS" principal add --data "$D" --id late --kind service --roles service >/dev/null || fail "principal add"
[ ! -e "$D/data.db.restore" ] && [ ! -e "$D/data.db.restore-journal" ] ||
  fail "a restore's leftover copy survived an open of the vault"

step "every finished backup restores"
"$CUSTOS" restore --data "$D" --in "$T/b-400.db" >/dev/null || fail "restore of a backup made after kills"
"$CUSTOS" ledger verify --data "$D" >/dev/null || fail "ledger verify"
finish
