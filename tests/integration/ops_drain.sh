#!/usr/bin/env bash
# Drain with SIPp traffic. Long calls (3 s) are up on every destination;
# then zone-a is drained: new calls all go to zone-b, none reaches zone-a's
# servers, while the BYEs of the calls zone-a already had still reach them
# (routed by their Record-Route cookie). Undrained, zone-a takes calls
# again. The same for one destination of zone-a. A reload while drained
# keeps the drain (destination state is kept by zone + URI).
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pa2=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() { python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml.new" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    admin="$ADMIN_PORT" extra_a="127.0.0.1:$pa2" "$@" && mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"; }
conf
start_uas uasa "$pa" uas_call.xml
start_uas uasa2 "$pa2" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"
da="sip:127.0.0.1:$pa"; da2="sip:127.0.0.1:$pa2"; db="sip:127.0.0.1:$pb"

m() { metric "$TMP/$1.prom" "${@:2}"; }
post_ok() {
    local code
    code=$(admin_code POST "$1")
    [ "$code" = 200 ] || fail "POST $1: HTTP $code: $(cat "$TMP/admin.body")"
}
calls_up() { scrape "$TMP/up.prom"; [ "$(m up keel_calls_in_flight)" = "$1" ]; }

# long NAME COUNT: COUNT calls held 3 s, started in the background; returns
# once they are all established
long() {
    run_uac "$1" "127.0.0.1:$port" uac_call.xml -s 1000 -m "$2" -r 20 -d 3000 -timeout 30s &
    LONG_PID=$!
    PIDS+=("$LONG_PID")
    wait_until 10 calls_up "$2" || fail "$2 long calls are not all up: $(m up keel_calls_in_flight)"
}
long_done() {
    local rc=0
    wait "$LONG_PID" || rc=$?
    _pids_forget "$LONG_PID"
    [ $rc -eq 0 ] || fail "sipp $1: a long call failed (its BYE lost?) rc=$rc: $(tail -5 "$TMP/$1.log")"
}
short() {
    run_uac "$1" "127.0.0.1:$port" uac_call.xml -s 1000 -m "$2" -r 20 -d 100 -timeout 30s \
        || fail "sipp $1: not every call succeeded: $(tail -5 "$TMP/$1.log")"
}

# ---- a zone ----
long long1 10
scrape "$TMP/z0.prom"
la=$(m z0 keel_calls_in_flight zone=zone-a)
echo "calls up before the drain: zone-a $la, zone-b $(m z0 keel_calls_in_flight zone=zone-b)"
[ "$la" -gt 0 ] || fail "no long call on zone-a: the drain test proves nothing"
post_ok /v1/zones/zone-a/drain
conf weight_a=60 weight_b=40
post_ok /v1/reload
admin_get /v1/state | json_eval '[z["drained"] for z in j["clusters"][0]["zones"]]' | grep -qx '\[true, false\]' \
    || fail "a reload undid the drain of zone-a: $(admin_get /v1/state)"
short short1 30
long_done long1
sleep 0.5
scrape "$TMP/z1.prom"
[ "$(m z1 keel_zone_drained zone=zone-a)" = 1 ] || fail "zone-a does not show drained"
d_a=$(( $(m z1 keel_calls_seized_total zone=zone-a) - $(m z0 keel_calls_seized_total zone=zone-a) ))
d_b=$(( $(m z1 keel_calls_seized_total zone=zone-b) - $(m z0 keel_calls_seized_total zone=zone-b) ))
bye_a=$(( $(m z1 keel_sip_requests_forwarded_total method=BYE zone=zone-a) - $(m z0 keel_sip_requests_forwarded_total method=BYE zone=zone-a) ))
echo "while zone-a drained: new calls zone-a $d_a, zone-b $d_b; BYEs forwarded to zone-a $bye_a"
[ "$d_a" -eq 0 ] || fail "$d_a new calls reached drained zone-a"
[ "$d_b" -eq 30 ] || fail "zone-b took $d_b of the 30 new calls"
[ "$bye_a" -eq "$la" ] || fail "$bye_a BYEs reached zone-a, it had $la calls up"
[ "$(m z1 keel_calls_in_flight)" = 0 ] || fail "calls still up: $(m z1 keel_calls_in_flight)"
pass "zone-a drained (and kept drained by a reload): 0 of 30 new calls on it, the BYEs of its $la calls still reached it"

post_ok /v1/zones/zone-a/undrain
short short2 30
scrape "$TMP/z2.prom"
[ "$(m z2 keel_zone_drained zone=zone-a)" = 0 ] || fail "zone-a still shows drained"
d_a=$(( $(m z2 keel_calls_seized_total zone=zone-a) - $(m z1 keel_calls_seized_total zone=zone-a) ))
echo "undrained: zone-a took $d_a of 30"
[ "$d_a" -ge 10 ] || fail "undrained zone-a took only $d_a of 30 new calls (50/50 zones)"
pass "zone-a undrained: it takes calls again ($d_a of 30)"

# ---- one destination of zone-a ----
long long2 12
scrape "$TMP/d0.prom"
l2=$(( $(m d0 keel_calls_seized_total destination="$da2") - $(m z2 keel_calls_seized_total destination="$da2") ))
echo "long calls up on $da2 before its drain: $l2"
[ "$l2" -gt 0 ] || fail "no long call on $da2: the drain test proves nothing"
enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$da2")
post_ok "/v1/zones/zone-a/destinations/$enc/drain"
admin_get /v1/state | json_eval '[d["drained"] for d in j["clusters"][0]["zones"][0]["destinations"]]' \
    | grep -qx '\[false, true\]' || fail "/v1/state does not show $da2 drained"
conf weight_a=50 weight_b=50
post_ok /v1/reload
admin_get /v1/state | json_eval '[d["drained"] for d in j["clusters"][0]["zones"][0]["destinations"]]' \
    | grep -qx '\[false, true\]' || fail "a reload undid the drain of $da2"
short short3 30
long_done long2
sleep 0.5
scrape "$TMP/d1.prom"
[ "$(m d1 keel_destination_drained cluster=voice destination="$da2")" = 1 ] || fail "$da2 does not show drained"
n2=$(( $(m d1 keel_calls_seized_total destination="$da2") - $(m d0 keel_calls_seized_total destination="$da2") ))
n1=$(( $(m d1 keel_calls_seized_total destination="$da") - $(m d0 keel_calls_seized_total destination="$da") ))
nb=$(( $(m d1 keel_calls_seized_total destination="$db") - $(m d0 keel_calls_seized_total destination="$db") ))
echo "while $da2 drained: new calls $da2 $n2, $da $n1, $db $nb"
[ "$n2" -eq 0 ] || fail "$n2 new calls reached the drained destination $da2"
[ "$n1" -ge 5 ] || fail "zone-a's other destination took only $n1 of 30 new calls"
[ $((n1 + nb)) -eq 30 ] || fail "the new calls went $n1 + $nb, not 30"
bye_a=$(( $(m d1 keel_sip_requests_forwarded_total method=BYE zone=zone-a) - $(m d0 keel_sip_requests_forwarded_total method=BYE zone=zone-a) ))
[ "$bye_a" -eq $(( $(m d0 keel_calls_in_flight zone=zone-a) + n1 )) ] \
    || fail "$bye_a BYEs reached zone-a; it had $(m d0 keel_calls_in_flight zone=zone-a) long calls and $n1 new ones"
pass "destination $da2 drained (and kept by a reload): 0 of 30 new calls on it, $n1 on the rest of zone-a; BYEs all forwarded"

post_ok "/v1/zones/zone-a/destinations/$enc/undrain"
short short4 40
sleep 0.5
scrape "$TMP/d2.prom"
n2=$(( $(m d2 keel_calls_seized_total destination="$da2") - $(m d1 keel_calls_seized_total destination="$da2") ))
echo "undrained: $da2 took $n2 of 40"
[ "$n2" -ge 5 ] || fail "undrained $da2 took only $n2 of 40 new calls"
pass "destination undrained: it takes calls again ($n2 of 40)"

# every call each server took ended with its BYE
sleep 1.5
for s in uasa uasa2 uasb; do
    in=$(uas_count $s INVITE_Recv); bye=$(uas_count $s BYE_Recv)
    echo "$s: INVITEs $in, BYEs $bye"
    [ "$in" -eq "$bye" ] || fail "$s: $in calls, $bye BYEs"
done
scrape "$TMP/end.prom"
for d in "$da" "$da2" "$db"; do
    [ "$(m end keel_calls_seized_total destination="$d")" = "$(m end keel_calls_answered_total destination="$d")" ] \
        || fail "$d: seized and answered differ"
done
[ "$(m end keel_calls_seized_total destination="$da2")" = "$(uas_count uasa2 INVITE_Recv)" ] \
    || fail "keel's seizures on $da2 differ from what its server saw"
[ "$(m end keel_calls_seized_total destination="$da")" = "$(uas_count uasa INVITE_Recv)" ] \
    || fail "keel's seizures on $da differ from what its server saw"
pass "every call on every server (drained or not) got its BYE; keel's counts match the servers'"
stop_keel
