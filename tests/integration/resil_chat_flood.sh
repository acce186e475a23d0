#!/usr/bin/env bash
# Bulkheads per traffic class (DESIGN.md "Resilience semantics"): a MESSAGE
# flood cannot take call capacity. zone-a and zone-b each allow 5 chat
# transactions (limits.chat 5; limits.transactions 40, limits.calls 100);
# MESSAGE goes to cluster chat, whose servers (same zone names) answer
# after 200 ms. The flood, 500 MESSAGEs/s for 8 s, would hold ~100 chat
# transactions open: 10x the chat budget of the two zones. Meanwhile 20
# calls/s for 10 s: every call succeeds, chat never holds more than its 5
# per zone, the excess MESSAGEs get 503 at once.
# (Kamailio: a MESSAGE flood to the zones cut call success to 32%.)
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); pca=$(free_port); pcb=$(free_port)
ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb \
    chat_zone=zone-a:50:127.0.0.1:$pca chat_zone=zone-b:50:127.0.0.1:$pcb \
    limits.zone-a=calls:100,chat:5,transactions:40 limits.zone-b=calls:100,chat:5,transactions:40 \
    interval=1s timeout=500ms admin="$ADMIN_PORT"
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_uas chata "$pca" resil_uas_message_slow.xml
start_uas chatb "$pcb" resil_uas_message_slow.xml
start_keel "$TMP/keel.yaml"

# chat occupancy per zone, sampled every 0.2 s while the flood runs
sample() {
    while :; do
        admin_get /metrics 2>/dev/null | grep -E '^keel_bulkhead_occupancy\{zone="zone-[ab]",kind="(chat|transactions)"\}' \
            | tr '\n' ' ' >>"$TMP/occ.txt" || true
        echo >>"$TMP/occ.txt"
        sleep 0.2
    done
}

run_uac calls "127.0.0.1:$port" uac_call.xml -s 1000 -m 200 -r 20 -d 500 -timeout 60s &
CALLS=$!
PIDS+=("$CALLS")
sleep 1
sample &
SAMPLER=$!
PIDS+=("$SAMPLER")
run_uac flood "127.0.0.1:$port" resil_uac_message_flood.xml -s chat -m 4000 -r 500 -l 2000 -timeout 40s || true
stop_pid "$SAMPLER"
rc=0
wait "$CALLS" || rc=$?
_pids_forget "$CALLS"
ok=$(stat calls "SuccessfulCall(C)"); bad=$(stat calls "FailedCall(C)")
sleep 1.5
scrape "$TMP/end.prom"
e() { metric "$TMP/end.prom" "$@"; }
sent=$(stat flood "OutgoingCall(C)")
full=$(e keel_requests_rejected_total code=503 reason=capacity_full)
delivered=$(( $(uas_count chata MESSAGE_Recv) + $(uas_count chatb MESSAGE_Recv) ))
echo "flood: $sent MESSAGEs sent, $delivered delivered, $full refused (capacity_full);" \
    "MESSAGE answers: 2xx=$(e keel_sip_responses_sent_total method=MESSAGE code=2xx) 5xx=$(e keel_sip_responses_sent_total method=MESSAGE code=5xx)"
echo "rejections: $(grep -E '^keel_requests_rejected_total' "$TMP/end.prom" | tr '\n' ' ')"
echo "calls: $ok succeeded, $bad failed"
maxocc=$(python3 - "$TMP/occ.txt" <<'PY'
import re, sys
mx = {}
for line in open(sys.argv[1]):
    for zone, kind, v in re.findall(r'zone="([^"]+)",kind="([^"]+)"\}\s+(\S+)', line):
        mx[(zone, kind)] = max(mx.get((zone, kind), 0), float(v))
print(" ".join("%s/%s=%g" % (z, k, v) for (z, k), v in sorted(mx.items())))
PY
)
echo "max occupancy during the flood: $maxocc"

[ "$sent" -ge 3000 ] || fail "the flood sent only $sent MESSAGEs"
[ "$full" -ge $((sent / 2)) ] || fail "only $full of $sent MESSAGEs were refused for capacity: the chat bulkhead did not bind"
[ "$delivered" -gt 0 ] || fail "no MESSAGE was delivered at all"
for z in zone-a zone-b; do
    v=$(echo "$maxocc" | tr ' ' '\n' | sed -n "s#^$z/chat=##p")
    [ -n "$v" ] && [ "${v%.*}" -le 5 ] || fail "$z held $v chat transactions, its limit is 5"
done
[ $rc -eq 0 ] && [ "$ok" = 200 ] \
    || fail "call success fell to $ok of 200 during the chat flood: $(tail -5 "$TMP/calls.log")"
[ "$(e keel_calls_seized_total)" = 200 ] || fail "200 calls made $(e keel_calls_seized_total) attempts"
pass "a MESSAGE flood at 10x the chat budget: 200 of 200 calls succeeded, chat held <= 5 per zone, $full MESSAGEs got 503"
stop_keel
