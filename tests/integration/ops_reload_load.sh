#!/usr/bin/env bash
# The issue's must-show: 50 reloads, alternating two valid configs that
# change the zone weights and add/remove a destination (a third server in
# zone-b), during 300 calls/s of SIPp traffic for 30 s: 0 failed calls.
# Calls are held 1 s, so hundreds are up at each reload, some of them on
# the destination the next reload removes: their ACKs and BYEs still route
# by their cookie. Most reloads are POST /v1/reload, every fifth SIGHUP.
#
# The rate is OPS_RELOAD_RATE (default 300 calls/s, the issue's figure) for
# every build: the sanitizer build (build-asan, as scripts/test runs it)
# carried 300 calls/s with 0 failures here, also with two other tests
# running beside it, so it is not lowered there. Lower it by hand only on a
# machine too small for SIPp itself; the test asserts 0 failed calls
# whatever the rate.
source "$(dirname "$0")/lib/common.sh"

rate=${OPS_RELOAD_RATE:-300}
secs=30; reloads=50; calls=$((rate * secs))

port=$(free_port); pa=$(free_port); pb=$(free_port); pb2=$(free_port); ADMIN_PORT=$(free_port)
conf() { python3 "$LIB_DIR/proxyconf.py" "$1" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    admin="$ADMIN_PORT" "${@:2}"; }
conf "$TMP/a.yaml" weight_a=50 weight_b=50
conf "$TMP/b.yaml" weight_a=30 weight_b=70 extra_b="127.0.0.1:$pb2"
cp "$TMP/a.yaml" "$TMP/keel.yaml"
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_uas uasb2 "$pb2" uas_call.xml
start_keel "$TMP/keel.yaml"
m() { metric "$TMP/$1.prom" "${@:2}"; }
version() { admin_get /v1/state | json_eval 'j["config_version"]'; }

echo "$calls calls at $rate/s, $reloads reloads"
run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m "$calls" -r "$rate" -d 1000 \
    -timeout $((secs + 30))s &
uac_pid=$!
PIDS+=("$uac_pid")
sleep 1.5 # calls up on both zones before the first reload

# 50 reloads spread over the 30 s of traffic: odd ones install b.yaml
# (weights 30/70, zone-b's second destination added), even ones a.yaml
# (50/50, removed)
# no python in this loop: under load every process start costs
now_us() { local t=${EPOCHREALTIME/./}; echo $((10#$t)); }
t0=$(now_us)
step=$(( (secs - 3) * 1000000 / reloads ))
for i in $(seq 1 $reloads); do
    # reload i at t0 + i * step, whatever the previous one took
    left=$(( t0 + i * step - $(now_us) ))
    [ $left -gt 0 ] && sleep "$(printf '%d.%06d' $((left / 1000000)) $((left % 1000000)))"
    if [ $((i % 2)) -eq 1 ]; then f=b; else f=a; fi
    cp "$TMP/$f.yaml" "$TMP/keel.yaml.new" && mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"
    want=$((i + 1))
    if [ $((i % 5)) -eq 0 ]; then
        kill -HUP "$KEEL_PID"
        at_want() { admin_get /v1/state | grep -q "\"config_version\":$want,"; }
        wait_until 5 at_want || fail "reload $i (SIGHUP): config_version $(version), expected $want"
    else
        code=$(admin_code POST /v1/reload)
        [ "$code" = 200 ] || fail "reload $i: HTTP $code: $(cat "$TMP/admin.body")"
        grep -q "\"config_version\":$want," "$TMP/admin.body" \
            || fail "reload $i: expected config_version $want: $(cat "$TMP/admin.body")"
    fi
    if [ "$i" -eq 25 ]; then
        # mid-load, on b.yaml: the added destination is in force
        admin_get /v1/state | json_eval 'len(j["clusters"][0]["zones"][1]["destinations"])' | grep -qx 2 \
            || fail "b.yaml's second zone-b destination is not in /v1/state"
        scrape "$TMP/mid.prom"
        out=$(promtool check metrics <"$TMP/mid.prom" 2>&1) || fail "promtool on the scrape under load: $out"
        [ -z "$out" ] || fail "promtool on the scrape under load: $out"
    fi
done
kill -0 "$uac_pid" 2>/dev/null || fail "the traffic ended before the reloads did: $(tail -5 "$TMP/uac.log")"
pass "$reloads reloads done during the traffic (config_version $(version))"

rc=0
wait "$uac_pid" || rc=$?
_pids_forget "$uac_pid"
ok=$(stat uac "SuccessfulCall(C)"); bad=$(stat uac "FailedCall(C)")
echo "sipp: rc=$rc successful=$ok failed=$bad"
[ $rc -eq 0 ] || fail "sipp exit $rc: not every call succeeded: $(tail -30 "$TMP/uac.log")"
[ "$bad" = 0 ] || fail "$bad failed calls"
[ "$ok" = "$calls" ] || fail "$ok of $calls calls succeeded"
pass "$calls calls at $rate/s across $reloads reloads: 0 failed"

sleep 1.5
scrape "$TMP/end.prom"
[ "$(m end keel_config_reloads_total result=ok)" = "$reloads" ] || fail "reloads ok = $(m end keel_config_reloads_total result=ok)"
[ "$(m end keel_config_reloads_total result=error)" = 0 ] || fail "a valid file counted as a reload error"
[ "$(m end keel_config_version)" = $((reloads + 1)) ] || fail "keel_config_version $(m end keel_config_version)"
[ "$(m end keel_calls_seized_total)" = "$calls" ] || fail "seized $(m end keel_calls_seized_total) for $calls calls"
[ "$(m end keel_calls_answered_total)" = "$calls" ] || fail "answered $(m end keel_calls_answered_total) of $calls"
[ "$(m end keel_failovers_total)" = 0 ] || fail "failovers under reloads: $(m end keel_failovers_total)"
[ "$(m end keel_calls_in_flight)" = 0 ] || fail "calls still in flight: $(m end keel_calls_in_flight)"
n2=$(m end keel_calls_seized_total destination="sip:127.0.0.1:$pb2")
[ "${n2%.*}" -gt 0 ] || fail "the destination added by the reloads took no call"
admin_get /v1/state | json_eval 'len(j["clusters"][0]["zones"][1]["destinations"])' | grep -qx 1 \
    || fail "a.yaml (in force at the end) has one zone-b destination; /v1/state disagrees"
for s in uasa uasb uasb2; do
    in=$(uas_count $s INVITE_Recv); bye=$(uas_count $s BYE_Recv)
    echo "$s: INVITEs $in, BYEs $bye"
    [ "$in" = "$bye" ] || fail "$s took $in calls and got $bye BYEs"
done
pass "keel counted $calls seized and answered, 0 failovers; the added/removed destination took $n2 calls, every BYE reached its server"
stop_keel
