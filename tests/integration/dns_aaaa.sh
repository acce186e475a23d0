#!/usr/bin/env bash
# RFC 3263 §4.2 / issue 7 ("NAPTR -> SRV -> A/AAAA"): an SRV target is
# looked up by A and AAAA. zone-6.test's SRV has two targets (weights
# 50/50): b4 with an A record only (a server on 127.0.0.1) and b6 with an
# AAAA record only (a server on ::1). Both are targets; calls reach both.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

port=$(free_port); ADMIN_PORT=$(free_port); dns=$(free_port)
u4=$(free_port); u6=$(free_port ::1)

dnsmasq --no-daemon --port="$dns" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --local=/test/ --pid-file="$TMP/dns.pid" \
    --log-queries --log-facility=- --local-ttl=10 \
    --srv-host=_sip._udp.zone-6.test,b4.zone-6.test,$u4,10,50 \
    --srv-host=_sip._udp.zone-6.test,b6.zone-6.test,$u6,10,50 \
    --host-record=b4.zone-6.test,127.0.0.1 --host-record=b6.zone-6.test,::1 \
    >"$TMP/dns.log" 2>&1 &
PIDS+=("$!")
wait_until 5 python3 "$LIB_DIR/dnsconf.py" query "$dns" b6.zone-6.test AAAA >/dev/null \
    || fail "dnsmasq did not come up"
out=$(python3 "$LIB_DIR/dnsconf.py" query "$dns" b6.zone-6.test AAAA)
case "$out" in *answers=1*) ;; *) fail "dnsmasq has no AAAA for b6: $out" ;; esac
start_uas uas4 "$u4" uas_call.xml
# the IPv6 server: start_uas binds 127.0.0.1, so the same by hand on ::1
(cd "$TMP" && exec sipp -sf "$SCEN/uas_call.xml" -i ::1 -p "$u6" -mp "$(media_port ::1)" -t u1 -aa -nostdin -timeout 120s \
    -trace_stat -stf "$TMP/uas6.csv" -fd 1 -trace_counts >"$TMP/uas6.log" 2>&1) &
uas6_PID=$!
PIDS+=("$uas6_PID")
sleep 0.3
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" zone=zone-6:1:sip:zone-6.test \
    tier=primary:127.0.0.1:$dns listen6=true admin="$ADMIN_PORT"
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
D4="sip:127.0.0.1:$u4;transport=udp" D6="sip:[::1]:$u6;transport=udp"
wait_until 5 eval '[ "$(m keel_dns_targets zone=zone-6 name=sip:zone-6.test)" != 0 ]' \
    || fail "zone-6.test did not resolve"
sleep 1 # every lookup of the job answered
t=$(m keel_dns_targets zone=zone-6 name=sip:zone-6.test)
grep "destination_up" "$TMP/m.prom" | grep zone-6 || true
[ "$t" = 2 ] || fail "zone-6.test resolved to $t target(s), not 2: the AAAA-only SRV target $D6 is missing (no AAAA lookup)"
pass "zone-6.test: $D4 (A) and $D6 (AAAA)"
run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 100 -r 50 -d 100 -timeout 60s \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
sleep 1.5
c4=$(uas_count uas4 INVITE_Recv); c6=$(uas_count uas6 INVITE_Recv)
echo "v4 server got $c4, v6 server $c6 of 100"
[ $((c4 + c6)) -eq 100 ] && [ "$c4" -ge 25 ] && [ "$c6" -ge 25 ] || fail "calls split $c4/$c6"
pass "100 calls split $c4/$c6 over the A and the AAAA target"
stop_keel
