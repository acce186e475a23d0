#!/usr/bin/env bash
# RFC 3263 §4.1 fallback with a resolver that refuses what it does not
# know: dnsmasq set up as an operator would for SRV only (--srv-host and
# --host-record, no --local, no upstream) answers REFUSED to the NAPTR
# query for zone-c.test and to _sip._tcp, and answers SRV _sip._udp. No
# NAPTR record can be had for the name, so keel must go on to the SRV
# lookups (as Kamailio and OpenSIPS do) rather than leave the name
# unresolved: zone-c.test resolves to its two SRV targets and calls flow.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

port=$(free_port); ADMIN_PORT=$(free_port); dns=$(free_port)
u1=$(free_port); u2=$(free_port)

dnsmasq --no-daemon --port="$dns" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --pid-file="$TMP/dns.pid" --log-queries --log-facility=- \
    --local-ttl=10 \
    --srv-host=_sip._udp.zone-c.test,c1.zone-c.test,$u1,10,50 \
    --srv-host=_sip._udp.zone-c.test,c2.zone-c.test,$u2,10,50 \
    --host-record=c1.zone-c.test,127.0.0.1 --host-record=c2.zone-c.test,127.0.0.1 \
    >"$TMP/dns.log" 2>&1 &
PIDS+=("$!")
wait_until 5 python3 "$LIB_DIR/dnsconf.py" query "$dns" c1.zone-c.test A >/dev/null \
    || fail "dnsmasq did not come up"
out=$(python3 "$LIB_DIR/dnsconf.py" query "$dns" zone-c.test NAPTR)
case "$out" in rcode=5*) ;; *) fail "expected REFUSED for the NAPTR query, got: $out" ;; esac
start_uas uas1 "$u1" uas_call.xml
start_uas uas2 "$u2" uas_call.xml
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" zone=zone-c:1:sip:zone-c.test \
    tier=primary:127.0.0.1:$dns admin="$ADMIN_PORT"
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
wait_until 5 eval '[ "$(m keel_dns_targets zone=zone-c name=sip:zone-c.test)" = 2 ]' \
    || fail "zone-c.test not resolved to its 2 SRV targets when the NAPTR query is REFUSED ($(m keel_dns_targets zone=zone-c name=sip:zone-c.test) targets; dnsmasq saw: $(grep -o 'query\[[A-Z]*\] [^ ]*' "$TMP/dns.log" | sort | uniq -c | tr '\n' ' '))"
pass "NAPTR REFUSED: zone-c.test resolved by SRV _sip._udp to 2 targets"
run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 50 -r 25 -d 100 -timeout 60s \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
sleep 1.5
c1=$(uas_count uas1 INVITE_Recv); c2=$(uas_count uas2 INVITE_Recv)
[ $((c1 + c2)) -eq 50 ] || fail "the servers got $((c1 + c2)) of 50 calls"
pass "50 calls completed over the SRV targets ($c1/$c2)"
stop_keel
