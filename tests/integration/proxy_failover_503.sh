#!/usr/bin/env bash
# zone-a answers 503 to everything: every call completes on zone-b. The
# first calls are tried on zone-a first (prefer_local); after 5 consecutive
# 503s its circuit breaker ejects it (outlier detection, 30 s) and new calls
# go straight to zone-b instead of paying a round trip to a failing server.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" prefer_local=true
start_uas uasa "$pa" uas_503.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 40 -r 20 -d 100 -timeout 60s \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
sleep 1.5
a=$(stat uasa "SuccessfulCall(C)"); b=$(uas_count uasb INVITE_Recv)
echo "zone-a 503s acknowledged=$a zone-b calls=$b"
[ "$b" -eq 40 ] || fail "zone-b completed $b of 40"
[ "$a" -ge 5 ] || fail "zone-a saw $a calls: prefer_local should try it first until it is ejected"
# a passing OPTIONS probe (every 5 s) ends an ejection, so a slow run may see
# a second round of 5 before the next ejection: never all 40
[ "$a" -le 15 ] || fail "zone-a saw $a of 40: 5 consecutive 503s should have ejected it"
grep -q "event=destination_ejected zone=zone-a .*why=consecutive_failures" "$TMP/keel.log" \
    || fail "no ejection logged"
pass "40 calls: completed on zone-b; zone-a tried $a times, ejected after 5 consecutive 503s"
stop_keel
