#!/usr/bin/env bash
# test_webhook_dns_stop.sh - SIGTERM stops the server at once while an erasure notice is still
# resolving its receiver's host name, and the notice stays due.
#
# The webhook thread delivered with libcurl's threaded resolver; stopping it joined a resolver
# thread that was waiting for a DNS answer, so a server whose DNS server hung took the
# resolver's whole timeout to stop (13.6 s with timeout:5 attempts:3; far past a service
# manager's patience with larger settings).  Here the server runs in a private mount namespace
# whose /etc/resolv.conf names a DNS server that never answers (timeout:10 attempts:3, 30 s and
# more); the stop must take a few seconds at most.  Needs root for the namespace and port 53:
# skipped (exit 77) where that is not possible.
. "$(dirname "$0")/lib.sh"

NS=127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 2)).$((RANDOM % 250 + 2)) # one of its own: runs may overlap
[ "$(id -u)" = 0 ] && command -v unshare >/dev/null && [ -f /etc/resolv.conf ] &&
  unshare -m sh -c 'mount --bind /etc/resolv.conf /etc/resolv.conf' 2>/dev/null || {
  echo "SKIP: needs root, unshare -m and a bind mount over /etc/resolv.conf" >&2
  exit 77
}
# a libcurl that resolves in the calling thread would block the webhook thread in getaddrinfo:
# what is tested here is the threaded resolver's join
if command -v curl-config >/dev/null && ! curl-config --features | grep -x AsynchDNS >/dev/null; then
  echo "SKIP: this libcurl has no threaded resolver" >&2
  exit 77
fi
# the DNS server that never answers
perl -MIO::Socket::INET -e '
  my $s = IO::Socket::INET->new(LocalAddr => $ARGV[0], LocalPort => 53, Proto => "udp") or exit 3;
  open my $r, ">", $ARGV[1] or die; close $r;
  while (1) { my $b; $s->recv($b, 4096) }' "$NS" "$T/dns.ready" &
HELPER_PIDS+=($!)
for i in $(seq 100); do [ -e "$T/dns.ready" ] && break; kill -0 "${HELPER_PIDS[0]}" 2>/dev/null || break; sleep 0.05; done
[ -e "$T/dns.ready" ] || { echo "SKIP: cannot bind $NS:53" >&2; exit 77; }
printf 'nameserver %s\noptions timeout:10 attempts:3\n' "$NS" >"$T/resolv.conf"

D="$T/data"
init_vault "$D"
TOKEN=$(add_principal_token "$D" svc service service)

# inside the namespace: serve, create a subject, link it to a receiver whose name never resolves,
# erase it (the notice is then being delivered), SIGTERM; prints the stop's duration in ms
cat >"$T/inside.sh" <<'INSIDE'
set -eu
mount --bind "$T/resolv.conf" /etc/resolv.conf
"$CUSTOS" serve --data "$D" --listen 127.0.0.1:0 --port-file "$T/port" 2>"$T/serve.log" &
pid=$!
# wall time, as lib.sh's wait_port and wait_health give a starting server (a loaded machine)
end=$((SECONDS + SERVER_START_S))
until [ -s "$T/port" ] && [ "$(tail -c1 "$T/port" | od -An -c | tr -d ' ')" = '\n' ]; do
  kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ] || { echo "serve wrote no port" >&2; exit 1; }
  sleep 0.05
done
U=http://127.0.0.1:$(tr -dc 0-9 <"$T/port")
until curl -fsS -m 10 -o /dev/null "$U/v1/health" 2>/dev/null; do
  [ "$SECONDS" -lt "$end" ] || { echo "serve does not answer /v1/health" >&2; exit 1; }
  sleep 0.05
done
id=$(curl -fsS -H "Authorization: Bearer $TOKEN" --data-binary '{"name":"홍길동"}' "$U/v1/subjects" |
  sed -n 's/.*"id":"\([0-9a-f]\{32\}\)".*/\1/p')
curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" \
  --data-binary '{"webhook":"http://receiver.invalid-dns.test/hook"}' "$U/v1/subjects/$id/links/pay"
curl -fsS -o /dev/null -X DELETE -H "Authorization: Bearer $TOKEN" "$U/v1/subjects/$id"
echo "$id" >"$T/id"
sleep 1.5 # the webhook thread picks the notice up at once and starts resolving
t0=$(date +%s%N)
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
t1=$(date +%s%N)
echo "$rc $(((t1 - t0) / 1000000))"
INSIDE
out=$(T="$T" D="$D" TOKEN="$TOKEN" CUSTOS="$CUSTOS" SERVER_START_S="$SERVER_START_S" timeout $((SERVER_START_S + 120)) unshare -m bash "$T/inside.sh") ||
  fail "the scenario failed: $out $(cat "$T/serve.log" 2>/dev/null)"
read -r rc ms <<<"$out"
[ "$rc" = 0 ] || fail "serve exited $rc on SIGTERM: $(cat "$T/serve.log")"
step "SIGTERM with a notice resolving its host name: stopped in $ms ms"
[ "$ms" -lt 5000 ] || fail "the stop waited ${ms} ms for the DNS resolver (the resolver's timeout is 30 s)"

# the notice was not lost: still due
start_server "$D"
http GET "/v1/subjects/$(cat "$T/id")/erasure" "" "$TOKEN"
expect_status 200 "erasure status"
grep -q '"state":"pending"' "$T/resp" || fail "the interrupted notice is not pending: $RESP"
stop_server
finish
