#!/usr/bin/env bash
# zone-a never answers (a socket that reads and stays silent): calls fail
# over to zone-b within attempt_timeout (500 ms here), none fails. Then
# zone-a's port closed (the server process died): the ICMP port-unreachable
# makes keel fail over at once, without waiting for attempt_timeout.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    prefer_local=true attempt_timeout=500ms
start_uas uasb "$pb" uas_call.xml
python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    s.recv(65535)' "$pa" &
BLACKHOLE=$!
PIDS+=("$BLACKHOLE")
start_keel "$TMP/keel.yaml"

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 20 -r 10 -d 100 -timeout 60s \
    -trace_rtt -rtt_freq 1 \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
ok=$(stat uac "SuccessfulCall(C)")
[ "$ok" -eq 20 ] || fail "$ok of 20"
# INVITE -> 200 time: one attempt_timeout plus a little, never the UAC's own timers
max_rtt() {
    python3 - "$TMP" <<'PY'
import glob, sys
vals = []
for f in glob.glob(sys.argv[1] + "/*_rtt.csv"):
    for line in open(f):
        parts = line.strip().split(";")
        if len(parts) >= 3 and parts[2] == "invite" and parts[1].replace(".", "", 1).isdigit():
            vals.append(float(parts[1]))
print(int(max(vals)) if vals else -1)
PY
}
max=$(max_rtt)
echo "max INVITE->200: ${max} ms"
[ "$max" -ge 0 ] || fail "no response times recorded"
[ "$max" -ge 450 ] || fail "calls were not delayed by the dead zone-a at all (${max} ms): was it tried?"
[ "$max" -lt 1500 ] || fail "failover took ${max} ms, attempt_timeout is 500 ms"
pass "20 calls over a silent zone-a, each failed over in <1.5 s (max ${max} ms)"

# the server behind zone-a dies: its port is closed
kill "$BLACKHOLE"
wait "$BLACKHOLE" 2>/dev/null || true
rm -f "$TMP"/*_rtt.csv
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 20 -r 10 -d 100 -timeout 60s \
    -trace_rtt -rtt_freq 1 \
    || fail "sipp uac: not every call succeeded with zone-a's port closed: $(tail -5 "$TMP/uac2.log")"
max=$(max_rtt)
echo "max INVITE->200 with zone-a refused: ${max} ms"
[ "$max" -ge 0 ] && [ "$max" -lt 300 ] || fail "a refused port should fail over at once, took ${max} ms"
pass "20 calls with zone-a's port closed, failed over at once on ICMP port unreachable (max ${max} ms)"
stop_keel
