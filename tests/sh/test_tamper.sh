#!/usr/bin/env bash
# test_tamper.sh - edits to a stored ledger are caught by `custos ledger verify`, and a rolled
# back, forked or foreign ledger by `custos ledger witness`.
#
# The ledger's on-disk format is docs/format.md ("entries: the append-only log"): a 16-byte
# header, then batches (32-byte header: magic, count, bytes, zero, first_index, check) of
# records (len u32 | entry | check[8] = SHA-256(0x00 || entry)[:8]); little-endian.  Each
# damage is made twice on a copy of a stopped vault: naively (bytes edited in place, framing
# left stale) and consistently (every length, count, first index and check recomputed, as an
# attacker with write access would), so that only the Merkle tree and the signed checkpoints
# can tell.  verify must exit non-zero and name the first bad index.
. "$(dirname "$0")/lib.sh"

D="$T/data"
ORIGIN="tamper.custos.example/ledger"

# ---- a tool for the entries file ----------------------------------------------------------------
cat >"$T/ledger-tool.pl" <<'PERL'
use strict;
use warnings;
use Digest::SHA qw(sha256);

my ($cmd, $file, $k) = @ARGV;
open my $fh, "<:raw", $file or die "open $file: $!";
local $/;
my $buf = <$fh>;
close $fh;
die "not an entries file\n" unless substr($buf, 0, 16) eq "CSTS-LEDGER-LOG\x01";

# parse: batches of records
my (@batches, @recs);
my $off = 16;
my $end = length $buf;
$end-- while $end > 16 && substr($buf, $end - 1, 1) eq "\x00";    # zeros the writer fills ahead
while ($off + 32 <= length $buf && $off < $end) {
    my ($magic, $count, $bytes, $zero, $first) = unpack "V V V V Q<", substr($buf, $off, 24);
    die "bad batch magic at $off\n" unless $magic == 0x48435442;
    my $b = { off => $off, count => $count, first => $first, recs => [] };
    my $r = $off + 32;
    for my $i (0 .. $count - 1) {
        my $len = unpack "V", substr($buf, $r, 4);
        my $rec = { off => $r, len => $len, index => $first + $i, entry => substr($buf, $r + 4, $len),
                    batch => scalar @batches };
        push @{ $b->{recs} }, $rec;
        push @recs, $rec;
        $r += 4 + $len + 8;
    }
    die "batch at $off: records end at $r, header says ", $off + 32 + $bytes, "\n" unless $r == $off + 32 + $bytes;
    push @batches, $b;
    $off = $r;
}
die "trailing bytes after the last batch\n" unless $off >= $end;

sub rec_bytes { my ($e) = @_; return pack("V", length $e) . $e . substr(sha256("\x00" . $e), 0, 8) }

# write the records back in the same batch structure (minus empty batches), all framing recomputed
sub reframe {
    my @groups = @_;
    my $out = "CSTS-LEDGER-LOG\x01";
    my $index = 0;
    for my $g (@groups) {
        next unless @$g;
        my $body = join "", map { rec_bytes($_) } @$g;
        my $h = pack "V V V V Q<", 0x48435442, scalar @$g, length $body, 0, $index;
        $out .= $h . substr(sha256($h), 0, 8) . $body;
        $index += @$g;
    }
    return $out;
}

sub groups { return map { [ map { $_->{entry} } @{ $_->{recs} } ] } @batches }

sub save { my ($data) = @_; open my $o, ">:raw", $file or die; print $o $data; close $o or die }

if ($cmd eq "count") { print scalar(@recs), "\n"; exit 0 }
if ($cmd eq "batches") { print scalar(@batches), "\n"; exit 0 }
if ($cmd eq "multi") { print scalar(grep { $_->{count} > 1 } @batches), "\n"; exit 0 }
die "index $k out of range\n" unless defined $k && $k < @recs;
my $r = $recs[$k];
my $expect = $k;    # the first bad index verify should name

# Two requests alike in the same millisecond make byte-identical entries: removing one of a run
# of equal entries reads as removing the last of them, so that is the index verify names.
sub last_of_run {
    my ($i) = @_;
    $i++ while $i + 1 < @recs && $recs[$i + 1]{entry} eq $recs[$_[0]]{entry};
    return $i;
}

if ($cmd eq "flip") {                    # one byte of entry k, in place
    substr($buf, $r->{off} + 4 + int($r->{len} / 2), 1) ^= "\x01";
    save($buf);
} elsif ($cmd eq "flipc") {              # ... and its record check recomputed
    my $e = $r->{entry};
    substr($e, int(length($e) / 2), 1) ^= "\x01";
    substr($buf, $r->{off}, 4 + $r->{len} + 8) = rec_bytes($e);
    save($buf);
} elsif ($cmd eq "cut") {                # record k cut out, framing left as it was
    substr($buf, $r->{off}, 4 + $r->{len} + 8) = "";
    $expect = last_of_run($k);
    save($buf);
} elsif ($cmd eq "cutc") {               # record k removed, everything re-framed
    $expect = last_of_run($k);
    my @g = groups();
    splice @{ $g[$r->{batch}] }, $k - $batches[$r->{batch}]{first}, 1;
    save(reframe(@g));
} elsif ($cmd eq "swap" || $cmd eq "swapc") {   # records k and k+1 exchanged
    die "no entry after $k\n" unless $k + 1 < @recs;
    my $s = $recs[$k + 1];
    die "entries $k and $k+1 are equal\n" if $r->{entry} eq $s->{entry};
    if ($cmd eq "swap") {
        my ($x, $y) = (substr($buf, $r->{off}, 12 + $r->{len}), substr($buf, $s->{off}, 12 + $s->{len}));
        # the later one first, so the earlier offset stays valid
        substr($buf, $s->{off}, 12 + $s->{len}) = $x;
        substr($buf, $r->{off}, 12 + $r->{len}) = $y;
        save($buf);
    } else {
        my @g = groups();
        my @flat = map { @$_ } @g;
        @flat[$k, $k + 1] = @flat[$k + 1, $k];
        my @n;
        my $i = 0;
        for my $g (@g) { push @n, [ @flat[$i .. $i + @$g - 1] ]; $i += @$g }
        save(reframe(@n));
    }
} elsif ($cmd eq "trunc") {              # the tail cut at the batch holding entry k
    my $b = $batches[$r->{batch}];
    $expect = $b->{first};
    save(substr($buf, 0, $b->{off}));
} elsif ($cmd eq "truncmid") {           # the tail cut inside record k
    save(substr($buf, 0, $r->{off} + 6));
} else {
    die "unknown command $cmd\n";
}
print "$expect\n";
PERL
tool() { perl "$T/ledger-tool.pl" "$@"; }

# requests N TAG: N creates and N searches through one curl (keep-alive), sequential, then the
# first N/4 of each again in parallel (so some batches hold several entries)
requests() {
  local n=$1 tag=$2 i
  for i in $(seq 1 "$n"); do
    printf 'url = "%s/v1/subjects"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\n' \
      "$URL" "$TOKEN"
    printf 'data-binary = "{\\"name\\":\\"변조%s%d\\",\\"email\\":\\"t-%s-%d@example.org\\"}"\noutput = "/dev/null"\n' \
      "$tag" "$i" "$tag" "$i"
    printf 'write-out = "%%{http_code}\\n"\nnext\n'
    printf 'url = "%s/v1/subjects?email=t-%s-%d@example.org&purpose=account"\n' "$URL" "$tag" "$i"
    printf 'header = "Authorization: Bearer %s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nnext\n' "$TOKEN"
  done | sed '$d' >"$T/req.curl" # no "next" after the last request
  curl -sS -K "$T/req.curl" >"$T/req.status" || fail "requests failed"
  head -n $((n / 4 * 12 - 1)) "$T/req.curl" >"$T/req.par.curl"
  curl -sS --no-progress-meter -Z --parallel-max 8 -K "$T/req.par.curl" >>"$T/req.status" || fail "parallel requests failed"
  if grep -qv '^20[01]$' "$T/req.status"; then fail "requests: $(sort "$T/req.status" | uniq -c | tr '\n' ' ')"; fi
}

# checkpoint_size: the size in the server's latest signed checkpoint (0 when none)
checkpoint_size() {
  curl -fsS "$URL/v1/ledger/checkpoint" 2>/dev/null | sed -n 2p | grep -x '[0-9]*' || echo 0
}

# wait_checkpoint MIN: wait until the server has signed a checkpoint of at least MIN entries
# (checkpoints come about once a second while entries arrive)
wait_checkpoint() {
  local i
  for i in $(seq 150); do
    [ "$(checkpoint_size)" -ge "$1" ] && return 0
    sleep 0.1
  done
  fail "no checkpoint of $1 entries after 15 s (latest: $(checkpoint_size))"
}

# witness_ok WHAT / witness_bad WHAT PATTERN: run the witness against $URL with state $T/witness
witness() {
  WRC=0
  "$CUSTOS" ledger witness --url "$URL" --vkey "$VKEY" --state "${WSTATE:-$T/witness}" "$@" >"$T/w.out" 2>&1 || WRC=$?
}
# witness_age MAX_AGE RC PATTERN WHAT: a witness run with --max-age MAX_AGE must exit RC and say PATTERN
witness_age() {
  witness --max-age "$1"
  [ "$WRC" -eq "$2" ] && grep -q "$3" "$T/w.out" || fail "$4, --max-age $1: exit $WRC: $(cat "$T/w.out")"
}
witness_ok() {
  witness
  [ "$WRC" -eq 0 ] || fail "$1: witness exit $WRC: $(cat "$T/w.out")"
}
witness_bad() {
  witness
  [ "$WRC" -eq 1 ] || fail "$1: witness exit $WRC, want 1 (tampering detected): $(cat "$T/w.out")"
  grep -q "$2" "$T/w.out" || fail "$1: witness does not say $2: $(cat "$T/w.out")"
}

# ---- a ledger of a few hundred entries, and an older copy -------------------------------------
step "a vault and a few hundred ledger entries"
init_vault "$D" --origin "$ORIGIN"
TOKEN=$(add_principal_token "$D" svc service service)
VKEY=$("$CUSTOS" ledger key --data "$D" | tail -n1)
[[ "$VKEY" == "$ORIGIN+"* ]] || fail "ledger key: '$VKEY'"
start_server "$D"
requests 80 a
stop_server
cp -a "$D" "$T/old" # the older copy
OLD_SIZE=$(ledger_size "$T/old")
[ -n "$OLD_SIZE" ] || fail "the older copy does not verify"

start_server "$D"
wait_checkpoint "$OLD_SIZE"
witness_ok "first witness run"
grep -q 'first checkpoint' "$T/w.out" || fail "first witness run: $(cat "$T/w.out")"
requests 80 b
wait_checkpoint $((OLD_SIZE + 150))
witness_ok "second witness run (the ledger grew)"
grep -q 'consistent' "$T/w.out" || fail "second witness run: $(cat "$T/w.out")"
witness_ok "third witness run (same checkpoint or a later one)"

# the state file is replaced through a file of its own: a symlink planted next to it is not
# followed, and nothing is left behind (review finding: FILE.tmp was opened with fopen); the
# ledger grows first, since an unchanged checkpoint leaves the state file alone
requests 5 s
wait_checkpoint $(($(sed -n 2p "$T/witness") + 5))
echo "not yours" >"$T/victim"
ln -s "$T/victim" "$T/witness.tmp"
witness_ok "witness with a planted symlink"
[ "$(cat "$T/victim")" = "not yours" ] || fail "the witness wrote through a planted symlink"
[ -f "$T/witness" ] && [ ! -L "$T/witness" ] || fail "the state file is not a regular file"
left=$(find "$T" -maxdepth 1 -name 'witness.*' ! -name witness.lock ! -name witness.tmp | wc -l)
[ "$left" -eq 0 ] || fail "the witness left $left temporary files"
rm -f "$T/witness.tmp" "$T/victim"

# one run at a time per state file: a second run waits for the first (review finding: two
# overlapping runs could each accept one of two forked roots)
flock -x "$T/witness.lock" sleep 3 &
holder=$!
sleep 0.5
WRC=0
timeout 1 "$CUSTOS" ledger witness --url "$URL" --vkey "$VKEY" --state "$T/witness" >"$T/w.out" 2>&1 || WRC=$?
[ "$WRC" -eq 124 ] || fail "a witness ran while another held the state (exit $WRC): $(cat "$T/w.out")"
wait "$holder"
witness_ok "witness after the other run ended"

# a ledger that stops growing: an unchanged checkpoint leaves the state file, and so its mtime
# (the time the ledger last grew), alone; with --max-age the witness says when that is too long ago
step "a ledger that stopped growing: STALE past --max-age"
touch -d '2 hours ago' "$T/witness"
witness_age 3600 1 '^STALE: the ledger has not grown past [0-9]* entries for 72[0-9][0-9] s' "unchanged for 2 hours"
witness_age 86400 0 'unchanged for 72[0-9][0-9] s' "unchanged for 2 hours"
[ "$(($(date +%s) - $(stat -c %Y "$T/witness")))" -ge 7000 ] || fail "an unchanged checkpoint rewrote the state file"
# a state file whose time is in the future (a clock that was ahead) cannot time the ledger's
# growth: past --max-age ahead it would hide a frozen ledger for as long as it is ahead
touch -d '+2 hours' "$T/witness"
witness_age 3600 1 '^STALE: the witness state was recorded 7[0-9][0-9][0-9] s in the future' "a state file 2 hours ahead"
witness_age 86400 0 '^ok: ' "a state file 2 hours ahead"
requests 5 g
wait_checkpoint $(($(sed -n 2p "$T/witness") + 5))
witness_age 3600 0 'consistent with the recorded checkpoint)$' "the ledger grew again"
[ "$(($(date +%s) - $(stat -c %Y "$T/witness")))" -lt 600 ] || fail "the grown checkpoint was not recorded"

# a server that signs a larger tree and will not prove it extends the recorded one: exit 1
requests 20 c
wait_checkpoint $(($(sed -n 2p "$T/witness") + 20))
curl -fsS "$URL/v1/ledger/checkpoint" >"$T/larger.cp" || fail "cannot fetch the checkpoint"
# fake_witness MODE: the witness against a server that serves $T/larger.cp and answers the
# proof with MODE: 404, garbage (200, not a proof) or close (no answer at all); WRC its exit
fake_witness() {
  rm -f "$T/fake.port"
  perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 5, ReuseAddr => 1) or die;
    open(my $pf, ">", $ARGV[1]) or die; print $pf $s->sockport; close $pf;
    my $cp = do { open(my $f, "<", $ARGV[0]) or die; local $/; <$f> };
    while (my $c = $s->accept) {
      my $line = <$c>; while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
      if ($line =~ m{^GET /v1/ledger/checkpoint }) {
        print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " . length($cp) . "\r\nConnection: close\r\n\r\n$cp";
      } elsif ($ARGV[2] eq "garbage") {
        print $c "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nnot json";
      } elsif ($ARGV[2] eq "404") {
        print $c "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      }
      close $c;
    }' "$T/larger.cp" "$T/fake.port" "$1" &
  fake=$!
  for i in $(seq 50); do [ -s "$T/fake.port" ] && break; sleep 0.1; done
  WRC=0
  "$CUSTOS" ledger witness --url "http://127.0.0.1:$(cat "$T/fake.port")" --vkey "$VKEY" --state "$T/witness" \
    >"$T/w.out" 2>&1 || WRC=$?
  kill "$fake" 2>/dev/null || true
  wait "$fake" 2>/dev/null || true
}
fake_witness 404
[ "$WRC" -eq 1 ] || fail "a refused consistency proof: witness exit $WRC, want 1: $(cat "$T/w.out")"
grep -q UNPROVEN "$T/w.out" || fail "a refused consistency proof: $(cat "$T/w.out")"
# ... and kept as evidence: the signed note, after the verdict's line
grep -q '^# .* UNPROVEN$' "$T/witness.evidence" && grep -qxF "$(head -n1 "$T/larger.cp")" "$T/witness.evidence" ||
  fail "the unproven checkpoint was not kept: $(cat "$T/witness.evidence" 2>&1)"
# a 200 that is no proof, or no answer at all, after a signed larger checkpoint: UNPROVEN too,
# not "unreachable" (exit 3) nor "fork" (red-team finding)
for mode in garbage close; do
  fake_witness $mode
  [ "$WRC" -eq 1 ] || fail "consistency proof answered '$mode': witness exit $WRC, want 1: $(cat "$T/w.out")"
  grep -q '^UNPROVEN: .*no consistency proof' "$T/w.out" || fail "consistency proof answered '$mode': $(cat "$T/w.out")"
done
[ "$(grep -c '^# .* UNPROVEN$' "$T/witness.evidence")" -eq 3 ] || fail "evidence: $(cat "$T/witness.evidence")"
# a state file given through a symbolic link is refused: its lock and its replacement would
# split it in two (red-team finding)
ln -s "$T/witness" "$T/witness-alias"
WRC=0
"$CUSTOS" ledger witness --url "$URL" --vkey "$VKEY" --state "$T/witness-alias" >"$T/w.out" 2>&1 || WRC=$?
[ "$WRC" -eq 1 ] && grep -q "is a symbolic link" "$T/w.out" || fail "a state through a symlink: $WRC $(cat "$T/w.out")"
rm -f "$T/witness-alias"
# a signed checkpoint of size 0 whose root is not the empty tree's: from it, any tree would pass
# for an extension without a proof (red-team finding); signed here with the vault's own key
python3 - "$D/keys/ledger.key" "$VKEY" "$T/zero.cp" <<'PY' || fail "cannot sign a size-0 checkpoint"
import base64, hashlib, subprocess, sys, tempfile, os
seed = bytes.fromhex(open(sys.argv[1]).read().split("\n")[1].strip())
name = sys.argv[2].split("+")[0]
pub = base64.b64decode(sys.argv[2].split("+", 2)[2])[1:]
text = "%s\n0\n%s\n" % (name, base64.b64encode(b"\x42" * 32).decode())
der = bytes.fromhex("302e020100300506032b657004220420") + seed
with tempfile.TemporaryDirectory() as d:
    k, m = os.path.join(d, "k.der"), os.path.join(d, "m")
    open(k, "wb").write(der)
    open(m, "wb").write(text.encode())
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-keyform", "DER", "-inkey", k, "-in", m],
                         check=True, capture_output=True).stdout
kid = hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4]
open(sys.argv[3], "w").write(text + "\n\u2014 %s %s\n" % (name, base64.b64encode(kid + sig).decode()))
PY
cp "$T/witness" "$T/witness.keep"
cp "$T/zero.cp" "$T/larger.cp"
fake_witness 404
[ "$WRC" -eq 1 ] && grep -q '^BAD CHECKPOINT: size 0' "$T/w.out" || fail "a size-0 checkpoint: $WRC $(cat "$T/w.out")"
cp "$T/zero.cp" "$T/witness" # as a recorded state: refused, not a free pass
WRC=0
"$CUSTOS" ledger witness --url "$URL" --vkey "$VKEY" --state "$T/witness" >"$T/w.out" 2>&1 || WRC=$?
[ "$WRC" -eq 1 ] && grep -q "does not hold a checkpoint signed by this key" "$T/w.out" ||
  fail "a size-0 state: $WRC $(cat "$T/w.out")"
mv "$T/witness.keep" "$T/witness"
witness_ok "the real server proves it"
# every ok names the root, so that witnesses can compare what each was shown
grep -q '^ok: .* size [0-9]* root [A-Za-z0-9+/]*= (consistent' "$T/w.out" || fail "no root in: $(cat "$T/w.out")"
stop_server
SIZE=$(ledger_size "$D")
[ -n "$SIZE" ] || fail "the untouched ledger does not verify"
[ "$SIZE" -ge 300 ] || fail "only $SIZE entries"
[ "$(tool count "$D/ledger/entries")" -eq "$SIZE" ] || fail "the tool counts $(tool count "$D/ledger/entries") entries, verify $SIZE"
[ "$(tool multi "$D/ledger/entries")" -ge 1 ] || fail "no batch with several entries"
step "$SIZE entries in $(tool batches "$D/ledger/entries") batches (older copy: $OLD_SIZE)"

# ---- verify catches every edit ------------------------------------------------------------------
# damage NAME CMD K [rm-derived]: copy the vault, damage entry K, verify must fail naming the index
damage() {
  local name=$1 cmd=$2 k=$3 c="$T/case-$1" want rc=0 got
  rm -rf "$c"
  cp -a "$D" "$c"
  want=$(tool "$cmd" "$c/ledger/entries" "$k") || fail "$name: the tool failed"
  [ "${4:-}" = rm-derived ] && rm -f "$c/ledger/tree" "$c/ledger/index" "$c/ledger/state"
  "$CUSTOS" ledger verify --data "$c" >"$T/v.out" 2>"$T/v.err" || rc=$?
  [ "$rc" -ne 0 ] || fail "$name: verify passed a damaged ledger: $(cat "$T/v.out")"
  got=$(sed -n 's/.*first bad index \([0-9]*\).*/\1/p' "$T/v.out" "$T/v.err" | head -n1)
  [ -n "$got" ] || fail "$name: verify does not print the first bad index: $(cat "$T/v.out" "$T/v.err")"
  if [ "${4:-}" = rm-derived ]; then
    # without the derived tree only the checkpoints can tell: an index at or before the damage
    [ "$got" -le "$want" ] || fail "$name: verify names index $got, the damage is at $want"
  else
    [ "$got" -eq "$want" ] || fail "$name: verify names index $got, want $want ($(cat "$T/v.out"))"
  fi
  step "$name: caught, first bad index $got"
  rm -rf "$c"
}

mid=$((SIZE / 2))
damage flip-byte flip "$mid"
damage flip-byte-first flip 0
damage flip-byte-last flip $((SIZE - 1))
damage flip-byte-forged flipc "$mid"
damage flip-byte-forged-last flipc $((SIZE - 1))
damage delete-entry cut "$mid"
damage delete-entry-forged cutc "$mid"
damage delete-first-entry-forged cutc 0
damage delete-entry-forged-no-derived cutc "$mid" rm-derived
damage reorder swap "$mid"
damage reorder-forged swapc "$mid"
damage reorder-forged-no-derived swapc "$mid" rm-derived
damage truncate-tail trunc $((SIZE - 20))
damage truncate-tail-mid-record truncmid $((SIZE - 5))
damage truncate-last-batch trunc $((SIZE - 1))
# the untouched vault still verifies
ledger_size "$D" >/dev/null && [ -n "$(ledger_size "$D")" ] || fail "the original ledger stopped verifying"
# a damaged derived tree: the log is sound, but the server's proofs come from that file.  verify
# says so apart from log damage (exit 1), and `ledger rebuild` recomputes it from the entries.
c="$T/case-tree"
rm -rf "$c"
cp -a "$D" "$c"
# slot of the subtree over entries 20..23 (level 2): 2m - popcount(m) + 2, m = 23
perl -e 'open my $f, "+<:raw", $ARGV[0] or die; seek $f, 44 * 32 + 5, 0; read $f, my $b, 1;
  seek $f, 44 * 32 + 5, 0; print $f chr(ord($b) ^ 0x40); close $f or die' "$c/ledger/tree"
rc=0
"$CUSTOS" ledger verify --data "$c" >"$T/v.out" 2>"$T/v.err" || rc=$?
[ "$rc" -eq 1 ] || fail "damaged tree: verify exit $rc, want 1: $(cat "$T/v.out" "$T/v.err")"
grep -q 'derived tree damaged at slot 44' "$T/v.out" || fail "damaged tree: $(cat "$T/v.out")"
grep -q 'ledger rebuild' "$T/v.err" || fail "damaged tree: no repair hint: $(cat "$T/v.err")"
"$CUSTOS" ledger rebuild --data "$c" >"$T/r.out" 2>&1 || fail "ledger rebuild: $(cat "$T/r.out")"
[ "$(ledger_size "$c")" = "$SIZE" ] || fail "after rebuild verify does not pass: $(cat "$T/r.out")"
rm -rf "$c"
step "damaged derived tree: reported at slot 44, rebuilt"
# under a live writer verify checks what the latest checkpoint covers, and says so
start_server "$D"
requests 8 live
wait_checkpoint $((SIZE + 1))
rc=0
"$CUSTOS" ledger verify --data "$D" >"$T/v.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "live verify: exit $rc: $(cat "$T/v.out")"
got=$(sed -n 's/^ledger intact: \([0-9]*\) entries.*(live: .*/\1/p' "$T/v.out")
[ -n "$got" ] && [ "$got" -gt "$SIZE" ] || fail "live verify: $(cat "$T/v.out")"
stop_server
step "live verify: $got entries checked while the server runs"
SIZE=$(ledger_size "$D") # the requests above added to it

# ---- the witness: rollback, fork, foreign key --------------------------------------------------
step "rollback: the ledger directory replaced by the older copy"
mv "$D/ledger" "$T/ledger.new"
cp -a "$T/old/ledger" "$D/ledger"
start_server "$D"
witness_bad "ledger rolled back to $OLD_SIZE entries" 'ROLLBACK\|FORK'
stop_server
rm -rf "$D/ledger"
mv "$T/ledger.new" "$D/ledger"

# a restore that opens such a vault tells the operator too (it records the rollback as serve does)
cp -a "$D" "$T/rs"
"$CUSTOS" backup --data "$T/rs" --out "$T/rs.backup" >"$T/rs.out" 2>&1 || fail "backup: $(cat "$T/rs.out")"
rm -rf "$T/rs/ledger"
cp -a "$T/old/ledger" "$T/rs/ledger"
"$CUSTOS" restore --data "$T/rs" --in "$T/rs.backup" >"$T/rs.out" 2>"$T/rs.err" ||
  fail "restore over a rolled-back ledger: $(cat "$T/rs.err")"
grep -q "holds at least [0-9]* entries fewer .*rolled back" "$T/rs.err" ||
  fail "restore does not say the ledger was rolled back: $(cat "$T/rs.out" "$T/rs.err")"
rm -rf "$T/rs" "$T/rs.backup"
step "restore over the older ledger copy: $(head -n1 "$T/rs.err")"

step "rollback: only the entries log replaced by the older copy's"
# the older file is longer than the newer marker (zeros written ahead): only the record just
# below the marker shows the hole, and the server must refuse to open rather than sign over it
cp "$D/ledger/entries" "$T/entries.new"
cp "$T/old/ledger/entries" "$D/ledger/entries"
rc=0
"$CUSTOS" serve --data "$D" --listen 127.0.0.1:0 --port-file "$T/old-entries.port" >"$T/old-entries.out" 2>&1 &
oldpid=$!
for i in $(seq 100); do kill -0 "$oldpid" 2>/dev/null || break; [ -s "$T/old-entries.port" ] && break; sleep 0.05; done
if kill -0 "$oldpid" 2>/dev/null; then
  crash_server "$oldpid"
  fail "the server opened a ledger whose entries log is an older copy"
fi
wait "$oldpid" || rc=$?
[ "$rc" -ne 0 ] || fail "the server exited 0 on an older entries log"
grep -q 'below the durable marker' "$T/old-entries.out" ||
  fail "the server does not say why it refused: $(cat "$T/old-entries.out")"
cp "$T/entries.new" "$D/ledger/entries"
step "caught: the server refuses to open ($(tail -n1 "$T/old-entries.out"))"

step "rollback: the whole data directory replaced by the older copy"
mv "$D" "$T/data.new"
cp -a "$T/old" "$D"
start_server "$D"
witness_bad "vault rolled back" 'ROLLBACK\|FORK'
stop_server
rm -rf "$D"
mv "$T/data.new" "$D"

step "fork: the older copy grown past the witnessed size with other entries"
cp -a "$T/old" "$T/fork"
start_server "$T/fork"
requests $(((SIZE - OLD_SIZE) / 2 + 20)) f
# the fork's signed size past the witnessed one
wait_checkpoint $(($(sed -n 2p "$T/witness") + 1))
witness_bad "forked ledger" 'FORK'
stop_server
[ "$(ledger_size "$T/fork")" -gt "$SIZE" ] || fail "the fork did not grow past $SIZE"

step "a server with another vault and key (same origin)"
init_vault "$T/other" --origin "$ORIGIN"
start_server "$T/other"
witness_bad "another vault's key" 'BAD SIGNATURE'
WSTATE="$T/witness.fresh" witness_bad "another vault's key, fresh state" 'BAD SIGNATURE'
[ ! -e "$T/witness.fresh" ] || fail "the witness recorded a checkpoint with a bad signature"
stop_server

step "after all that, the real server is still accepted"
start_server "$D"
witness_ok "the real ledger"
stop_server
step "ok"
