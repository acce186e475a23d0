#!/usr/bin/env bash
# SIPp as a real client: 200 OPTIONS over UDP and 200 over TCP, every one
# answered 200 by keel.
source "$(dirname "$0")/lib/common.sh"
command -v sipp >/dev/null || fail "sipp is not installed (scripts/setup installs sip-tester)"

port=$(free_port)
keel_conf "$TMP/keel.yaml" "$port"
start_keel "$TMP/keel.yaml"

for t in u1 t1; do
    lport=$(free_port)
    rc=0
    timeout 60 sipp -sf "$KEEL_SRC/tests/integration/scenarios/options_uac.xml" \
        -i 127.0.0.1 -p "$lport" -mp "$(media_port)" -t "$t" -m 200 -r 100 -l 20 -timeout 30s \
        -nostdin -trace_stat -stf "$TMP/sipp-$t.csv" \
        127.0.0.1:"$port" >"$TMP/sipp-$t.log" 2>&1 || rc=$?
    [ $rc -eq 0 ] || fail "sipp ($t) exit $rc: not every OPTIONS got 200"
    pass "sipp $t: 200 OPTIONS, all answered 200"
done
stop_keel
