#!/usr/bin/env bash
# test_plaintext.sh - no personal value is ever in the vault's files in plaintext.
#
# Loads the 2,000 sample customers, writes, patches and erases through the HTTP API, and greps
# every file of the data directory (data.db, control.db and their -wal/-shm/-journal files, the
# ledger, keys, everything) for the values of a sample of at least 200 customers and of every
# value written through the API: names, emails, phones (as written and as digits), birth dates,
# customs codes, address-book recipients, phones, addresses and entrance codes.  Korean text is
# searched as raw UTF-8 bytes and as JSON \u escapes.  The files are checked while the server is
# running and writing (mid-write), and after it stopped.  The server's log is checked too.
. "$(dirname "$0")/lib.sh"

D="$T/data"
NEEDLES="$T/needles"
DATA="$CUSTOS_SRC/data/customers-2k.jsonl"
[ -r "$DATA" ] || fail "no sample data at $DATA"

# needles_from_jsonl EVERY FILE: every personal value of every EVERY-th customer, one a line
needles_from_jsonl() {
  perl -MJSON::PP -ne '
    BEGIN { $every = shift @ARGV; binmode STDOUT, ":utf8" }
    next unless ($. - 1) % $every == 0;
    my $c = JSON::PP->new->utf8->decode($_);
    my @v = grep { defined } @$c{qw(name email phone birth_date customs_code)};
    for my $a (@{ $c->{address_book} || [] }) { push @v, grep { defined } @$a{qw(recipient phone address entrance_code)} }
    print "$_\n" for @v;
  ' "$1" "$2" | add_variants
}

# add_variants: for each value (stdin, UTF-8): the value, its digits when it is a phone number,
# its lowercase form, and the JSON \u escapes of non-ASCII text (lower and upper case hex)
add_variants() {
  perl -CSD -ne '
    chomp; next unless length;
    print "$_\n";
    print lc($_), "\n" if lc($_) ne $_;
    if (/^[0-9+() -]+$/) { (my $d = $_) =~ s/\D//g; print "$d\n" if length($d) >= 7 }
    if (/[^\x00-\x7f]/) {
      (my $u = $_) =~ s/([^\x00-\x7f])/sprintf("\\u%04x", ord $1)/ge; print "$u\n";
      (my $U = $_) =~ s/([^\x00-\x7f])/sprintf("\\u%04X", ord $1)/ge; print "$U\n";
    }
  '
}

# scan WHAT FILE...: fail if a needle occurs in any FILE (binary-safe, byte comparison; one grep
# per needle list for all files, so each automaton is built once).
#
# Needles of 6 bytes or more fail on one occurrence.  The 5-byte ones (the sample's entrance
# codes, "#" and 4 digits: 219 of them) fail from two distinct ones on: ciphertext is uniformly
# random, so in the ~40 MB this test scans one of them turns up by chance in about one run of
# 130 (it did, once, in CI), two in about one of 30,000.  A leak of the sample's values is not
# one 5-byte string alone: whatever path leaks them leaks them for every customer (they are all
# imported the same way), and with their names, emails and phones (long needles).  The values
# this test writes itself are 7 bytes or more, so any one of them still fails alone.
scan() {
  local what=$1 hit
  shift
  if hit=$(LC_ALL=C grep -a -F -o -H -m1 -f "$NEEDLES.long" -- "$@" 2>/dev/null | head -n1); then
    if [ -n "$hit" ]; then fail "$what: plaintext personal value in ${hit%%:*}: '${hit#*:}'"; fi
  fi
  hit=$(LC_ALL=C grep -a -F -o -h -f "$NEEDLES.short" -- "$@" 2>/dev/null | sort -u | head -n 3 | tr '\n' ' ') || true
  if [ "$(wc -w <<<"$hit")" -ge 2 ]; then fail "$what: plaintext personal values (short) in $*: $hit"; fi
  return 0
}

# scan_dir WHAT: every file under the data directory, and the server logs
scan_dir() {
  local files=()
  mapfile -d '' files < <(find "$D" -type f -print0 2>/dev/null)
  [ "${#files[@]}" -gt 5 ] || fail "$1: only ${#files[@]} files under $D"
  scan "$1" "${files[@]}" "$T"/server.*.log
  SCANNED=$((SCANNED + 1))
}
SCANNED=0

step "needles: every value of every 8th sample customer (250 customers)"
needles_from_jsonl 8 "$DATA" >"$NEEDLES.sample"
[ "$(grep -c '@' "$NEEDLES.sample")" -ge 200 ] || fail "fewer than 200 sampled customers"

# values written through the API in this test
{
  for i in $(seq 1 40); do
    printf '검사용이름%d\nplain-check-%d@example.org\n010-7%03d-%04d\n서울특별시 종로구 검사로%d길 %d\n#E%05d\nP8%011d\n' \
      "$i" "$i" "$i" "$((i * 37 % 10000))" "$i" "$((1000 + i))" "$i" "$i"
  done
  for i in $(seq 1 12); do
    printf 'patched-%d@example.org\nP7%011d\n부산광역시 해운대구 패치로%d번길 %d\n#P%05d\n수정된이름%d\n' \
      "$i" "$i" "$i" "$((2000 + i))" "$i" "$i"
  done
  for i in $(seq 1 300); do
    printf '동시쓰기%d\nbusy-%d@example.org\n010-6%03d-%04d\n#B%05d\n' "$i" "$i" "$((i % 1000))" "$((i * 13 % 10000))" "$i"
  done
} | add_variants >"$NEEDLES.api"
sort -u "$NEEDLES.sample" "$NEEDLES.api" | LC_ALL=C awk 'length($0) >= 5' >"$NEEDLES"
LC_ALL=C awk 'length($0) >= 6' "$NEEDLES" >"$NEEDLES.long"
LC_ALL=C awk 'length($0) == 5' "$NEEDLES" >"$NEEDLES.short"
step "$(wc -l <"$NEEDLES") needles ($(wc -l <"$NEEDLES.short") of 5 bytes)"
grep -q '^#E00001$' "$NEEDLES.long" || fail "the values written through the API are not all long needles"

# the scanner works: a file holding one sample value is caught, and two short ones
printf 'xx%syy' "$(sed -n 1p "$NEEDLES.sample")" >"$T/control.bin"
if (scan "control" "$T/control.bin") 2>/dev/null; then fail "the scanner misses a planted value"; fi
printf 'xx%syy%szz' "$(sed -n 1p "$NEEDLES.short")" "$(sed -n 2p "$NEEDLES.short")" >"$T/control.bin"
if (scan "control" "$T/control.bin") 2>/dev/null; then fail "the scanner misses two planted short values"; fi

step "init and import"
init_vault "$D"
out=$("$CUSTOS" import --data "$D" "$DATA" 2>"$T/import.err") || fail "import failed: $(cat "$T/import.err")"
grep -q '^imported 2000 subjects' <<<"$out" || fail "import: $out"
scan "import messages" "$T/import.err"
TOKEN=$(add_principal_token "$D" svc service service)
scan_dir "after import (server stopped)"

step "serve; write, patch, erase through the API"
start_server "$D"
for i in $(seq 1 40); do
  body=$(printf '{"name":"검사용이름%d","email":"plain-check-%d@example.org","phone":"010-7%03d-%04d",' \
    "$i" "$i" "$i" "$((i * 37 % 10000))")
  body+=$(printf '"customs_code":"P8%011d","address_book":[{"recipient":"검사용이름%d","address":"서울특별시 종로구 검사로%d길 %d","entrance_code":"#E%05d"}]}' \
    "$i" "$i" "$i" "$((1000 + i))" "$i")
  http POST /v1/subjects "$body"
  expect_status 201 "create $i"
done
# ids of a few sampled customers, by email
mapfile -t emails < <(perl -MJSON::PP -ne 'print JSON::PP->new->utf8->decode($_)->{email}, "\n" if ($. - 1) % 8 == 0' "$DATA" | head -n 17)
ids=()
for e in "${emails[@]}"; do
  http GET "/v1/subjects?email=$e&purpose=account"
  expect_status 200 "search $e"
  id=$(jget ids.0 "$T/resp") || fail "search $e found nothing"
  ids+=("$id")
done
for i in $(seq 1 12); do
  id=${ids[$((i - 1))]}
  body=$(printf '{"email":"patched-%d@example.org","customs_code":"P7%011d","name":"수정된이름%d",' "$i" "$i" "$i")
  body+=$(printf '"address_book":[{"recipient":"수정된이름%d","address":"부산광역시 해운대구 패치로%d번길 %d","entrance_code":"#P%05d"}]}' \
    "$i" "$i" "$((2000 + i))" "$i")
  http PATCH "/v1/subjects/$id" "$body"
  expect_status 200 "patch $id"
  http GET "/v1/subjects/$id?purpose=account"
  expect_status 200 "read back $id"
  [ "$(jget fields.customs_code "$T/resp")" = "$(printf 'P7%011d' "$i")" ] || fail "patch $id did not stick"
done
for i in $(seq 13 17); do
  http DELETE "/v1/subjects/${ids[$((i - 1))]}"
  expect_status 200 "erase"
  http GET "/v1/subjects/${ids[$((i - 1))]}?purpose=account"
  expect_status 410 "read after erase"
done
# plaintext comes back out through the API (so the values above really are in the vault)
http GET "/v1/subjects/${ids[0]}?purpose=account"
grep -q 'patched-1@example.org' "$T/resp" || fail "the API does not return the patched value"

step "scan while the server writes (mid-write)"
# one curl process, 300 requests on a keep-alive connection: the server is busy writing while we scan
for i in $(seq 1 300); do
  body=$(printf '{"name":"동시쓰기%d","email":"busy-%d@example.org","phone":"010-6%03d-%04d","address_book":[{"entrance_code":"#B%05d"}]}' \
    "$i" "$i" "$((i % 1000))" "$((i * 13 % 10000))" "$i")
  printf 'url = "%s/v1/subjects"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\n' "$URL" "$TOKEN"
  printf 'data-binary = "%s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nnext\n' "${body//\"/\\\"}"
done | sed '$d' >"$T/burst.curl" # no "next" after the last request
(
  while [ ! -e "$T/stop-burst" ]; do curl -sS -K "$T/burst.curl" 2>/dev/null || true; done
) >"$T/burst.status" &
writer=$!
HELPER_PIDS+=("$writer")
rounds=0
while [ "$rounds" -lt 4 ]; do
  kill -0 "$writer" 2>/dev/null || fail "the write burst stopped early"
  sleep 0.3
  scan_dir "while writing (round $rounds)"
  ls "$D"/*-wal >/dev/null 2>&1 || fail "no -wal file while the server runs (WAL mode expected)"
  rounds=$((rounds + 1))
done
touch "$T/stop-burst"
wait "$writer" || true
n201=$(grep -c '^201$' "$T/burst.status" || true)
[ "$n201" -ge 50 ] || fail "burst: only $n201 writes done"
grep -qv '^201$' "$T/burst.status" && fail "burst: $(sort "$T/burst.status" | uniq -c | tr '\n' ' ')"
step "$rounds scans during a burst of $n201 writes"
scan_dir "server running, idle"

step "stop; scan again"
stop_server
scan_dir "server stopped"
# the erased and patched subjects' old values are gone from the files too (they were never
# there in plaintext; after erasure the compaction must not have exposed anything)
"$CUSTOS" ledger verify --data "$D" >/dev/null || fail "ledger does not verify"
step "ok: $SCANNED full scans of $(find "$D" -type f | wc -l) files, $(wc -l <"$NEEDLES") needles"
