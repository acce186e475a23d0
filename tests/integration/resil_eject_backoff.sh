#!/usr/bin/env bash
# Circuit breaker over time (DESIGN.md "Resilience semantics"): an ejection
# lasts base_ejection x times ejected, capped at max_ejection (1 s and 3 s
# here); after it the destination is half-open and takes 1 request; a
# failed trial ejects it again for longer, a passing one closes it (into
# slow-start). zone-a (preferred, so every call tries it first when it may)
# answers 503 to everything; zone-b answers. Probes are off: only the
# breaker acts.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb prefer_local=true health=false \
    consecutive_failures=5 base_ejection=1s max_ejection=3s window=2s admin="$ADMIN_PORT"
start_uas uasa "$pa" uas_503.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"
A="sip:127.0.0.1:$pa"

# ---- 9.5 s of calls against a failing zone-a ----
run_uac uac1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 190 -r 20 -d 100 -timeout 40s \
    || fail "sipp uac1: not every call succeeded: $(tail -5 "$TMP/uac1.log")"
sleep 1.2
grep -o "event=destination_ejected zone=zone-a .*" "$TMP/keel.log" | tee "$TMP/ejections.txt"
n=$(uas_count uasa INVITE_Recv)
ej=$(wc -l <"$TMP/ejections.txt")
echo "zone-a saw $n INVITEs, was ejected $ej times"
python3 - "$TMP/ejections.txt" <<'PY' || fail "ejections do not grow as base x times, capped (see above)"
import re, sys
rows = [dict(re.findall(r"(\w+)=(\S+)", l)) for l in open(sys.argv[1])]
bad = []
if len(rows) < 4:
    bad.append("%d ejections in 9.5 s; 1+2+3+3 s of ejection means at least 4" % len(rows))
for i, r in enumerate(rows):
    want_why = "consecutive_failures" if i == 0 else "trial_failed"
    times, ms = int(r["times"]), int(r["for_ms"])
    if r["why"] != want_why:
        bad.append("ejection %d: why=%s, expected %s" % (i + 1, r["why"], want_why))
    if times != min(i + 1, 3):
        bad.append("ejection %d: times=%d, expected %d (the multiplier grows, capped at max/base = 3)" % (i + 1, times, min(i + 1, 3)))
    if abs(ms - 1000 * min(i + 1, 3)) > 150:
        bad.append("ejection %d: for_ms=%d, expected %d" % (i + 1, ms, 1000 * min(i + 1, 3)))
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
# 5 failures, then exactly one trial per half-open period
[ "$n" -eq $((5 + ej - 1)) ] || [ "$n" -eq $((5 + ej)) ] \
    || fail "zone-a saw $n INVITEs for $ej ejections: a half-open destination takes 1 request (expected $((5 + ej - 1)) or $((5 + ej)))"
pass "ejections grew 1 s, 2 s, 3 s (capped), one trial request between them ($n INVITEs, $ej ejections)"

# ---- zone-a is fixed: the next trial closes the breaker, into slow-start ----
stop_pid "$uasa_PID"
start_uas uasa2 "$pa" uas_call.xml
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 100 -r 20 -d 100 -timeout 40s \
    || fail "sipp uac2: not every call succeeded: $(tail -5 "$TMP/uac2.log")"
sleep 1.2
grep "event=destination_recovered zone=zone-a" "$TMP/keel.log" | tail -1
grep -q "event=destination_recovered zone=zone-a dest=$A by=trial" "$TMP/keel.log" \
    || fail "the breaker did not close on a passing trial"
n2=$(uas_count uasa2 INVITE_Recv)
echo "fixed zone-a took $n2 of the next 100 calls"
[ "$n2" -ge 60 ] || fail "zone-a (preferred) took only $n2 of 100 calls after its breaker closed"
scrape "$TMP/end.prom"
[ "$(metric "$TMP/end.prom" keel_destination_ejected destination="$A")" = 0 ] || fail "zone-a still counted as ejected"
pass "a passing trial closed the breaker; zone-a takes its calls again ($n2 of 100)"
stop_keel
