#!/usr/bin/env bash
# Overload shedding order (DESIGN.md "Resilience semantics": "Shedding
# order: chat, then other, then calls; shed requests get 503 with
# Retry-After, plus RFC 7339 oc feedback to callers that support it").
# The controller is driven by the worker's CPU share against
# admission.max_cpu_percent; set to 1% here so that a light load (20
# calls/s, 50 MESSAGEs/s) counts as overload. Sampled every 0.1 s:
#  - calls are shed only once chat is shed entirely, and never all of them
#    (some calls always get through);
#  - a shed INVITE gets 503 + Retry-After, and when its Via advertised oc
#    (RFC 7339), the 503's Via carries oc, oc-algo="loss", oc-validity and
#    oc-seq; without oc on the Via, none of them;
#  - back under the limit (reload to 90%), shedding relaxes in reverse:
#    calls first, chat last; then every call goes through again.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); pca=$(free_port); pcb=$(free_port)
ADMIN_PORT=$(free_port)
conf() {
    python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml.new" "$port" \
        zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb \
        chat_zone=zone-a:50:127.0.0.1:$pca chat_zone=zone-b:50:127.0.0.1:$pcb \
        interval=1s timeout=500ms admin="$ADMIN_PORT" "$@" && mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"
}
conf max_cpu_percent=1
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_uas chata "$pca" uas_message.xml
start_uas chatb "$pcb" uas_message.xml
start_keel "$TMP/keel.yaml"

sampler() { # sampler FILE: "chat call other busy" every 0.1 s
    while :; do
        admin_get /metrics 2>/dev/null | python3 -c 'import re, sys
t = sys.stdin.read()
v = dict(re.findall(r"^keel_shed_ratio\{class=\"(\w+)\"\}\s+(\S+)", t, re.M))
b = re.search(r"^keel_worker_busy_ratio\s+(\S+)", t, re.M)
print(v.get("chat", "?"), v.get("call", "?"), v.get("other", "?"), b.group(1) if b else "?")' >>"$1" || true
        sleep 0.1
    done
}
# order.py FILE FIRST SECOND: every sample with SECOND shed > 0 has FIRST
# shed at 1; prints the counts
order() {
    python3 - "$@" <<'PY'
import sys
f, first, second = sys.argv[1], sys.argv[2], sys.argv[3]
idx = {"chat": 0, "call": 1, "other": 2}
rows = []
for l in open(f):
    p = l.split()
    try:
        rows.append([float(x) for x in p[:4]])
    except ValueError:
        pass
bad = [r for r in rows if r[idx[second]] > 0 and r[idx[first]] < 1]
print("%d samples, %d with %s shed, %d with %s shed while %s was not fully shed; max call %.2f, max chat %.2f"
      % (len(rows), sum(1 for r in rows if r[idx[second]] > 0), second, len(bad), second, first,
         max(r[1] for r in rows), max(r[0] for r in rows)))
sys.exit(1 if bad or not rows else 0)
PY
}

sampler "$TMP/up.txt" &
S=$!
PIDS+=("$S")
run_uac calls "127.0.0.1:$port" resil_uac_call_or_503.xml -s 1000 -m 160 -r 20 -d 100 -timeout 40s -trace_counts &
C=$!
PIDS+=("$C")
run_uac chat "127.0.0.1:$port" resil_uac_message_flood.xml -s chat -m 400 -r 50 -timeout 40s &
H=$!
PIDS+=("$H")
shed_calls() { [ "$(tail -1 "$TMP/up.txt" | awk '{print ($2 > 0.3)}')" = 1 ]; }
wait_until 8 shed_calls || fail "calls were never shed with max_cpu_percent 1: $(tail -3 "$TMP/up.txt")"

# ---- the 503 of a shed INVITE, with and without oc on the Via ----
cat >"$TMP/oc.py" <<'PY'
import sys
import sip
port, want_oc = int(sys.argv[1]), sys.argv[2] == "oc"
for i in range(40):
    u = sip.Udp(port)
    req = sip.request("INVITE", "sip:1000@127.0.0.1:%d" % port, local_port=u.local_port)
    if want_oc:
        req = req.replace(b";rport\r\n", b";rport;oc\r\n", 1)
    r = u.ask(req, timeout=2)
    u.close()
    if r is not None and r.code == 503 and "Overloaded" in r.reason:
        print("%s|%s|%s" % (r.code, r.get("Retry-After"), r.get("Via") or r.get("v")))
        sys.exit(0)
print("no 503 Overloaded in 40 INVITEs")
sys.exit(1)
PY
with=$(python3 "$TMP/oc.py" "$port" oc) || fail "shedding calls, yet $with"
without=$(python3 "$TMP/oc.py" "$port" plain) || fail "shedding calls, yet $without"
echo "shed INVITE, Via with oc:    $with"
echo "shed INVITE, Via without oc: $without"

rc=0
wait "$C" || rc=$?
wait "$H" || true
_pids_forget "$C"
_pids_forget "$H"
[ $rc -eq 0 ] || fail "a call got neither 200 nor 503 with Retry-After: $(tail -5 "$TMP/calls.log")"
order "$TMP/up.txt" chat call || fail "calls were shed before chat was shed entirely"
python3 -c 'import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if max(float(r[1]) for r in rows if r[1] != "?") < 1 else 1)' "$TMP/up.txt" \
    || fail "every call was shed: some must always get through"
ok=$(stat calls "SuccessfulCall(C)")
answered=$(metric <(admin_get /metrics) keel_calls_answered_total)
echo "calls: $ok of 160 completed as scripted, $answered answered (the rest refused 503 Overloaded)"
[ "${answered%.*}" -gt 0 ] || fail "no call at all was answered while shedding"
pass "overload: chat shed first and entirely, calls only after, never all"

case "$with" in
503\|[0-9]*\|*";oc="[0-9]*) ;;
*) fail "a shed INVITE whose Via advertised oc: the 503 lacks Retry-After or oc=: $with" ;;
esac
for p in 'oc-algo="loss"' 'oc-validity=' 'oc-seq='; do
    [[ "$with" == *"$p"* ]] || fail "the 503's Via lacks $p (RFC 7339): $with"
done
[[ "$without" == 503\|[0-9]* ]] || fail "a shed INVITE without oc: no Retry-After: $without"
[[ "$without" != *"oc="* && "$without" != *"oc-"* ]] || fail "oc feedback sent to a caller that did not advertise oc: $without"
pass "a shed INVITE gets 503 + Retry-After, with RFC 7339 oc feedback only when its Via advertised oc"

# ---- back under the limit: relax in reverse, calls first ----
stop_pid "$S"
conf max_cpu_percent=90
kill -HUP "$KEEL_PID"
sampler "$TMP/down.txt" &
S=$!
PIDS+=("$S")
relaxed() { [ "$(tail -1 "$TMP/down.txt" 2>/dev/null | awk '{print ($1 == 0 && $2 == 0)}')" = 1 ]; }
wait_until 15 relaxed || fail "shedding did not relax under max_cpu_percent 90: $(tail -3 "$TMP/down.txt")"
stop_pid "$S"
order "$TMP/down.txt" chat call || fail "relaxing: chat came back before calls were back entirely"
run_uac after "127.0.0.1:$port" uac_call.xml -s 1000 -m 40 -r 20 -d 100 -timeout 30s \
    || fail "calls failed once the overload was over: $(tail -5 "$TMP/after.log")"
pass "relaxed in reverse (calls first); every call goes through again"
stop_keel
