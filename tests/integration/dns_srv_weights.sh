#!/usr/bin/env bash
# RFC 2782 through RFC 3263 (DESIGN.md "DNS"): a zone whose only destination
# is a DNS name with no NAPTR (so keel falls back to SRV _sip._udp), two SRV
# priorities: 10 with two targets weighted 70/30, 20 with one backup target.
# Each target is a destination of its own. 200 calls split ~70/30 over the
# priority-10 targets and the backup gets none; both priority-10 servers
# silent (SIGSTOP): once health marks them down the backup takes every call
# (none fails); they answer again: the calls leave the backup; both killed
# (ports closed, ICMP unreachable): the backup takes every call again and is
# never marked down itself.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

port=$(free_port); ADMIN_PORT=$(free_port); dns=$(free_port)
u1=$(free_port); u2=$(free_port); u3=$(free_port)

# start_dnsmasq NAME PORT ARGS...: dnsmasq on 127.0.0.1:PORT, authoritative
# for nothing but answering *.test itself (no upstream), PID in NAME_PID.

start_dnsmasq dns "$dns" --local-ttl=10 \
    --srv-host=_sip._udp.zone-a.test,a1.zone-a.test,$u1,10,70 \
    --srv-host=_sip._udp.zone-a.test,a2.zone-a.test,$u2,10,30 \
    --srv-host=_sip._udp.zone-a.test,a3.zone-a.test,$u3,20,10 \
    --host-record=a1.zone-a.test,127.0.0.1 --host-record=a2.zone-a.test,127.0.0.1 \
    --host-record=a3.zone-a.test,127.0.0.1
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" zone=zone-a:1:sip:zone-a.test \
    tier=primary:127.0.0.1:$dns interval=1s timeout=500ms fall=2 rise=1 \
    attempt_timeout=500ms window=0s admin="$ADMIN_PORT"
start_uas uas1 "$u1" uas_call.xml
start_uas uas2 "$u2" uas_call.xml
start_uas uas3 "$u3" uas_call.xml
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
D1="sip:127.0.0.1:$u1;transport=udp" D2="sip:127.0.0.1:$u2;transport=udp"
D3="sip:127.0.0.1:$u3;transport=udp"
targets_are() { [ "$(m keel_dns_targets zone=zone-a name=sip:zone-a.test)" = "$1" ]; }
up_is() { [ "$(m keel_destination_up zone=zone-a destination="$1")" = "$2" ]; }
seized() { m keel_calls_seized_total zone=zone-a destination="$1"; }

wait_until 5 targets_are 3 || fail "zone-a.test did not resolve to 3 targets: $(grep dns_ "$TMP/m.prom")"
pass "zone-a.test (no NAPTR) resolved by SRV _sip._udp to 3 targets"

# ---- phase 1: 200 calls over priority 10, split by weight ----
run_uac uac1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 200 -r 50 -d 100 -timeout 60s \
    || fail "sipp uac1: not every call succeeded: $(tail -5 "$TMP/uac1.log")"
sleep 1.5
c1=$(uas_count uas1 INVITE_Recv); c2=$(uas_count uas2 INVITE_Recv); c3=$(uas_count uas3 INVITE_Recv)
s1=$(seized "$D1"); s2=$(seized "$D2"); s3=$(seized "$D3")
echo "phase 1: servers got $c1/$c2/$c3, keel seized $s1/$s2/$s3"
[ $((c1 + c2)) -eq 200 ] || fail "the priority-10 servers got $((c1 + c2)) of 200 calls"
[ "$c3" -eq 0 ] || fail "the priority-20 backup got $c3 calls while priority 10 was up"
[ "$s1" = "$c1" ] && [ "$s2" = "$c2" ] || fail "seizures by destination $s1/$s2 differ from the servers' $c1/$c2"
# 70 % of 200 = 140, binomial sd 6.5: +-20 is beyond 3 sd
[ "$c1" -ge 120 ] && [ "$c1" -le 160 ] || fail "weights 70/30 split the calls $c1/$c2"
pass "200 calls split $c1/$c2 by SRV weight 70/30, none to priority 20"

# ---- phase 2: both priority-10 servers go silent (SIGSTOP: no ICMP) ----
STOPPED=
trap 'rc_=$?; for p_ in $STOPPED; do kill -CONT "$p_" 2>/dev/null; done; set +e; (exit $rc_); _cleanup' EXIT
kill -STOP "$uas1_PID" "$uas2_PID"
STOPPED="$uas1_PID $uas2_PID"
wait_until 10 up_is "$D1" 0 || fail "$D1 still up 10 s after its server went silent"
wait_until 10 up_is "$D2" 0 || fail "$D2 still up 10 s after its server went silent"
up_is "$D3" 1 || fail "the backup is not up"
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 100 -r 50 -d 100 -timeout 60s \
    || fail "sipp uac2: not every call succeeded with priority 10 silent: $(tail -5 "$TMP/uac2.log")"
sleep 1.5
c3b=$(uas_count uas3 INVITE_Recv)
[ "$c3b" -eq 100 ] || fail "the backup got $c3b of 100 calls with priority 10 down"
pass "priority 10 silent and down: the priority-20 backup took all 100 calls, none failed"

# ---- phase 3: they answer again: the calls leave the backup ----
kill -CONT "$uas1_PID" "$uas2_PID"
STOPPED=
wait_until 10 up_is "$D1" 1 || fail "$D1 not up again 10 s after its server resumed"
wait_until 10 up_is "$D2" 1 || fail "$D2 not up again 10 s after its server resumed"
b1=$(uas_count uas1 INVITE_Recv); b2=$(uas_count uas2 INVITE_Recv)
run_uac uac3 "127.0.0.1:$port" uac_call.xml -s 1000 -m 50 -r 50 -d 100 -timeout 60s \
    || fail "sipp uac3: not every call succeeded: $(tail -5 "$TMP/uac3.log")"
sleep 1.5
c1b=$(uas_count uas1 INVITE_Recv); c2b=$(uas_count uas2 INVITE_Recv); c3c=$(uas_count uas3 INVITE_Recv)
[ $((c1b - b1 + c2b - b2)) -eq 50 ] || fail "priority 10 got $((c1b - b1 + c2b - b2)) of 50 calls after it came back"
[ "$c3c" -eq "$c3b" ] || fail "the backup got $((c3c - c3b)) calls after priority 10 came back"
pass "priority 10 back: it takes all 50 calls again, the backup none"

# ---- phase 4: both priority-10 servers die (closed ports: ICMP unreachable) ----
stop_pid "$uas1_PID"
stop_pid "$uas2_PID"
wait_until 10 up_is "$D1" 0 || fail "$D1 still up 10 s after its server died"
wait_until 10 up_is "$D2" 0 || fail "$D2 still up 10 s after its server died"
run_uac uac4 "127.0.0.1:$port" uac_call.xml -s 1000 -m 100 -r 50 -d 100 -timeout 60s || true
sleep 1.5
if grep -q "event=destination_down zone=zone-a dest=$D3" "$TMP/keel.log"; then
    fail "the live backup $D3 was marked down after the priority-10 servers died: $(grep "dest=$D3" "$TMP/keel.log" | head -3) (a pending ICMP error of a dead target fails keel's next sendto on the shared UDP socket, to whichever destination: the probe of the live one counts as failed)"
fi
ok4=$(stat uac4 "SuccessfulCall(C)"); c3d=$(uas_count uas3 INVITE_Recv)
[ "$ok4" -eq 100 ] || fail "$ok4 of 100 calls succeeded with priority 10 dead: $(tail -5 "$TMP/uac4.log")"
[ $((c3d - c3c)) -eq 100 ] || fail "the backup got $((c3d - c3c)) of 100 calls with priority 10 dead"
pass "priority 10 dead: the backup took all 100 calls, none failed"
stop_keel
