#!/usr/bin/env bash
# Listeners are diffed on reload: a removed listener closes only after its
# in-flight transactions end. Calls come in on a second listener (TCP, then
# UDP) and ring for 2 s; a reload removes that listener while they ring:
# every caller still gets its 200. Afterwards the removed listener is
# closed, and the kept one never stopped answering.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); p2=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/base.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" admin="$ADMIN_PORT"
with_listener() { # with_listener TRANSPORT: base.yaml plus a listener on p2
    sed "s/^listen:/listen:\n  - { transport: $1, address: 127.0.0.1, port: $p2 }/" "$TMP/base.yaml" \
        >"$TMP/keel.yaml.new" && mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"
}
reload() {
    local code
    code=$(admin_code POST /v1/reload)
    [ "$code" = 200 ] || fail "reload: HTTP $code: $(cat "$TMP/admin.body")"
}
with_listener tcp
start_uas uasa "$pa" uas_ring_2s.xml
start_uas uasb "$pb" uas_ring_2s.xml
start_keel "$TMP/keel.yaml"
tcp_open() { python3 -c 'import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"; }
tcp_open "$p2" || fail "the second TCP listener does not accept"

ringing() { scrape "$TMP/r.prom"; [ "$(metric "$TMP/r.prom" keel_transactions_in_flight class=call)" = "$1" ]; }

# ---- TCP ----
run_uac tcp "127.0.0.1:$p2" uac_setup.xml -t t1 -s 1000 -m 6 -r 20 -timeout 20s &
upid=$!
PIDS+=("$upid")
wait_until 5 ringing 6 || fail "the 6 calls are not all ringing"
cp "$TMP/base.yaml" "$TMP/keel.yaml"
reload
tcp_open "$port" || fail "the kept TCP listener stopped accepting"
rc=0
wait "$upid" || rc=$?
_pids_forget "$upid"
[ $rc -eq 0 ] || fail "calls ringing through the removed TCP listener lost their 200 (rc=$rc): $(tail -5 "$TMP/tcp.log")"
closed() { ! tcp_open "$p2"; }
wait_until 5 closed || fail "the removed TCP listener still accepts"
pass "TCP listener removed while 6 calls rang through it: every 200 delivered, then it closed"

# ---- UDP ----
with_listener udp
reload
run_uac udp "127.0.0.1:$p2" uac_setup.xml -s 1000 -m 6 -r 20 -timeout 20s &
upid=$!
PIDS+=("$upid")
wait_until 5 ringing 6 || fail "the 6 UDP calls are not all ringing"
cp "$TMP/base.yaml" "$TMP/keel.yaml"
reload
rc=0
wait "$upid" || rc=$?
_pids_forget "$upid"
[ $rc -eq 0 ] || fail "calls ringing through the removed UDP listener lost their 200 (rc=$rc): $(tail -5 "$TMP/udp.log")"
pass "UDP listener removed while 6 calls rang through it: every 200 delivered"

run_uac after "127.0.0.1:$port" uac_setup.xml -s 1000 -m 4 -r 20 -timeout 20s \
    || fail "calls on the kept listener failed: $(tail -5 "$TMP/after.log")"
pass "the kept listener serves calls"
stop_keel
