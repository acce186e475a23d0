#!/usr/bin/env bash
# A call ringing on a destination that is then declared dead (DESIGN.md
# "Resilience semantics": after an 18x, the destination declared dead moves
# the call on) is not left ringing until ring_timeout (30 s here): keel
# CANCELs that branch and the call completes on the next zone.
#  a. zone-a's server rings (180, never answers) and then stops answering
#     health probes while alive: down after fall (3) x interval (1 s) +
#     timeout; the server receives keel's CANCEL; the call is answered by
#     zone-b within that time + margin.
#  b. zone-a's server (SIPp, ringing) is killed: the next probe meets ICMP
#     port unreachable, the call moves to zone-b within about an interval.
# (Kamailio left such a call ringing 28 s.)
source "$(dirname "$0")/lib/common.sh"

INTERVAL_MS=1000 TIMEOUT_MS=500 FALL=3
port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb prefer_local=true \
    interval=${INTERVAL_MS}ms timeout=${TIMEOUT_MS}ms fall=$FALL rise=2 \
    ring_timeout=30s window=0ms admin="$ADMIN_PORT"

# ringer.py PORT LOG DEADFLAG: rings every INVITE (180, never a final
# answer); CANCEL: 200 and 487; answers OPTIONS 200 unless DEADFLAG exists.
# Logs "INVITE|CANCEL|ACK call-id" lines to LOG.
cat >"$TMP/ringer.py" <<'PY'
import os, sys
import sip
port, logf, dead = int(sys.argv[1]), sys.argv[2], sys.argv[3]
srv = sip.Server(port)
log = open(logf, "a", buffering=1)
invites = {}
while True:
    req, data, addr = srv.recv(1.0)
    if req is None or req.code:
        continue
    method = req.start.split(" ", 1)[0]
    cid = req.get("Call-ID") or req.get("i")
    if method == "OPTIONS":
        if not os.path.exists(dead):
            srv.reply(req, addr, 200, "OK")
    elif method == "INVITE":
        if cid not in invites:
            log.write("INVITE %s\n" % cid)
        invites[cid] = req
        srv.reply(req, addr, 180, "Ringing")
    elif method == "CANCEL":
        log.write("CANCEL %s\n" % cid)
        srv.reply(req, addr, 200, "OK")
        if cid in invites:
            srv.reply(invites[cid], addr, 487, "Request Terminated")
    elif method == "ACK":
        log.write("ACK %s\n" % cid)
PY
python3 "$TMP/ringer.py" "$pa" "$TMP/ringer.txt" "$TMP/dead" &
RINGER=$!
PIDS+=("$RINGER")
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
answered_b() { [ "$(m keel_calls_answered_total zone=zone-b)" -ge "$1" ]; }
ringing() { [ "$(grep -c "^INVITE" "$TMP/ringer.txt" 2>/dev/null)" -ge 1 ]; }
now() { date +%s.%3N; }
since() { python3 -c "import sys, time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$1"; }
le() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }
up_a() { [ "$(m keel_destination_up zone=zone-a)" = "$1" ]; }
wait_until 5 up_a 1 || fail "zone-a not up at start"

# ---- a. the ringing server fails its health checks ----
run_uac call1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 1 -d 200 -timeout 40s &
U1=$!
PIDS+=("$U1")
wait_until 5 ringing || fail "the call did not reach zone-a (prefer_local)"
sleep 0.5
touch "$TMP/dead"
t_dead=$(now)
limit=$(python3 -c "print('%.1f' % ($FALL * $INTERVAL_MS * 1.1 / 1000 + $TIMEOUT_MS / 1000 + 2))")
wait_until 20 answered_b 1 || fail "the call ringing on a dead zone-a was not answered by zone-b within 20 s"
took=$(since "$t_dead")
echo "answered by zone-b ${took} s after zone-a stopped answering probes (bound ${limit} s, ring_timeout 30 s)"
rc=0
wait "$U1" || rc=$?
_pids_forget "$U1"
[ $rc -eq 0 ] || fail "the call did not complete: $(tail -5 "$TMP/call1.log")"
le "$took" "$limit" || fail "the call moved to zone-b ${took} s after zone-a went dead, expected <= ${limit} s"
grep "event=destination_down zone=zone-a\|event=dead_destination_failover" "$TMP/keel.log"
grep -q "event=dead_destination_failover .*zone=zone-a .*ringing=1" "$TMP/keel.log" \
    || fail "no dead_destination_failover (ringing=1) logged"
sleep 0.5
grep -q "^CANCEL" "$TMP/ringer.txt" || fail "zone-a's server never received a CANCEL for the ringing branch"
grep -q "^ACK" "$TMP/ringer.txt" || fail "keel did not ACK zone-a's 487"
pass "a call ringing on a destination declared down was CANCELled there and answered by zone-b in ${took} s"

# ---- b. the ringing server is killed ----
rm "$TMP/dead"
stop_pid "$RINGER"
start_uas uasa "$pa" uas_ring.xml
wait_until 8 up_a 1 || fail "zone-a did not come back up"
run_uac call2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 1 -d 200 -timeout 40s &
U2=$!
PIDS+=("$U2")
ringing2() { [ "$(uas_count uasa INVITE_Recv)" -ge 1 ]; }
wait_until 5 ringing2 || fail "the second call did not reach zone-a"
sleep 0.5
kill -KILL "$uasa_PID"
wait "$uasa_PID" 2>/dev/null || true
_pids_forget "$uasa_PID"
t_kill=$(now)
limit=$(python3 -c "print('%.1f' % ($INTERVAL_MS * 1.1 / 1000 + 2))")
wait_until 20 answered_b 2 || fail "the call ringing on a killed zone-a was not answered by zone-b within 20 s"
took=$(since "$t_kill")
echo "answered by zone-b ${took} s after zone-a's server was killed (bound ${limit} s)"
rc=0
wait "$U2" || rc=$?
_pids_forget "$U2"
[ $rc -eq 0 ] || fail "the second call did not complete: $(tail -5 "$TMP/call2.log")"
le "$took" "$limit" || fail "the call moved to zone-b ${took} s after zone-a's server died, expected <= ${limit} s"
pass "a call ringing on a destination whose server died moved to zone-b in ${took} s"
stop_keel
