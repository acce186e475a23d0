#!/usr/bin/env bash
# SIP MESSAGE (chat) goes through the same engine to the chat cluster.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb"
start_uas uasa "$pa" uas_message.xml
start_uas uasb "$pb" uas_message.xml
start_keel "$TMP/keel.yaml"
run_uac uac "127.0.0.1:$port" uac_message.xml -s chat -m 50 -r 25 -timeout 60s \
    || fail "not every MESSAGE got 200: $(tail -5 "$TMP/uac.log")"
sleep 1.5
a=$(stat uasa "SuccessfulCall(C)"); b=$(stat uasb "SuccessfulCall(C)")
[ $((a + b)) -eq 50 ] || fail "chat servers got $((a + b)) of 50"
pass "50 MESSAGEs delivered ($a/$b)"
stop_keel
