#!/usr/bin/env bash
# CANCEL of a ringing call (RFC 3261 §16.10): 200 to the CANCEL, CANCEL
# reaches the server, 487 back to the caller, ACK absorbed hop by hop.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" prefer_local=true
start_uas uasa "$pa" uas_ring.xml
start_uas uasb "$pb" uas_ring.xml
start_keel "$TMP/keel.yaml"

run_uac uac "127.0.0.1:$port" uac_cancel.xml -s 1000 -m 20 -r 10 -timeout 60s \
    || fail "sipp uac: not every cancel flow completed: $(tail -5 "$TMP/uac.log")"
sleep 1.5
a=$(stat uasa "SuccessfulCall(C)"); b=$(stat uasb "SuccessfulCall(C)")
[ $((a + b)) -eq 20 ] || fail "servers completed $((a + b)) of 20 cancel flows (CANCEL or ACK not relayed)"
pass "20 ringing calls cancelled end to end"
stop_keel
