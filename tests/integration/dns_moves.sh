#!/usr/bin/env bash
# Records that move (RFC 3263 / DESIGN.md "DNS": answers cached for their
# TTL, refreshed ahead of expiry): zone-b.test's SRV points at server 1
# (TTL 5 s) while 50 calls/s flow; dnsmasq is restarted with the SRV
# pointing at server 2 (another port). Within the TTL (+1 s) keel resolves
# the new target and new calls go there only; calls up on server 1 end
# there (their BYEs follow the cookie); no call fails.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

TTL=5
port=$(free_port); ADMIN_PORT=$(free_port); dns=$(free_port)
u1=$(free_port); u2=$(free_port)

records() { # records SERVER_PORT
    echo --local-ttl=$TTL --naptr-record=zone-b.test,10,10,s,SIP+D2U,,_sip._udp.zone-b.test \
        --srv-host=_sip._udp.zone-b.test,b.zone-b.test,$1,10,10 \
        --host-record=b.zone-b.test,127.0.0.1
}
# shellcheck disable=SC2046
start_dnsmasq dns "$dns" $(records "$u1")
start_uas uas1 "$u1" uas_call.xml
start_uas uas2 "$u2" uas_call.xml
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" zone=zone-b:1:sip:zone-b.test \
    tier=primary:127.0.0.1:$dns admin="$ADMIN_PORT"
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
D1="sip:127.0.0.1:$u1;transport=udp" D2="sip:127.0.0.1:$u2;transport=udp"
has_target() { scrape "$TMP/m.prom"; grep -q "keel_destination_up{.*destination=\"$1\"} 1" "$TMP/m.prom"; }
seized() { m keel_calls_seized_total zone=zone-b destination="$1"; }
now() { date +%s.%3N; }

wait_until 5 has_target "$D1" || fail "zone-b.test did not resolve to $D1"
run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 1000 -r 50 -d 100 -timeout 90s &
UAC=$!
PIDS+=("$UAC")
sleep 4
[ "$(uas_count uas1 INVITE_Recv)" -gt 0 ] || fail "server 1 got no call before the move"

# ---- the record moves ----
stop_pid "$dns_PID"
# shellcheck disable=SC2046
start_dnsmasq dns "$dns" $(records "$u2")
t_move=$(now)
wait_until $((TTL + 1)) has_target "$D2" \
    || fail "zone-b.test not moved to $D2 within the TTL ($TTL s) + 1 s of the new answer"
t_seen=$(now)
pass "the new SRV target is in use $(python3 -c "print('%.1f' % ($t_seen - $t_move))") s after the record moved (TTL $TTL s)"
sleep 0.5 # calls routed just before the switch reach server 1
s1a=$(seized "$D1"); s2a=$(seized "$D2")
sleep 4
s1b=$(seized "$D1"); s2b=$(seized "$D2")
echo "in 4 s after the move: server 1 seized $s1a -> $s1b, server 2 $s2a -> $s2b"
[ "$s1b" = "$s1a" ] || fail "$((${s1b%.*} - ${s1a%.*})) new calls still went to the old target $D1"
[ $((${s2b%.*} - ${s2a%.*})) -ge 150 ] || fail "only $((${s2b%.*} - ${s2a%.*})) calls in 4 s to the new target"
[ "$(m keel_dns_targets zone=zone-b name=sip:zone-b.test)" = 1 ] || fail "zone-b.test should have 1 target"

rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
sleep 1.5
ok=$(stat uac "SuccessfulCall(C)")
c1=$(uas_count uas1 INVITE_Recv); c2=$(uas_count uas2 INVITE_Recv)
b1=$(uas_count uas1 BYE_Recv); b2=$(uas_count uas2 BYE_Recv)
echo "uac: $ok of 1000 successful; server 1 got $c1 calls ($b1 BYEs), server 2 $c2 ($b2 BYEs)"
[ $rc -eq 0 ] && [ "$ok" -eq 1000 ] || fail "not every call succeeded across the move: $(tail -5 "$TMP/uac.log")"
[ $((c1 + c2)) -eq 1000 ] && [ "$b1" -eq "$c1" ] && [ "$b2" -eq "$c2" ] \
    || fail "calls and BYEs do not add up: $c1/$b1 and $c2/$b2"
pass "1000 calls across the move, 0 failed, each BYE to the server that took its call"
stop_keel
