#!/usr/bin/env bash
# Calls through keel to two zones (active-active 50/50): every call
# completes, the BYE reaches the platform server through keel by its cookie,
# both zones take calls, and an unknown header keeps its case.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb"
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 100 -r 50 -d 200 -timeout 60s \
    || fail "sipp uac: not every call succeeded (rc=$?): $(tail -5 "$TMP/uac.log")"
sleep 1.5
ok=$(stat uac "SuccessfulCall(C)")
a=$(uas_count uasa INVITE_Recv); b=$(uas_count uasb INVITE_Recv)
echo "uac successful=$ok zone-a=$a zone-b=$b"
[ "$ok" -eq 100 ] || fail "$ok of 100 calls succeeded"
[ $((a + b)) -eq 100 ] || fail "the servers got $((a + b)) calls"
[ "$a" -ge 35 ] && [ "$b" -ge 35 ] || fail "50/50 zones split $a/$b"
pass "100 calls completed (each BYE answered by its server through keel), split $a/$b"
stop_keel
