#!/usr/bin/env bash
# Two workers (workers: 2, SO_REUSEPORT): the kernel gives each datagram to
# the worker its addresses hash to, so a server's responses often land on
# the worker that did not send the request. That worker hands them to the
# owner (DESIGN.md "Threads and state"): every call completes, each server
# sees each INVITE once (no retransmission or failover for a lost 180/200),
# and the BYEs come back through keel. Then the servers hang up: a server's
# BYE reaches whichever worker its address hashes to, and the call still
# ends where it was counted (no call left in flight, no bulkhead slot held).
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" workers=2 \
    admin="$ADMIN_PORT"
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"
grep -q "event=started .*workers=2" "$TMP/keel.log" || fail "keel did not start two workers"

# callers NAME SCENARIO SIPP-ARGS...: four SIPp callers at once, on four
# source ports (so both workers receive calls); prints their successful
# calls in all, fails when one of them saw a call fail
callers() {
    local name=$1 sf=$2 pids=() ok=0
    shift 2
    for i in 1 2 3 4; do
        run_uac "$name$i" "127.0.0.1:$port" "$sf" "$@" &
        pids+=($!)
    done
    for i in 1 2 3 4; do
        wait "${pids[$((i - 1))]}" || fail "sipp $name$i: not every call succeeded: $(tail -5 "$TMP/$name$i.log")"
    done
    sleep 1.5
    for i in 1 2 3 4; do ok=$((ok + $(stat "$name$i" "SuccessfulCall(C)"))); done
    echo "$ok"
}

ok=$(callers uac uac_call.xml -s 1000 -m 50 -r 25 -d 100 -timeout 60s) || exit 1
a=$(uas_count uasa INVITE_Recv); b=$(uas_count uasb INVITE_Recv)
ba=$(uas_count uasa BYE_Recv); bb=$(uas_count uasb BYE_Recv)
echo "successful=$ok zone-a INVITEs=$a BYEs=$ba zone-b INVITEs=$b BYEs=$bb"
[ "$ok" -eq 200 ] || fail "$ok of 200 calls succeeded"
[ $((a + b)) -eq 200 ] || fail "the servers got $((a + b)) INVITEs for 200 calls: responses lost between workers"
[ $((ba + bb)) -eq 200 ] || fail "the servers got $((ba + bb)) BYEs for 200 calls"
[ "$a" -ge 70 ] && [ "$b" -ge 70 ] || fail "50/50 zones split $a/$b"
pass "200 calls through two workers: each INVITE reached a server once, split $a/$b"

# ---- the servers hang up ----
stop_pid "$uasa_PID"
stop_pid "$uasb_PID"
start_uas uasa2 "$pa" uas_call_bye.xml u1
start_uas uasb2 "$pb" uas_call_bye.xml u1
ok=$(callers cb uac_call_callee_bye.xml -s 1000 -m 25 -r 25 -timeout 60s) || exit 1
[ "$ok" -eq 100 ] || fail "$ok of 100 calls hung up by the server succeeded"
scrape "$TMP/m.prom"
inflight=$(metric "$TMP/m.prom" keel_calls_in_flight)
occ_a=$(metric "$TMP/m.prom" keel_bulkhead_occupancy zone=zone-a kind=calls)
occ_b=$(metric "$TMP/m.prom" keel_bulkhead_occupancy zone=zone-b kind=calls)
echo "after 300 calls: calls in flight ${inflight:-0}, bulkhead calls zone-a ${occ_a:-0} zone-b ${occ_b:-0}"
[ "${inflight:-0}" = 0 ] || fail "$inflight calls still in flight after every call ended"
[ "${occ_a:-0}" = 0 ] && [ "${occ_b:-0}" = 0 ] || fail "bulkhead slots still held: zone-a $occ_a zone-b $occ_b"
pass "100 calls hung up by the servers through two workers: none left in flight"
handoffs=$(metric "$TMP/m.prom" keel_worker_handoffs_total)
refused=$(metric "$TMP/m.prom" keel_worker_inbox_refused_total)
echo "hand-offs between workers: $handoffs, refused: $refused"
[ "$handoffs" -gt 0 ] || fail "no hand-off counted, yet responses crossed workers"
[ "$refused" = 0 ] || fail "$refused hand-offs refused"
stop_keel
