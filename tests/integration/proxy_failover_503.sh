#!/usr/bin/env bash
# zone-a answers 503 to everything: every call completes on zone-b, and
# every call was tried on zone-a first (prefer_local).
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" prefer_local=true
start_uas uasa "$pa" uas_503.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 40 -r 20 -d 100 -timeout 60s \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
sleep 1.5
a=$(stat uasa "SuccessfulCall(C)"); b=$(stat uasb "IncomingCall(C)")
echo "zone-a 503s acknowledged=$a zone-b calls=$b"
[ "$b" -eq 40 ] || fail "zone-b completed $b of 40"
[ "$a" -eq 40 ] || fail "zone-a saw $a of 40 (prefer_local should try it first, and its 503 must be ACKed)"
pass "40 calls: 503 on zone-a, completed on zone-b"
stop_keel
