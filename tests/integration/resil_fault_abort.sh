#!/usr/bin/env bash
# Game-day fault injection (issue 6; docs/metrics.md /v1/faults): under 20
# calls/s with zone-a preferred (prefer_local), POST /v1/faults injects an
# abort on zone-a for 5 s: keel treats zone-a as having answered 503
# without sending, so zone-a's server gets no new INVITE and every call
# completes on zone-b (failover, breaker and health act as on a real 503).
# The fault lifts itself on time: GET /v1/faults lists it until then and
# not after, and calls reach zone-a again within a probe interval or two.
# A second fault is lifted early by DELETE. In-dialog requests of calls up
# on zone-a are not touched (in_dialog defaults to false).
source "$(dirname "$0")/lib/common.sh"

DURATION=5
port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb prefer_local=true \
    interval=1s timeout=500ms window=2s admin="$ADMIN_PORT" faults=true
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
answered_a() { m keel_calls_answered_total zone=zone-a; }
now() { date +%s.%3N; }
since() { python3 -c "import sys, time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$1"; }
sleep_until() { python3 -c "import sys, time; time.sleep(max(0, float(sys.argv[1]) - time.time()))" "$1"; }
at() { python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$1" "$2"; }
faults() { admin_get /v1/faults | json_eval '[f["id"] for f in j["faults"]]'; }

# off unless admin.faults: the config has it on; a bad request is refused
code=$(admin_code POST /v1/faults -d '{"kind":"abort","zone":"zone-a","duration":"11m"}')
[ "$code" = 400 ] || fail "a fault longer than 10m: HTTP $code, expected 400"
code=$(admin_code POST /v1/faults -d '{"kind":"abort","zone":"zone-x","duration":"5s"}')
[ "$code" = 404 ] || fail "a fault on an unknown zone: HTTP $code, expected 404"

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 360 -r 20 -d 100 -timeout 60s &
UAC=$!
PIDS+=("$UAC")
sleep 3
a0=$(answered_a)
[ "$a0" -ge 20 ] || fail "zone-a (preferred) answered only $a0 calls in the first 3 s"

# ---- abort on zone-a for 5 s ----
code=$(admin_code POST /v1/faults -d "{\"kind\":\"abort\",\"zone\":\"zone-a\",\"duration\":\"${DURATION}s\"}")
t0=$(now)
[ "$code" = 201 ] || fail "POST /v1/faults: HTTP $code: $(cat "$TMP/admin.body")"
id=$(json_eval 'j["id"]' <"$TMP/admin.body")
echo "fault $id injected: $(cat "$TMP/admin.body")"
[ "$(faults)" = "[$id]" ] || fail "GET /v1/faults lists $(faults), expected [$id]"
grep -q "event=fault_injected id=$id kind=abort zone=zone-a" "$TMP/keel.log" || fail "the injection was not logged"

sleep_until "$(at "$t0" 0.5)"
n1=$(answered_a); b1=$(m keel_calls_answered_total zone=zone-b)
sleep_until "$(at "$t0" $((DURATION - 1)))"
[ "$(faults)" = "[$id]" ] || fail "the fault is gone after $(since "$t0") s, its duration is ${DURATION} s"
n2=$(answered_a); b2=$(m keel_calls_answered_total zone=zone-b)
echo "during the fault: zone-a answered $((n2 - n1)), zone-b $((b2 - b1)) (from 0.5 s to $((DURATION - 1)) s into it)"
[ "$n2" = "$n1" ] || fail "zone-a answered $((n2 - n1)) new calls during the abort"
[ $((b2 - b1)) -ge 50 ] || fail "zone-b answered only $((b2 - b1)) calls during the fault (20 calls/s)"
hits=$(m keel_fault_hits_total kind=abort zone=zone-a)
[ "$hits" != 0 ] || fail "keel_fault_hits_total{abort,zone-a} is 0"
pass "an abort on zone-a moved new calls to zone-b ($((b2 - b1)) answered there from 0.5 s to $((DURATION - 1)) s; $hits attempts aborted)"

# ---- it lifts itself ----
sleep_until "$(at "$t0" $((DURATION)).3)"
[ "$(faults)" = "[]" ] || fail "GET /v1/faults still lists $(faults) $(since "$t0") s after a ${DURATION} s fault"
back() { [ "$(answered_a)" -gt "$n2" ]; }
wait_until 6 back || fail "zone-a answered no call in the 6 s after the fault expired"
took=$(since "$t0")
echo "zone-a answers calls again ${took} s after the injection"
python3 -c "import sys; sys.exit(0 if $took <= $DURATION + 3 else 1)" \
    || fail "calls reached zone-a again only ${took} s after a ${DURATION} s fault"
pass "the fault lifted itself on time; zone-a takes calls again (${took} s after a ${DURATION} s fault)"

# ---- a second one, lifted early by DELETE ----
code=$(admin_code POST /v1/faults -d '{"kind":"abort","zone":"zone-a","duration":"60s"}')
[ "$code" = 201 ] || fail "second POST /v1/faults: HTTP $code"
id2=$(json_eval 'j["id"]' <"$TMP/admin.body")
sleep 2
n3=$(answered_a)
sleep 1
[ "$(answered_a)" = "$n3" ] || fail "zone-a answered calls under the second abort"
code=$(admin_code DELETE "/v1/faults/$id2")
[ "${code:0:1}" = 2 ] || fail "DELETE /v1/faults/$id2: HTTP $code"
[ "$(faults)" = "[]" ] || fail "GET /v1/faults lists $(faults) after the DELETE"
back2() { [ "$(answered_a)" -gt "$n3" ]; }
wait_until 5 back2 || fail "zone-a answered no call in the 5 s after the fault was deleted"
pass "DELETE /v1/faults/$id2 lifts a fault early"

rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
ok=$(stat uac "SuccessfulCall(C)")
[ $rc -eq 0 ] && [ "$ok" = 360 ] || fail "$ok of 360 calls succeeded: $(tail -5 "$TMP/uac.log")"
pass "360 calls, none failed through both faults"
stop_keel
