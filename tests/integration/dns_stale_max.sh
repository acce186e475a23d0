#!/usr/bin/env bash
# max_stale bounds serve-stale (RFC 8767 §4, DESIGN.md "DNS": "a stale
# answer up to max_stale is served"): max_stale 10 s, zone-b.test (TTL 5 s)
# in zone-b next to zone-a's static destination, 40 calls/s. Every resolver
# dies: zone-b.test is served stale once its TTL is over, then, max_stale
# after the expiry (+3 s), it is no longer served (event=dns_unresolvable,
# no targets) and its calls go to zone-a. No call fails.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

MAX_STALE=10
port=$(free_port); ADMIN_PORT=$(free_port); dns=$(free_port)
ua=$(free_port); ub=$(free_port)

dnsmasq --no-daemon --port="$dns" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --local=/test/ --pid-file="$TMP/dns.pid" \
    --log-queries --log-facility=- --local-ttl=5 \
    --naptr-record=zone-b.test,10,10,s,SIP+D2U,,_sip._udp.zone-b.test \
    --srv-host=_sip._udp.zone-b.test,b.zone-b.test,$ub,10,10 \
    --host-record=b.zone-b.test,127.0.0.1 >"$TMP/dns.log" 2>&1 &
DNS_PID=$!
PIDS+=("$DNS_PID")
wait_until 5 python3 "$LIB_DIR/dnsconf.py" query "$dns" b.zone-b.test A >/dev/null \
    || fail "dnsmasq did not come up"
start_uas uasa "$ua" uas_call.xml
start_uas uasb "$ub" uas_call.xml
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-b:50:sip:zone-b.test zone=zone-a:50:127.0.0.1:$ua \
    tier=primary:127.0.0.1:$dns max_stale=${MAX_STALE}s admin="$ADMIN_PORT"
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
N=(zone=zone-b name=sip:zone-b.test)
targets_are() { [ "$(m keel_dns_targets "${N[@]}")" = "$1" ]; }
stale_is() { [ "$(m keel_dns_stale "${N[@]}")" = "$1" ]; }
now() { date +%s.%3N; }
wait_until 5 targets_are 1 || fail "zone-b.test did not resolve"
t_answer=$(now)

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 1800 -r 40 -d 100 -timeout 90s &
UAC=$!
PIDS+=("$UAC")
sleep 1
stop_pid "$DNS_PID"
wait_until 10 stale_is 1 || fail "zone-b.test not served stale after its TTL"
t_stale=$(now)
pass "zone-b.test stale $(python3 -c "print('%.1f' % ($t_stale - $t_answer))") s after its answer (TTL 5 s)"
b1=$(uas_count uasb INVITE_Recv)
sleep 3
b2=$(uas_count uasb INVITE_Recv)
[ $((b2 - b1)) -gt 0 ] || fail "zone-b took no call on its stale answer"

# out by max_stale after the expiry: t_stale is at or after the expiry
limit=$((MAX_STALE + 3))
gone=1
wait_until 40 targets_are 0 || gone=0
t_out=$(now)
after=$(python3 -c "print('%.1f' % ($t_out - $t_stale))")
[ $gone -eq 1 ] || fail "zone-b.test still served stale 40 s after its expiry (max_stale ${MAX_STALE} s)"
echo "zone-b.test served stale for $after s (max_stale ${MAX_STALE} s)"
grep -q "event=dns_unresolvable zone=zone-b name=zone-b.test" "$TMP/keel.log" || fail "no dns_unresolvable logged"
python3 -c "import sys; sys.exit(0 if $after <= $limit else 1)" \
    || fail "the stale answer was served $after s past its expiry, max_stale is ${MAX_STALE} s (limit $limit s): the max_stale bound is only checked at the 30 s refresh retries"
# new attempts (keel's seizures), not INVITE retransmissions of calls sent
# to zone-b just before the cut
seized_b() { scrape "$TMP/m.prom"; awk '/^keel_calls_seized_total\{zone="zone-b"/ {s += $2} END {print s + 0}' "$TMP/m.prom"; }
b3=$(seized_b)
sleep 3
b4=$(seized_b)
[ "$b4" -eq "$b3" ] || fail "zone-b took $((b4 - b3)) calls after its stale answer ran out"
rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
ok=$(stat uac "SuccessfulCall(C)")
[ $rc -eq 0 ] && [ "$ok" -eq 1800 ] || fail "$ok of 1800 calls succeeded: $(tail -5 "$TMP/uac.log")"
pass "stale for $after s (max_stale ${MAX_STALE} s), then its calls went to zone-a; 1800 calls, 0 failed"
stop_keel
