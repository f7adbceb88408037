#!/usr/bin/env bash
# test_log.sh - a client cannot write lines of its own into the server's log.
#
# libmicrohttpd names the request's path in some of its messages ("Failed to send the response
# headers for the request for `PATH'", when a client resets the connection while its pipelined
# requests are answered), and that path is already percent-decoded, so it holds any byte the
# client chose.  Paths carrying "%0D" and a fake timestamp, an ESC sequence and a BEL are sent
# until the server has logged one of them; then every line of the log must be one line of valid
# UTF-8 without control characters, and begin with the server's own timestamp.
. "$(dirname "$0")/lib.sh"

D="$T/data"
init_vault "$D"
start_server "$D"

# rst_burst N: N connections, each sending 20 pipelined requests and closing with a reset
rst_burst() {
  perl -MSocket -e '
    my ($port, $n) = @ARGV;
    for my $i (1 .. $n) {
      socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
      connect($s, pack_sockaddr_in($port, inet_aton("127.0.0.1"))) or die "connect: $!";
      setsockopt($s, SOL_SOCKET, SO_LINGER, pack("ii", 1, 0)) or die "linger: $!";
      my $r = "GET /v1/health%0D2026-01-01T00:00:00.000Z%20custos:%20FORGED%20$i%1B]0;t%07%C3"
            . " HTTP/1.1\r\nHost: x\r\n\r\n";
      send($s, $r x 20, 0);
      select(undef, undef, undef, 0.001) if $i % 3 == 0;
      close($s);
    }' "$PORT" "$1"
}

step "resetting connections with forged paths until one is logged"
for round in $(seq 1 40); do
  rst_burst 200
  grep -aq FORGED "$SERVER_LOG" && break
done
grep -aq FORGED "$SERVER_LOG" || fail "the server never logged a request path (40 rounds): nothing was checked"

step "every log line is the server's own"
perl -ne '
  BEGIN { $bad = 0 }
  chomp;
  if (/[\x00-\x1f\x7f]/) { print STDERR "control character in line $.: $_\n"; $bad = 1 }
  unless (/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z custos: /) {
    print STDERR "line $. is not the server'"'"'s: $_\n"; $bad = 1
  }
  utf8::decode(my $copy = $_) or do { print STDERR "line $. is not UTF-8\n"; $bad = 1 };
  END { exit $bad }
' "$SERVER_LOG" || fail "a client wrote into the log (see above)"
grep -a FORGED "$SERVER_LOG" | grep -aq 'for the request for `/v1/health?2026-01-01T00:00:00.000Z custos: FORGED' ||
  fail "the forged path was not logged with its control characters replaced: $(grep -a -m1 FORGED "$SERVER_LOG")"

stop_server
finish
