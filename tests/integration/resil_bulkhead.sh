#!/usr/bin/env bash
# Bulkheads (DESIGN.md "Resilience semantics"): zone-a and zone-b each
# capped at limits.calls 10 (INVITEs in progress + established calls);
# zone-a preferred (prefer_local). With long calls: the first 10 go to
# zone-a, the 11th spills to zone-b; with both zones full a new call gets
# 503 with Retry-After at once, nothing sent upstream. When the calls end
# the occupancy is back to 0 and calls go through again.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb \
    limits.zone-a=calls:10 limits.zone-b=calls:10 prefer_local=true \
    interval=1s timeout=500ms admin="$ADMIN_PORT"
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
occ() { m keel_bulkhead_occupancy zone="$1" kind=calls; }
occ_is() { [ "$(occ zone-a)/$(occ zone-b)" = "$1" ]; }
seized() { m keel_calls_seized_total zone="$1"; }

# invite.py PORT: one INVITE from a small client; prints "CODE|REASON|RETRY-AFTER"
# of the final answer (ACKed), or "none" with no answer in 5 s
cat >"$TMP/invite.py" <<'PY'
import re, sys
import sip
port = int(sys.argv[1])
u = sip.Udp(port)
ruri = "sip:1000@127.0.0.1:%d" % port
cid, ftag, br = sip.rand(16) + "@test", sip.rand(8), sip.rand(12)
r = u.ask(sip.request("INVITE", ruri, local_port=u.local_port, call_id=cid, from_tag=ftag,
                      branch=br), timeout=5)
if r is None:
    print("none")
    sys.exit(0)
m = re.search(r";tag=([^;>\s]+)", r.get("To") or "")
u.send(sip.request("ACK", ruri, local_port=u.local_port, call_id=cid, from_tag=ftag, branch=br,
                   cseq="1 ACK", to_tag=m.group(1) if m else None))
print("%d|%s|%s" % (r.code, r.reason, r.get("Retry-After")))
PY

# ---- 11 long calls: 10 fill zone-a, the 11th goes to zone-b ----
run_uac uac1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 11 -r 20 -d 9000 -timeout 40s &
U1=$!
PIDS+=("$U1")
wait_until 8 occ_is 10/1 || fail "occupancy (zone-a/zone-b) is $(occ zone-a)/$(occ zone-b) with 11 calls up, expected 10/1"
[ "$(seized zone-a)" = 10 ] && [ "$(seized zone-b)" = 1 ] \
    || fail "11 calls: zone-a seized $(seized zone-a), zone-b $(seized zone-b); expected 10 and 1"
pass "zone-a capped at 10 calls: the 11th went to zone-b"

# ---- 9 more: zone-b full too ----
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 9 -r 20 -d 7000 -timeout 40s &
U2=$!
PIDS+=("$U2")
wait_until 8 occ_is 10/10 || fail "occupancy is $(occ zone-a)/$(occ zone-b) with 20 calls up, expected 10/10"
[ "$(seized zone-a)" = 10 ] && [ "$(seized zone-b)" = 10 ] || fail "20 calls: seized $(seized zone-a)/$(seized zone-b)"

# ---- both full: 503 with Retry-After, nothing sent upstream ----
for i in 1 2 3; do
    ans=$(python3 "$TMP/invite.py" "$port")
    echo "call $((20 + i)) with both zones full: $ans"
    code=${ans%%|*}
    ra=${ans##*|}
    [ "$code" = 503 ] || fail "a call with both zones full got '$ans', expected 503"
    [ -n "$ra" ] && [ "$ra" != None ] || fail "the 503 carries no Retry-After: '$ans'"
done
[ "$(seized zone-a)" = 10 ] && [ "$(seized zone-b)" = 10 ] \
    || fail "calls refused for capacity were still sent upstream: seized $(seized zone-a)/$(seized zone-b)"
echo "rejected: $(grep -E '^keel_requests_rejected_total' "$TMP/m.prom" | tr '\n' ' ')"
pass "both zones full: 503 with Retry-After, no attempt upstream"

# ---- the calls end: capacity is back ----
rc=0
wait "$U1" || rc=$?
wait "$U2" || rc=$?
_pids_forget "$U1"
_pids_forget "$U2"
[ $rc -eq 0 ] || fail "not every long call succeeded: $(tail -5 "$TMP/uac1.log") $(tail -5 "$TMP/uac2.log")"
wait_until 5 occ_is 0/0 || fail "occupancy $(occ zone-a)/$(occ zone-b) after every call ended, expected 0/0"
run_uac uac3 "127.0.0.1:$port" uac_call.xml -s 1000 -m 15 -r 15 -d 3000 -timeout 30s \
    || fail "calls after the first batch ended did not all succeed: $(tail -5 "$TMP/uac3.log")"
echo "after: zone-a seized $(seized zone-a), zone-b $(seized zone-b)"
[ "$(seized zone-a)" = 20 ] && [ "$(seized zone-b)" = 15 ] \
    || fail "15 new calls (10 fit zone-a): seized $(seized zone-a)/$(seized zone-b), expected 20/15"
wait_until 5 occ_is 0/0 || fail "occupancy $(occ zone-a)/$(occ zone-b) at the end, expected 0/0"
pass "20 long calls ended, occupancy back to 0, 15 new calls spread 10/5 again"
stop_keel
