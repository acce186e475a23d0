#!/usr/bin/env bash
# Retry budget (DESIGN.md "Resilience semantics"): a total outage, every
# destination (two per zone, two zones) answering 503 to every INVITE,
# must not be amplified by failover. 200 calls/s for 24 s, max_attempts 3,
# retry_budget { percent: 20, min: 3 }: failovers over 10 s are at most 20%
# of new requests + 3/s, so once the first 10 s have filled the budget's
# window, upstream INVITEs per caller INVITE must be <= 1.25 (1 + 0.2 +
# 3/200 = 1.215 by the rate limit, less by the concurrency one). Every
# caller gets its answer (500: a 503 from upstream goes out as 500).
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); ADMIN_PORT=$(free_port)
pa1=$(free_port); pa2=$(free_port); pb1=$(free_port); pb2=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pa1,127.0.0.1:$pa2 zone=zone-b:50:127.0.0.1:$pb1,127.0.0.1:$pb2 \
    max_attempts=3 retry_percent=20 retry_min=3 interval=1s timeout=500ms admin="$ADMIN_PORT"
for s in a1:$pa1 a2:$pa2 b1:$pb1 b2:$pb2; do
    start_uas "uas${s%%:*}" "${s#*:}" uas_503.xml
done
start_keel "$TMP/keel.yaml"

snap() { # snap NAME: caller INVITEs and upstream INVITE attempts now
    scrape "$TMP/$1.prom"
    echo "$(metric "$TMP/$1.prom" keel_sip_requests_received_total method=INVITE) $(metric "$TMP/$1.prom" keel_calls_seized_total)"
}
run_uac uac "127.0.0.1:$port" resil_uac_call_fail.xml -s 1000 -m 4800 -r 200 -l 2000 -timeout 60s &
UAC=$!
PIDS+=("$UAC")
sleep 10
read -r c10 s10 < <(snap t10)
sleep 12
read -r c22 s22 < <(snap t22)
rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
sleep 1.5
read -r cend send < <(snap end)
e() { metric "$TMP/end.prom" "$@"; }

ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.3f' % (a / b if b else 99))" "$1" "$2"; }
first=$(ratio "$s10" "$c10")
steady=$(ratio "$((s22 - s10))" "$((c22 - c10))")
upstream=0
for n in a1 a2 b1 b2; do upstream=$((upstream + $(uas_count "uas$n" INVITE_Recv))); done
echo "first 10 s: $c10 caller INVITEs, $s10 upstream ($first per call)"
echo "10 s..22 s: $((c22 - c10)) caller INVITEs, $((s22 - s10)) upstream ($steady per call)"
echo "total: $cend caller INVITEs, $send upstream attempts by keel, $upstream INVITEs at the servers"
echo "budget: exhausted $(e keel_retry_budget_exhausted_total cluster=voice) times; failovers $(e keel_failovers_total);" \
    "panics $(e keel_cluster_panic_total); ejections $(e keel_destination_ejections_total)"
echo "answers: $(grep -E '^keel_sip_responses_sent_total\{method="INVITE"' "$TMP/end.prom" | tr '\n' ' ')"

[ $rc -eq 0 ] || fail "not every caller got its 500/503: $(tail -5 "$TMP/uac.log")"
[ "$upstream" = "$send" ] || fail "keel counted $send upstream INVITEs, the servers saw $upstream"
[ "$(e keel_retry_budget_exhausted_total cluster=voice)" != 0 ] || fail "the retry budget never ran out"
python3 -c "import sys; sys.exit(0 if float('$steady') <= 1.25 else 1)" \
    || fail "a total outage made keel send $steady upstream INVITEs per caller INVITE once the budget was spent (at most 1.25)"
pass "total outage: $steady upstream INVITEs per caller INVITE after the first 10 s (<= 1.25), $first before"
# every failover is one more attempt upstream: a failover the budget
# refused did not happen and must not be counted as one
[ "$(e keel_failovers_total)" = "$((send - cend))" ] \
    || fail "keel_failovers_total is $(e keel_failovers_total), but only $((send - cend)) attempts beyond the first were made ($send attempts for $cend calls): failovers refused by the retry budget are counted as failovers"
pass "keel_failovers_total matches the extra attempts ($((send - cend)))"
stop_keel
