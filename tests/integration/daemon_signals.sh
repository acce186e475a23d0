#!/usr/bin/env bash
# SIGHUP reloads; a broken file keeps the old config serving and is logged
# with file:line:column; SIGINT and SIGTERM stop keel cleanly (the sanitizer
# build reports no leak); a port already in use is a clear startup error.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port)
keel_conf "$TMP/keel.yaml" "$port"
start_keel "$TMP/keel.yaml"

ask_options() {
    python3 - "$1" <<'PY'
import sys
from sip import Udp, request
port = int(sys.argv[1])
u = Udp(port)
r = u.ask(request("OPTIONS", "sip:127.0.0.1:%d" % port, local_port=u.local_port), timeout=2)
sys.exit(0 if r is not None and r.code == 200 else 1)
PY
}

# a good reload that adds a listener
port2=$(free_port)
sed -i "s/^listen:/listen:\n  - { transport: udp, address: 127.0.0.1, port: $port2 }/" "$TMP/keel.yaml"
kill -HUP "$KEEL_PID"
for _ in $(seq 50); do ask_options "$port2" && break; sleep 0.1; done
ask_options "$port2" || fail "the listener added by SIGHUP does not answer"
ask_options "$port" || fail "the kept listener stopped answering"
pass "SIGHUP reload: new listener answers, kept one still does"

# a broken file: keel keeps serving and says where
cp "$TMP/keel.yaml" "$TMP/good.yaml"
sed -i "s/weight: 1/weight: heavy/" "$TMP/keel.yaml"
kill -HUP "$KEEL_PID"
sleep 0.5
grep -q "event=reload_failed.*keel.yaml:[0-9]*:[0-9]*" "$TMP/keel.log" || fail "no reload_failed line with file:line:column"
ask_options "$port" || fail "keel stopped serving after a bad reload"
pass "bad reload: logged with its place, still serving"

# removing the added listener closes it
cp "$TMP/good.yaml" "$TMP/keel.yaml"
sed -i "/port: $port2 }/d" "$TMP/keel.yaml"
kill -HUP "$KEEL_PID"
sleep 0.5
if ask_options "$port2"; then fail "the removed listener still answers"; fi
ask_options "$port" || fail "kept listener lost"
pass "a removed listener closes"

kill -INT "$KEEL_PID"
rc=0
wait "$KEEL_PID" || rc=$?
PIDS=()
[ $rc -eq 0 ] || fail "SIGINT: exit $rc"
grep -q "event=stopped" "$TMP/keel.log" || fail "no stopped line"
pass "SIGINT: clean stop"

# a second keel on a port in use fails with a clear message
python3 -c 'import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",int(sys.argv[1])))
time.sleep(5)' "$port" &
PIDS+=($!)
sleep 0.3
rc=0
"$KEEL_BIN" -c "$TMP/good.yaml" >"$TMP/busy.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "keel started on a port in use"
grep -qi "in use" "$TMP/busy.log" || fail "no clear error for a port in use: $(cat "$TMP/busy.log")"
pass "a port in use is a clear startup error"
