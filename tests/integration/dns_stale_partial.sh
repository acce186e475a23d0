#!/usr/bin/env bash
# Serve-stale per record (RFC 8767; issue 7: "cache by name and type"; DESIGN.md
# "DNS": when every resolver fails, a stale answer is served): zone-b.test
# is NAPTR -> SRV -> b1 and b2 (50/50, TTL 5 s), resolved through a
# forwarder in front of dnsmasq. Then the resolver stops answering for one
# name only: b2.zone-b.test's A queries time out everywhere, while
# everything else still resolves. The failed lookup must not drop b2: its
# last A answer is served stale, zone-b.test keeps both targets through
# the next refreshes and b2 keeps taking its share of the calls (50
# calls/s, none fails).
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

port=$(free_port); ADMIN_PORT=$(free_port); dns=$(free_port); fwd=$(free_port)
u1=$(free_port); u2=$(free_port)

dnsmasq --no-daemon --port="$dns" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --local=/test/ --pid-file="$TMP/dns.pid" \
    --log-queries --log-facility=- --local-ttl=5 \
    --naptr-record=zone-b.test,10,10,s,SIP+D2U,,_sip._udp.zone-b.test \
    --srv-host=_sip._udp.zone-b.test,b1.zone-b.test,$u1,10,50 \
    --srv-host=_sip._udp.zone-b.test,b2.zone-b.test,$u2,10,50 \
    --host-record=b1.zone-b.test,127.0.0.1 --host-record=b2.zone-b.test,127.0.0.1 \
    >"$TMP/dns.log" 2>&1 &
PIDS+=("$!")
python3 "$LIB_DIR/dnsconf.py" proxy "$fwd" "$dns" "$TMP/drop" &
PIDS+=("$!")
wait_until 5 python3 "$LIB_DIR/dnsconf.py" query "$fwd" b1.zone-b.test A >/dev/null \
    || fail "dnsmasq behind the forwarder did not come up"
start_uas uas1 "$u1" uas_call.xml
start_uas uas2 "$u2" uas_call.xml
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" zone=zone-b:1:sip:zone-b.test \
    tier=primary:127.0.0.1:$fwd admin="$ADMIN_PORT"
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
targets() { m keel_dns_targets zone=zone-b name=sip:zone-b.test; }
D2="sip:127.0.0.1:$u2;transport=udp"
wait_until 5 eval '[ "$(targets)" = 2 ]' || fail "zone-b.test did not resolve to 2 targets"

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 750 -r 50 -d 100 -timeout 60s &
UAC=$!
PIDS+=("$UAC")
sleep 2
echo b2.zone-b.test >"$TMP/drop"
out=$(python3 "$LIB_DIR/dnsconf.py" query "$fwd" b2.zone-b.test A) && fail "the forwarder still answers for b2: $out"
pass "b2.zone-b.test's A queries now go unanswered (b1, SRV and NAPTR still answer)"
s2a=$(m keel_calls_seized_total zone=zone-b destination="$D2")
min_t=2
for i in $(seq 1 24); do # 12 s: at least two refreshes of a 5 s TTL
    t=$(targets)
    [ "${t%.*}" -lt "$min_t" ] && min_t=${t%.*}
    sleep 0.5
done
s2b=$(m keel_calls_seized_total zone=zone-b destination="$D2")
echo "over 12 s of b2's lookups failing: fewest targets $min_t, b2 seized $s2a -> $s2b"
rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
ok=$(stat uac "SuccessfulCall(C)")
[ $rc -eq 0 ] && [ "$ok" -eq 750 ] || fail "$ok of 750 calls succeeded: $(tail -5 "$TMP/uac.log")"
[ "$min_t" -eq 2 ] \
    || fail "zone-b.test fell to $min_t target(s) when only b2's A lookup failed: the failed lookup dropped b2 instead of serving its last answer stale"
[ $((${s2b%.*} - ${s2a%.*})) -ge 150 ] \
    || fail "b2 took only $((${s2b%.*} - ${s2a%.*})) calls in 12 s while its A record could not be refreshed"
pass "b2 kept (stale) through 12 s of failed lookups: $((${s2b%.*} - ${s2a%.*})) calls, 750 calls 0 failed"
stop_keel
