#!/usr/bin/env bash
# Health checks (DESIGN.md "Resilience semantics"), under a steady call load
# (20 calls/s, 50/50 over zone-a and zone-b): zone-a's server stops
# answering anything (SIGSTOP: its socket stays open, so no ICMP, it is
# silent). keel marks it down within fall x interval (+10% jitter) +
# timeout (+ margin), logged once and counted, and sends it no new call;
# no new call fails meanwhile (each one fails over). The server comes back
# (a new SIPp on the same port): keel marks it up after `rise` passing
# probes and it takes calls again.
# WORKERS=2 UAC_ARGS="-t un ..." (resil_health_down_up_workers): the same with
# two workers and a caller using a socket per call, so both workers route
# calls: the prober (worker 0) decides, the other follows at once.
source "$(dirname "$0")/lib/common.sh"

INTERVAL_MS=1000 TIMEOUT_MS=500 FALL=3 RISE=2
port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb \
    interval=${INTERVAL_MS}ms timeout=${TIMEOUT_MS}ms fall=$FALL rise=$RISE \
    attempt_timeout=500ms window=2s admin="$ADMIN_PORT" workers="${WORKERS:-1}"
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

# a stopped process ignores SIGTERM: kill it outright on the way out, then
# the usual cleanup (errexit off first: "(exit 1)" must not end the trap)
STOPPED=
trap 'rc_=$?; set +e; [ -n "$STOPPED" ] && kill -KILL "$STOPPED" 2>/dev/null; (exit $rc_); _cleanup' EXIT

DA="sip:127.0.0.1:$pa"
m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
a_up() { [ "$(m keel_destination_up zone=zone-a destination="$DA")" = "$1" ]; }
seized_a() { m keel_calls_seized_total zone=zone-a destination="$DA"; }
now() { date +%s.%3N; }
# log_at REGEX: Unix time (s) of the first line of keel's log matching REGEX
log_at() {
    python3 - "$TMP/keel.log" "$1" <<'PY'
import datetime, re, sys
for line in open(sys.argv[1]):
    if re.search(sys.argv[2], line):
        ts = re.match(r"ts=(\S+)Z", line).group(1)
        d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
        print("%.3f" % d.timestamp())
        sys.exit(0)
sys.exit(1)
PY
}
fcmp() { python3 -c "import sys; sys.exit(0 if $1 else 1)"; }

a_up 1 || fail "zone-a is not up at start"
# 20 calls/s for 30 s, each held 100 ms
run_uac uac "127.0.0.1:$port" resil_uac_call.xml -s 1000 -m 600 -r 20 -d 100 -timeout 90s \
    ${UAC_ARGS:-} \
    -trace_counts &
UAC=$!
PIDS+=("$UAC")
sleep 4
[ "$(seized_a)" != 0 ] || fail "zone-a took no call before its server stopped"

# ---- zone-a's server goes silent ----
kill -STOP "$uasa_PID"
STOPPED=$uasa_PID
t_stop=$(now)
wait_until 10 a_up 0 || fail "zone-a still up 10 s after its server went silent"
t_down=$(log_at "event=destination_down zone=zone-a") || fail "no destination_down logged for zone-a"
detect=$(python3 -c "print('%.2f' % ($t_down - $t_stop))")
limit=$(python3 -c "print('%.2f' % ($FALL * $INTERVAL_MS * 1.1 / 1000 + $TIMEOUT_MS / 1000 + 1))")
echo "zone-a marked down ${detect} s after its server went silent (bound ${limit} s)"
fcmp "$detect <= $limit" || fail "detection took ${detect} s, fall x interval + timeout is $(python3 -c "print($FALL * $INTERVAL_MS / 1000 + $TIMEOUT_MS / 1000)") s"
grep "event=destination_down zone=zone-a" "$TMP/keel.log"
[ "$(grep -c "event=destination_down zone=zone-a" "$TMP/keel.log")" = 1 ] || fail "destination_down logged more than once"
# a silent server gives no transport error (no ICMP, no reset): the probes
# (or the breaker's ejection, a separate event) are the evidence, and the log
# must say which
grep "event=destination_down zone=zone-a" "$TMP/keel.log" | grep -q "by=probe" \
    || fail "zone-a marked down by=$(grep -o "event=destination_down zone=zone-a .*by=[a-z_]*" "$TMP/keel.log" | sed 's/.*by=//'), but its server was only silent: no transport error happened"
[ "$(m keel_destination_health_changes_total zone=zone-a destination="$DA" to=down)" = 1 ] \
    || fail "keel_destination_health_changes_total{to=down} is not 1"
[ "$(m keel_health_probes_total zone=zone-a result=timeout)" != 0 ] || fail "no probe timeout counted"
pass "a silent destination is marked down in ${detect} s (fall $FALL x interval ${INTERVAL_MS} ms + timeout ${TIMEOUT_MS} ms)"

# no new call goes to it while down
s1=$(seized_a)
sleep 3
s2=$(seized_a)
[ "$s1" = "$s2" ] || fail "zone-a got $((s2 - s1)) new calls while down"
a_up 0 || fail "zone-a came back up while its server is still silent"
pass "a destination that is down gets no new calls (3 s at 20 calls/s)"

# ---- the server comes back: a new SIPp on the same port ----
kill -KILL "$uasa_PID"
wait "$uasa_PID" 2>/dev/null || true
_pids_forget "$uasa_PID"
STOPPED=
start_uas uasa2 "$pa" uas_call.xml
t_back=$(now)
wait_until 10 a_up 1 || fail "zone-a not up 10 s after its server came back"
t_up=$(log_at "event=destination_up zone=zone-a") || fail "no destination_up logged for zone-a"
rise=$(python3 -c "print('%.2f' % ($t_up - $t_back))")
limit=$(python3 -c "print('%.2f' % ($RISE * $INTERVAL_MS * 1.1 / 1000 + $TIMEOUT_MS / 1000 + 1))")
echo "zone-a marked up ${rise} s after its server came back (bound ${limit} s)"
fcmp "$rise <= $limit" || fail "coming back took ${rise} s, rise x interval is $((RISE * INTERVAL_MS)) ms"
[ "$(m keel_destination_health_changes_total zone=zone-a destination="$DA" to=up)" = 1 ] \
    || fail "keel_destination_health_changes_total{to=up} is not 1"
pass "it is marked up after $RISE passing probes (${rise} s)"

s3=$(seized_a)
sleep 3
s4=$(seized_a)
echo "zone-a took $((s4 - s3)) calls in the 3 s after it came back"
[ $((s4 - s3)) -ge 5 ] || fail "zone-a took only $((s4 - s3)) calls in 3 s after coming back"
pass "it takes calls again"

rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
ok=$(stat uac "SuccessfulCall(C)"); bad=$(stat uac "FailedCall(C)")
echo "calls: $ok succeeded, $bad failed"
[ $rc -eq 0 ] && [ "$ok" = 600 ] || fail "not every call was answered ($ok ok, $bad failed): $(tail -5 "$TMP/uac.log")"
scrape "$TMP/end.prom"
[ "$(metric "$TMP/end.prom" keel_sip_responses_sent_total method=INVITE code=5xx)" = 0 ] \
    && [ "$(metric "$TMP/end.prom" keel_sip_responses_sent_total method=INVITE code=4xx)" = 0 ] \
    || fail "keel answered INVITEs with errors"
pass "600 new calls, 0 failed, through the outage and the return"
stop_keel
