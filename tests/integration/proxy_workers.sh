#!/usr/bin/env bash
# Two workers (workers: 2, SO_REUSEPORT): the kernel gives each datagram to
# the worker its addresses hash to, so a server's responses often land on
# the worker that did not send the request. That worker hands them to the
# owner (DESIGN.md "Threads and state"): every call completes, each server
# sees each INVITE once (no retransmission or failover for a lost 180/200),
# and the BYEs come back through keel.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" workers=2
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"
grep -q "event=started .*workers=2" "$TMP/keel.log" || fail "keel did not start two workers"

# four callers on four source ports, so both workers receive calls
pids=()
for i in 1 2 3 4; do
    run_uac "uac$i" "127.0.0.1:$port" uac_call.xml -s 1000 -m 50 -r 25 -d 100 -timeout 60s &
    pids+=($!)
done
for i in 1 2 3 4; do
    wait "${pids[$((i - 1))]}" || fail "sipp uac$i: not every call succeeded: $(tail -5 "$TMP/uac$i.log")"
done
sleep 1.5
ok=0
for i in 1 2 3 4; do ok=$((ok + $(stat "uac$i" "SuccessfulCall(C)"))); done
a=$(uas_count uasa INVITE_Recv); b=$(uas_count uasb INVITE_Recv)
ba=$(uas_count uasa BYE_Recv); bb=$(uas_count uasb BYE_Recv)
echo "successful=$ok zone-a INVITEs=$a BYEs=$ba zone-b INVITEs=$b BYEs=$bb"
[ "$ok" -eq 200 ] || fail "$ok of 200 calls succeeded"
[ $((a + b)) -eq 200 ] || fail "the servers got $((a + b)) INVITEs for 200 calls: responses lost between workers"
[ $((ba + bb)) -eq 200 ] || fail "the servers got $((ba + bb)) BYEs for 200 calls"
[ "$a" -ge 70 ] && [ "$b" -ge 70 ] || fail "50/50 zones split $a/$b"
# both workers worked: each logs its own summary of requests
pass "200 calls through two workers: each INVITE reached a server once, split $a/$b"
stop_keel
