#!/usr/bin/env bash
# The cookie secret changes live: calls set up under the old secret keep
# routing their BYEs by their Record-Route cookie for cookie_secret_grace
# after the reload, new calls use the new secret; once the grace has run
# out, a BYE carrying a cookie signed with the retired secret is refused
# (403) and never reaches a server.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() { python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml.new" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    admin="$ADMIN_PORT" "$@" && mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"; }
reload() {
    local code
    code=$(admin_code POST /v1/reload)
    [ "$code" = 200 ] || fail "reload: HTTP $code: $(cat "$TMP/admin.body")"
}
m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
calls_up() { [ "$(m keel_calls_in_flight)" = "$1" ]; }
conf secret=first-secret-for-the-cookies-0123456789 grace=10s
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

# ---- within the grace: calls up across the change all end well ----
run_uac long1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 10 -r 20 -d 2000 -timeout 20s &
p1=$!
PIDS+=("$p1")
wait_until 5 calls_up 10 || fail "the 10 long calls are not up"
conf secret=second-secret-for-the-cookies-0123456789 grace=2s
reload
run_uac new1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 10 -r 20 -d 100 -timeout 20s \
    || fail "calls under the new secret failed: $(tail -5 "$TMP/new1.log")"
rc=0
wait "$p1" || rc=$?
_pids_forget "$p1"
[ $rc -eq 0 ] || fail "calls set up under the old secret lost their BYE after the change (rc=$rc): $(tail -5 "$TMP/long1.log")"
rejected0=$(m keel_requests_rejected_total code=403)
[ "$rejected0" = 0 ] || fail "403s within the grace: $rejected0"
pass "secret changed with 10 calls up: their BYEs still routed (grace), 10 new calls fine"

# ---- after the grace: the retired secret's cookies are refused ----
sleep 0.5
# BYEs keel forwarded (SIPp, when its BYE is refused, aborts the call with a
# BYE of its own straight to the server's Contact: the servers' counts would
# see those)
byes_fwd() { scrape "$TMP/bye.prom"; awk '/^keel_sip_requests_forwarded_total\{method="BYE"/ {s += $2} END {print s + 0}' "$TMP/bye.prom"; }
bye0=$(byes_fwd)
run_uac long2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 6 -r 20 -d 4500 -timeout 20s &
p2=$!
PIDS+=("$p2")
wait_until 5 calls_up 6 || fail "the 6 long calls are not up"
# signed with the second secret; the third one gives it 2 s of grace, the
# BYEs come 4.5 s after the answers
conf secret=third-secret-for-the-cookies-0123456789 grace=2s
reload
rc=0
wait "$p2" || rc=$?
_pids_forget "$p2"
failed=$(stat long2 "FailedCall(C)")
echo "long2: rc=$rc failed=$failed 403s=$(m keel_requests_rejected_total code=403)"
[ "$failed" = 6 ] || fail "$failed of 6 BYEs with an expired cookie failed; keel followed the others"
[ "$(m keel_requests_rejected_total code=403)" -ge 6 ] || fail "keel counted $(m keel_requests_rejected_total code=403) 403s"
sleep 1.5
bye1=$(byes_fwd)
[ "$bye1" = "$bye0" ] || fail "keel forwarded $((bye1 - bye0)) BYEs with an expired cookie"
pass "after the grace: 6 BYEs with the retired secret's cookie refused with 403, none reached a server"

run_uac new2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 10 -r 20 -d 100 -timeout 20s \
    || fail "calls under the third secret failed: $(tail -5 "$TMP/new2.log")"
pass "calls under the third secret complete"
stop_keel
