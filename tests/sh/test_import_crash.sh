#!/usr/bin/env bash
# test_import_crash.sh - kill -9 during `custos import` leaves a consistent vault.
#
# An import stages subjects (store.h, "bulk load") and publishes them every so often; it is killed
# with SIGKILL once some commit groups are staged.  Then: the ledger verifies; opening the vault
# (server start) publishes what was staged; every subject that has a subject.import event is
# either readable (200) or absent (404), never broken (a record without its key would be a 500),
# and each absent one, none readable, has a later subject.import event that says not_stored;
# the first committed group is readable; search finds imported subjects; a new import is refused
# until told to resume or restart; resuming with another input is refused; resuming with the same
# input stores every line exactly once; after that a new import works.
. "$(dirname "$0")/lib.sh"

D="$T/data"
init_vault "$D"
TOKEN=$(add_principal_token "$D" svc service service)

# 100,000 lines: the 2,000-subject sample 50 times (ids are random, so duplicates are fine)
for _ in $(seq 50); do cat "$CUSTOS_SRC/data/customers-2k.jsonl"; done >"$T/in.jsonl"

step "import, killed once a commit group is staged"
"$CUSTOS" import --data "$D" "$T/in.jsonl" >"$T/import.out" 2>"$T/import.err" &
pid=$!
HELPER_PIDS+=("$pid")
# the data plane's log past 40 MiB: at least three commit groups (8192 subjects, ~10 MiB each)
# written, so the first one has committed (groups commit in order)
for _ in $(seq 1000); do
  [ "$(stat -c %s "$D/data.db-wal" 2>/dev/null || echo 0)" -gt $((40 << 20)) ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.02
done
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
grep -q 'imported 100000 subjects' "$T/import.out" && fail "the import finished before it could be killed"
step "killed"

"$CUSTOS" ledger verify --data "$D" >"$T/verify.out" 2>&1 || fail "ledger verify after the kill: $(cat "$T/verify.out")"
"$CUSTOS" ledger export --data "$D" >"$T/ledger.jsonl" || fail "ledger export"
perl -MJSON::PP -ne 'my $e = decode_json($_)->{event};
  print "$e->{subject}\n" if $e->{action} eq "subject.import"' "$T/ledger.jsonl" >"$T/ids"
nev=$(wc -l <"$T/ids")
[ "$nev" -ge 8192 ] || fail "only $nev subject.import events in the ledger"

step "reopen (publishes the staged subjects) and read $nev ledgered subjects back (sampled)"
start_server "$D"
ok=0 gone=0 i=0
while read -r id; do
  i=$((i + 1))
  # the first group (committed before the kill) and a sample across the rest
  [ "$i" -le 20 ] || [ $((i % 499)) -eq 0 ] || continue
  http GET "/v1/subjects/$id?purpose=account"
  case $STATUS in
    200) ok=$((ok + 1)); echo "$id" >>"$T/read.ok" ;;
    404) gone=$((gone + 1)); echo "$id" >>"$T/read.gone"
      [ "$i" -gt 20 ] || fail "subject $i of the first committed group is missing" ;;
    *) fail "subject $id after the crash: HTTP $STATUS (${RESP:0:200})" ;;
  esac
done <"$T/ids"
[ "$ok" -ge 20 ] || fail "only $ok subjects readable after the crash"
step "$ok readable, $gone never committed"
http GET "/v1/subjects?email=christiana.dietrich688@naver.com&purpose=account"
expect_status 200 "search after the crash"
[ -n "$(jget ids.0 "$T/resp")" ] || fail "an imported subject is not found by its email after the crash"
stop_server

# the ledger does not leave those never committed named as imported: the open that followed the
# kill recorded subject.import, result error, reason not_stored, for each of them, and for no
# subject that reads back
"$CUSTOS" ledger export --data "$D" >"$T/ledger2.jsonl" || fail "ledger export"
touch "$T/read.ok" "$T/read.gone"
perl -MJSON::PP -e '
  my %ns;
  open my $l, "<", $ARGV[0] or die;
  while (<$l>) { my $e = decode_json($_)->{event};
    $ns{$e->{subject}}++ if $e->{action} eq "subject.import" && $e->{result} eq "error" && ($e->{reason} // "") eq "not_stored" }
  my $bad = 0;
  for my $f ([$ARGV[1], 0], [$ARGV[2], 1]) {
    open my $h, "<", $f->[0] or die;
    while (my $id = <$h>) { chomp $id;
      next if (($ns{$id} // 0) == 1) == ($f->[1] == 1);
      print STDERR ($f->[1] ? "never stored but no not_stored event: $id\n" : "readable but marked not_stored: $id\n"); $bad++ }
  }
  print STDERR scalar(keys %ns), " not_stored events\n";
  exit($bad ? 1 : 0);
' "$T/ledger2.jsonl" "$T/read.ok" "$T/read.gone" 2>"$T/ns.out" || fail "not_stored events: $(cat "$T/ns.out")"
step "$(cat "$T/ns.out")"

step "a new import is refused until told to resume or restart"
before=$(sqlite3 "$D/data.db" "SELECT count(*) FROM subject_ids")
[ "$before" -ge 8192 ] && [ "$before" -lt 100000 ] || fail "$before subjects stored after the kill"
rc=0
"$CUSTOS" import --data "$D" "$T/in.jsonl" >"$T/import2.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a plain import after the crash: exit $rc: $(cat "$T/import2.out")"
grep -q "an import was interrupted after line [0-9]* ($before subjects stored).*--resume" "$T/import2.out" ||
  fail "the refusal: $(cat "$T/import2.out")"
# another input cannot resume it: its lines differ (here it is shorter), and nothing is stored
rc=0
"$CUSTOS" import --data "$D" --resume "$CUSTOS_SRC/data/customers-2k.jsonl" >"$T/import3.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "not the one the interrupted import read" "$T/import3.out" ||
  fail "resuming with another input: exit $rc: $(cat "$T/import3.out")"
[ "$(sqlite3 "$D/data.db" "SELECT count(*) FROM subject_ids")" = "$before" ] ||
  fail "a refused resume stored something"

step "resume with the same input: every line stored once"
"$CUSTOS" import --data "$D" --resume "$T/in.jsonl" >"$T/import4.out" 2>&1 ||
  fail "resume: $(tail -n2 "$T/import4.out")"
grep -q "^resumed after line [0-9]* ($before subjects imported before): imported $((100000 - before)) subjects (100000 lines, 0 rejected)" \
  "$T/import4.out" || fail "resume: $(cat "$T/import4.out")"
[ "$(sqlite3 "$D/data.db" "SELECT count(*) FROM subject_ids")" = 100000 ] ||
  fail "after the resume: $(sqlite3 "$D/data.db" "SELECT count(*) FROM subject_ids") subjects for 100000 lines"
[ -z "$(sqlite3 "$D/data.db" "SELECT v FROM meta WHERE k = 'import_mark'")" ] ||
  fail "a finished import left its mark"
[ "$(sqlite3 "$D/data.db" "SELECT hex(substr(v, 1, 1)) FROM meta WHERE k = 'import_done'")" = 02 ] ||
  fail "a finished import left no record of what it read"

step "the finished import run again is refused (as after a kill between its end and its summary)"
"$CUSTOS" import --data "$D" "$T/in.jsonl" >"$T/import5.out" 2>&1 && fail "the same import ran twice"
grep -q "this input was imported already" "$T/import5.out" || fail "rerun: $(cat "$T/import5.out")"
[ "$(sqlite3 "$D/data.db" "SELECT count(*) FROM subject_ids")" = 100000 ] || fail "the refused rerun stored subjects"
start_server "$D"
# the sample is in the input 50 times: each of its people is there exactly 50 times, not 51
for e in christiana.dietrich688@naver.com americo.brekke47797@naver.com; do
  http GET "/v1/subjects?email=$e&purpose=account"
  expect_status 200 "search after the resume"
  n=$(perl -MJSON::PP -e 'local $/; print scalar @{decode_json(<STDIN>)->{ids}}' <"$T/resp")
  [ "$n" = 50 ] || fail "$e: $n subjects after the resume, want 50"
done
stop_server

step "a new import after that one"
# the sample begins like the input (its first 64 KiB): the same customers, refused as such
"$CUSTOS" import --data "$D" "$CUSTOS_SRC/data/customers-2k.jsonl" >"$T/import6.out" 2>&1 &&
  fail "the sample, which begins as the finished input, was imported"
grep -q "this input was imported already" "$T/import6.out" || fail "the sample: $(cat "$T/import6.out")"
# another input goes in
perl -pe 's/"email":"/"email":"new./' "$CUSTOS_SRC/data/customers-2k.jsonl" >"$T/new.jsonl"
"$CUSTOS" import --data "$D" "$T/new.jsonl" >"$T/import7.out" 2>&1 ||
  fail "import after the resume: $(tail -n2 "$T/import7.out")"
grep -q 'imported 2000 subjects' "$T/import7.out" || fail "import after the resume: $(cat "$T/import7.out")"
# a finished import clears its row: the next open has nothing to look for
[ "$(sqlite3 "$D/control.db" "SELECT hex(v) FROM meta WHERE k = 'import_unfinished'")" = 00 ] ||
  fail "a finished import left import_unfinished set"
"$CUSTOS" ledger verify --data "$D" >/dev/null 2>&1 || fail "ledger verify at the end"
finish
