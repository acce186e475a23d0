#!/usr/bin/env bash
# UDP on the caller's side, TCP on the platform's: calls complete, and the
# BYE finds its way back (two Record-Route entries, one per side).
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "sip:127.0.0.1:$pa;transport=tcp" \
    "sip:127.0.0.1:$pb;transport=tcp"
start_uas uasa "$pa" uas_call.xml t1
start_uas uasb "$pb" uas_call.xml t1
start_keel "$TMP/keel.yaml"

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 30 -r 15 -d 100 -timeout 60s \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
sleep 1.5
a=$(uas_count uasa INVITE_Recv); b=$(uas_count uasb INVITE_Recv)
[ $((a + b)) -eq 30 ] || fail "TCP servers completed $((a + b)) of 30"
pass "30 calls UDP in, TCP out, BYE routed back"

# and the other way round: TCP in, UDP out
pc=$(free_port); pd=$(free_port); port2=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel2.yaml" "$port2" "127.0.0.1:$pc" "127.0.0.1:$pd"
start_uas uasc "$pc" uas_call.xml
start_uas uasd "$pd" uas_call.xml
start_keel "$TMP/keel2.yaml" keel2
run_uac uac2 "127.0.0.1:$port2" uac_call.xml -t t1 -s 1000 -m 30 -r 15 -d 100 -timeout 60s \
    || fail "sipp uac over TCP: not every call succeeded: $(tail -5 "$TMP/uac2.log")"
sleep 1.5
c=$(uas_count uasc INVITE_Recv); d=$(uas_count uasd INVITE_Recv)
[ $((c + d)) -eq 30 ] || fail "UDP servers completed $((c + d)) of 30"
pass "30 calls TCP in, UDP out"
