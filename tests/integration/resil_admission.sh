#!/usr/bin/env bash
# Admission control (DESIGN.md "Resilience semantics", admission; issue 6
# "Overload control"):
#  1. a scanner's User-Agent is dropped silently (no answer at all);
#  2. new_calls_per_s 20 under 60 calls/s: about 20/s admitted, the excess
#     refused at once with 503 + Retry-After; emergency calls (a configured
#     number, and urn:service:sos) all admitted meanwhile;
#  3. emergency calls bypass bulkheads: both zones full, a normal call gets
#     503, an sos call and a 911 call go through;
#  4. per-source token buckets: one source over its rate is refused, another
#     source is not.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() {
    python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml.new" "$port" \
        zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb \
        scanners=friendly-scanner,sipvicious emergency=911,112 interval=1s timeout=500ms \
        admin="$ADMIN_PORT" "$@" && mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"
}
conf new_calls_per_s=20
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"
m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
reload() {
    local v
    v=$(m keel_config_version)
    kill -HUP "$KEEL_PID"
    newer() { [ "$(m keel_config_version)" != "$v" ]; }
    wait_until 5 newer || fail "the reload was not applied"
}

# ask.py PORT METHOD RURI UA [N [SRC_HOST]]: sends N requests (default 1),
# prints one line per request: the final code, or "none" after 1 s
cat >"$TMP/ask.py" <<'PY'
import socket, sys
import sip
port, method, ruri, ua = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 1
src = sys.argv[6] if len(sys.argv) > 6 else "127.0.0.1"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
lp = s.getsockname()[1]
sent = []
for i in range(n):
    req = sip.request(method, ruri, local_port=lp, omit=("User-Agent",), headers=[("User-Agent", ua)])
    req = req.replace(b"SIP/2.0/UDP 127.0.0.1:", ("SIP/2.0/UDP %s:" % src).encode(), 1)
    s.sendto(req, ("127.0.0.1", port))
    sent.append(sip.Response(req).get("Call-ID"))
answers = {}
s.settimeout(1.0)
try:
    while len(answers) < n:
        r = sip.Response(s.recv(70000))
        if r.code >= 200:
            answers[r.get("Call-ID")] = r.code
except socket.timeout:
    pass
for cid in sent:
    print(answers.get(cid, "none"))
PY

# ---- 1. scanners: silence ----
self_ruri="sip:127.0.0.1:$port"
[ "$(python3 "$TMP/ask.py" "$port" OPTIONS "$self_ruri" keel-tests)" = 200 ] || fail "OPTIONS to keel was not answered"
for ua in "friendly-scanner" "sipvicious 0.3" "Friendly-Scanner/1.2"; do
    got=$(python3 "$TMP/ask.py" "$port" OPTIONS "$self_ruri" "$ua")
    [ "$got" = none ] || fail "User-Agent '$ua' got an answer ($got): scanners are dropped silently"
    got=$(python3 "$TMP/ask.py" "$port" INVITE "sip:1000@127.0.0.1:$port" "$ua")
    [ "$got" = none ] || fail "an INVITE from User-Agent '$ua' got an answer ($got)"
done
[ "$(m keel_messages_dropped_total reason=scanner)" = 6 ] \
    || fail "keel_messages_dropped_total{reason=scanner} is $(m keel_messages_dropped_total reason=scanner), expected 6"
[ "$(m keel_calls_seized_total)" = 0 ] || fail "a scanner's INVITE was sent upstream"
pass "scanner User-Agents dropped without an answer (counted)"

# ---- 2. new_calls_per_s 20 under 60 calls/s; emergency calls pass ----
run_uac sos1 "127.0.0.1:$port" resil_uac_sos.xml -m 10 -r 2 -d 100 -timeout 30s &
S1=$!
PIDS+=("$S1")
run_uac e911 "127.0.0.1:$port" uac_call.xml -s 911 -m 10 -r 2 -d 100 -timeout 30s &
S2=$!
PIDS+=("$S2")
t0=$SECONDS
run_uac flood "127.0.0.1:$port" resil_uac_call_or_503.xml -s 1000 -m 360 -r 60 -d 100 -timeout 30s \
    || fail "flood: a call got neither 200 nor 503 with Retry-After: $(tail -5 "$TMP/flood.log")"
secs=$((SECONDS - t0))
rc=0
wait "$S1" || rc=$?
wait "$S2" || rc=$((rc + $?))
_pids_forget "$S1"
_pids_forget "$S2"
sleep 1.5
scrape "$TMP/p2.prom"
e() { metric "$TMP/p2.prom" "$@"; }
limited=$(e keel_requests_rejected_total code=503 reason=call_rate_limited)
seized=$(e keel_calls_seized_total)
admitted=$((seized - 20))
echo "60 calls/s for ~${secs} s: $admitted normal calls admitted, $limited refused (call_rate_limited);" \
    "emergency: sos $(stat sos1 "SuccessfulCall(C)")/10, 911 $(stat e911 "SuccessfulCall(C)")/10"
echo "rejections: $(grep -E '^keel_requests_rejected_total' "$TMP/p2.prom" | tr '\n' ' ')"
[ $rc -eq 0 ] && [ "$(stat sos1 "SuccessfulCall(C)")" = 10 ] && [ "$(stat e911 "SuccessfulCall(C)")" = 10 ] \
    || fail "emergency calls were refused while new calls were rate limited: $(tail -3 "$TMP/sos1.log") $(tail -3 "$TMP/e911.log")"
[ $((admitted + limited)) -eq 360 ] || fail "$admitted admitted + $limited refused is not 360"
[ "$admitted" -ge $((20 * (secs - 1))) ] && [ "$admitted" -le $((20 * (secs + 1) + 20)) ] \
    || fail "$admitted of 360 calls admitted in ${secs} s with new_calls_per_s 20"
pass "new_calls_per_s 20: $admitted of 360 admitted in ${secs} s, the rest 503 + Retry-After; 20 of 20 emergency calls through"

# ---- 3. emergency calls bypass bulkheads ----
conf limits.zone-a=calls:1 limits.zone-b=calls:1
reload
run_uac long "127.0.0.1:$port" uac_call.xml -s 1000 -m 2 -r 10 -d 6000 -timeout 30s &
L=$!
PIDS+=("$L")
full() { [ "$(m keel_bulkhead_occupancy kind=calls)" = 2 ]; }
wait_until 5 full || fail "two long calls did not fill the two zones (occupancy $(m keel_bulkhead_occupancy kind=calls))"
got=$(python3 "$TMP/ask.py" "$port" INVITE "sip:1000@127.0.0.1:$port" keel-tests)
[ "$got" = 503 ] || fail "a normal call with both zones full got $got, expected 503"
run_uac sos2 "127.0.0.1:$port" resil_uac_sos.xml -m 3 -r 5 -d 100 -timeout 20s \
    || fail "an sos call with both zones full failed: $(tail -5 "$TMP/sos2.log")"
run_uac e112 "127.0.0.1:$port" uac_call.xml -s 112 -m 3 -r 5 -d 100 -timeout 20s \
    || fail "a 112 call with both zones full failed: $(tail -5 "$TMP/e112.log")"
rc=0
wait "$L" || rc=$?
_pids_forget "$L"
[ $rc -eq 0 ] || fail "the long calls failed: $(tail -5 "$TMP/long.log")"
pass "both zones full: a normal call gets 503, sos and 112 calls go through"

# ---- 4. per-source buckets ----
conf per_source_rate=20 per_source_burst=20
reload
sleep 1.1 # a full bucket
python3 "$TMP/ask.py" "$port" OPTIONS "sip:1000@127.0.0.1:$port" keel-tests 60 >"$TMP/src1.txt"
python3 "$TMP/ask.py" "$port" OPTIONS "sip:1000@127.0.0.1:$port" keel-tests 10 127.0.0.2 >"$TMP/src2.txt"
ok1=$(grep -c '^200$' "$TMP/src1.txt" || true); no1=$(grep -c '^503$' "$TMP/src1.txt" || true)
ok2=$(grep -c '^200$' "$TMP/src2.txt" || true)
echo "source 127.0.0.1: $ok1 answered, $no1 refused of 60 at once; source 127.0.0.2: $ok2 of 10 answered"
[ "$ok1" -ge 18 ] && [ "$ok1" -le 24 ] && [ $((ok1 + no1)) = 60 ] \
    || fail "a source sending 60 requests at once with rate 20, burst 20: $ok1 answered, $no1 refused"
[ "$ok2" = 10 ] || fail "another source was refused ($ok2 of 10 answered): buckets are per source"
[ "$(m keel_requests_rejected_total code=503 reason=source_rate_limited)" = "$no1" ] \
    || fail "keel_requests_rejected_total{reason=source_rate_limited} is not $no1"
pass "per-source buckets: the busy source is held at its burst, another is not affected"
stop_keel
