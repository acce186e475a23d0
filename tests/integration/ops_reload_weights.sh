#!/usr/bin/env bash
# Zone weights change live: 50/50, then 90/10 by POST /v1/reload, then
# 10/90 by SIGHUP; the split of the new calls follows each time (100 calls a
# phase), counted by keel and by the servers.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() { python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml.new" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    admin="$ADMIN_PORT" "$@" && mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"; }
conf weight_a=50 weight_b=50
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

seized() { scrape "$TMP/s.prom"; metric "$TMP/s.prom" keel_calls_seized_total zone="$1"; }
weights() { admin_get /v1/state | json_eval '[z["weight"] for z in j["clusters"][0]["zones"]]'; }
prev_a=0; prev_b=0
# phase NAME LO HI: 100 calls; zone-a's share (percent) must be in [LO, HI]
phase() {
    local a b sa sb
    run_uac "$1" "127.0.0.1:$port" uac_call.xml -s 1000 -m 100 -r 50 -d 100 -timeout 30s \
        || fail "sipp $1: not every call succeeded: $(tail -5 "$TMP/$1.log")"
    a=$(( $(seized zone-a) - prev_a )); b=$(( $(seized zone-b) - prev_b ))
    prev_a=$((prev_a + a)); prev_b=$((prev_b + b))
    echo "$1 (weights $(weights)): zone-a $a, zone-b $b"
    [ $((a + b)) -eq 100 ] || fail "$1: $((a + b)) seizures for 100 calls"
    [ "$a" -ge "$2" ] && [ "$a" -le "$3" ] || fail "$1: zone-a took $a%, expected [$2%, $3%]"
}

phase p5050 35 65
pass "50/50: split follows"

conf weight_a=90 weight_b=10
code=$(admin_code POST /v1/reload)
[ "$code" = 200 ] || fail "reload to 90/10: HTTP $code: $(cat "$TMP/admin.body")"
[ "$(weights)" = "[90, 10]" ] || fail "/v1/state weights $(weights) after the reload"
phase p9010 80 98
pass "90/10 by POST /v1/reload: split follows"

conf weight_a=10 weight_b=90
kill -HUP "$KEEL_PID"
w1090() { [ "$(weights)" = "[10, 90]" ]; }
wait_until 5 w1090 || fail "SIGHUP to 10/90: /v1/state weights $(weights)"
phase p1090 2 20
pass "10/90 by SIGHUP: split follows"

# the servers saw the same calls keel counted
sleep 1.5
[ "$(uas_count uasa INVITE_Recv)" = "$prev_a" ] || fail "zone-a's server saw $(uas_count uasa INVITE_Recv), keel seized $prev_a"
[ "$(uas_count uasb INVITE_Recv)" = "$prev_b" ] || fail "zone-b's server saw $(uas_count uasb INVITE_Recv), keel seized $prev_b"
[ "$(uas_count uasa BYE_Recv)" = "$prev_a" ] && [ "$(uas_count uasb BYE_Recv)" = "$prev_b" ] \
    || fail "a server call did not end with its BYE"
pass "the servers' counts match keel's ($prev_a/$prev_b)"
stop_keel
