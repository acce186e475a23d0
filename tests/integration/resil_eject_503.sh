#!/usr/bin/env bash
# Circuit breaker (DESIGN.md "Resilience semantics", Envoy outlier
# detection): zone-a has two destinations, a1 answering 503 to every INVITE
# and a2 healthy; zone-b has b1, healthy. Zones 50/50, destinations 1:1.
# After 5 consecutive 503s a1 is ejected (max_ejected_percent 50 lets one of
# zone-a's two go) for base_ejection (30 s here), and its share goes to the
# others: a2 takes zone-a's half, so the split stays 50/50 between the zones.
# Every call completes (a 503 fails over). Probes are off so that only the
# breaker acts (a passing probe would end the ejection at once); probes
# that do run must not mark a1 down: a 503 to an INVITE is no health
# evidence, and its OPTIONS are answered 200.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa1=$(free_port); pa2=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() {
    python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
        zone=zone-a:50:127.0.0.1:$pa1,127.0.0.1:$pa2 zone=zone-b:50:127.0.0.1:$pb \
        consecutive_failures=5 base_ejection=30s max_ejected_percent=50 \
        admin="$ADMIN_PORT" "$@"
}
conf health=false
start_uas uasa1 "$pa1" uas_503.xml
start_uas uasa2 "$pa2" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"
A1="sip:127.0.0.1:$pa1"

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 200 -r 40 -d 100 -timeout 60s \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
sleep 1.5
scrape "$TMP/p1.prom"
e() { metric "$TMP/p1.prom" "$@"; }
n1=$(uas_count uasa1 INVITE_Recv); n2=$(uas_count uasa2 INVITE_Recv); nb=$(uas_count uasb INVITE_Recv)
echo "200 calls: a1 (503) saw $n1 INVITEs, a2 took $n2, b1 took $nb"
[ "$n1" -ge 5 ] || fail "a1 saw only $n1 INVITEs: it was ejected before 5 failures"
[ "$n1" -le 6 ] || fail "a1 saw $n1 INVITEs: 5 consecutive 503s should have ejected it for 30 s"
[ $((n2 + nb)) -eq 200 ] || fail "the healthy destinations completed $((n2 + nb)) of 200 calls"
# 50/50 between the zones: zone-a's half (minus a1's 5) all on a2
[ "$n2" -ge 80 ] && [ "$n2" -le 110 ] || fail "a2 took $n2 of 200: a1's share should have gone to it (about 100)"
[ "$nb" -ge 90 ] && [ "$nb" -le 120 ] || fail "b1 took $nb of 200 (about 100 expected)"
pass "5 consecutive 503s ejected a1; its share went to a2 ($n2) and the split stayed ~50/50 ($((n2 + n1))/$nb)"

grep "event=destination_ejected" "$TMP/keel.log"
grep -q "event=destination_ejected zone=zone-a dest=$A1 why=consecutive_failures times=1" "$TMP/keel.log" \
    || fail "no ejection of a1 logged (why=consecutive_failures times=1)"
[ "$(grep -c "event=destination_ejected" "$TMP/keel.log")" = 1 ] || fail "more than one ejection logged"
[ "$(e keel_destination_ejected destination="$A1")" = 1 ] || fail "keel_destination_ejected{a1} is $(e keel_destination_ejected destination="$A1")"
[ "$(e keel_destination_ejections_total destination="$A1")" = 1 ] || fail "keel_destination_ejections_total{a1} is not 1"
[ "$(e keel_destination_ejected destination="sip:127.0.0.1:$pa2")" = 0 ] || fail "a2 is ejected"
[ "$(e keel_destination_ejected destination="sip:127.0.0.1:$pb")" = 0 ] || fail "b1 is ejected"
pass "metrics and log show the ejection of a1 only"

# ---- 486/404/480/487/6xx are answers about the call: never an ejection ----
# (a1 still ejected: a2 now answers 486 to everything, 20 busy calls in a row)
stop_pid "$uasa2_PID"
start_uas uasa2b "$pa2" uas_486.xml
run_uac busy "127.0.0.1:$port" uac_call_or_busy.xml -s 1000 -m 60 -r 20 -d 100 -timeout 60s \
    || fail "sipp busy: not every call got its answer: $(tail -5 "$TMP/busy.log")"
sleep 1.5
nbusy=$(uas_count uasa2b INVITE_Recv)
echo "a2 answered $nbusy calls 486"
[ "$nbusy" -ge 20 ] || fail "a2 took only $nbusy busy calls (at least 20 expected)"
scrape "$TMP/p2.prom"
[ "$(metric "$TMP/p2.prom" keel_destination_ejected destination="sip:127.0.0.1:$pa2")" = 0 ] \
    && ! grep -q "event=destination_ejected zone=zone-a dest=sip:127.0.0.1:$pa2" "$TMP/keel.log" \
    || fail "$nbusy 486s ejected a2: 486 is an answer about the call, not a failure of the server"
pass "$nbusy consecutive 486s do not eject a destination"

# ---- with probes on: an INVITE 503 is no health evidence ----
conf health=true interval=1s timeout=500ms
kill -HUP "$KEEL_PID"
sleep 4
scrape "$TMP/p3.prom"
[ "$(metric "$TMP/p3.prom" keel_destination_up destination="$A1")" = 1 ] \
    && ! grep -q "event=destination_down zone=zone-a dest=$A1" "$TMP/keel.log" \
    || fail "a1 (OPTIONS answered 200) was marked down by health"
pass "a1's passing probes keep it up"
stop_keel
