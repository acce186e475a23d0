#!/usr/bin/env bash
# Resolver failure (DESIGN.md "DNS"; issue 7's must-show). Two tiers, the
# answers always available from the secondary (dnsmasq, TTL 5 s: refreshed
# every 4 s). zone-b.test: NAPTR -> SRV (two targets) -> A.
#  1. primary dead (a closed port: refused at once): names resolve through
#     the secondary, the primary is marked down, calls complete.
#  2. primary blackholed (a UDP socket that reads and never answers) from
#     the start: every query is hedged to the secondary after hedge_after
#     and answered within hedge_after plus a few ms (seen from the
#     blackhole: each next step of NAPTR -> SRV -> A arrives hedge_after
#     after the previous one); hedges won are counted, the primary goes
#     down after max_fails timeouts. Then 200 calls/s for 25 s (six TTL
#     refreshes): 0 failed calls, and the p99 INVITE -> 200 time (SIPp
#     -trace_rtt) is within 200 ms of a baseline run with a healthy primary.
#  3. baseline: healthy primary, no hedge sent; then, under the same load,
#     the primary turns into a blackhole (dnsmasq stopped, a silent socket
#     on its port): the next refreshes are hedged, the primary goes down,
#     0 calls fail; it answers again: back up by its probe.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

HEDGE_MS=150 SLACK_MS=${DNS_HEDGE_SLACK_MS:-60} RATE=${DNS_RATE:-200}
port=$(free_port); ADMIN_PORT=$(free_port); sec=$(free_port); prim=$(free_port)
u1=$(free_port); u2=$(free_port)

RECORDS=(--local-ttl=5
    --naptr-record=zone-b.test,10,10,s,SIP+D2U,,_sip._udp.zone-b.test
    --srv-host=_sip._udp.zone-b.test,b1.zone-b.test,$u1,10,50
    --srv-host=_sip._udp.zone-b.test,b2.zone-b.test,$u2,10,50
    --host-record=b1.zone-b.test,127.0.0.1 --host-record=b2.zone-b.test,127.0.0.1)
conf() { # conf FILE PRIMARY_PORT
    python3 "$LIB_DIR/dnsconf.py" "$1" "$port" zone=zone-b:1:sip:zone-b.test \
        tier=primary:127.0.0.1:$2 tier=secondary:127.0.0.1:$sec \
        dns_timeout=500ms hedge_after=${HEDGE_MS}ms max_fails=2 admin="$ADMIN_PORT"
}
m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
targets_are() { [ "$(m keel_dns_targets zone=zone-b name=sip:zone-b.test)" = "$1" ]; }
PUP=(keel_dns_resolver_up tier=primary resolver=127.0.0.1:$prim)
# load NAME CALLS: RATE calls/s through keel, each held 100 ms; the
# INVITE -> 200 times in $TMP/NAME.rtt (one a line: "UNIX_TIME_MS RTT_MS")
load() {
    local t0
    t0=$(date +%s%3N)
    run_uac "$1" "127.0.0.1:$port" uac_call.xml -s 1000 -m "$2" -r "$RATE" -d 100 -timeout 120s \
        -trace_rtt -rtt_freq 100 || true
    python3 - "$TMP" "$1" "$t0" <<'PY'
import glob, os, sys
d, name, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
files = glob.glob(os.path.join(d, "uac_call_*_rtt.csv"))
if len(files) != 1:
    sys.exit("expected one SIPp rtt file, got %s" % files)
with open(os.path.join(d, name + ".rtt"), "w") as out:
    for line in open(files[0]):
        f = line.strip().split(";")
        if len(f) >= 2 and f[0][:1].isdigit():  # Date_ms: since SIPp started
            out.write("%.0f %s\n" % (t0 + float(f[0]), f[1]))
os.remove(files[0])
PY
}
pct() { # pct NAME P: the P-th percentile of $TMP/NAME.rtt
    python3 - "$TMP/$1.rtt" "$2" <<'PY'
import sys
v = sorted(float(l.split()[1]) for l in open(sys.argv[1]) if l.strip())
print("%.1f" % v[min(len(v) - 1, int(len(v) * float(sys.argv[2]) / 100))])
PY
}
calls_ok() { # calls_ok NAME TOTAL: every call of the SIPp run NAME succeeded
    local ok failed
    ok=$(stat "$1" "SuccessfulCall(C)"); failed=$(stat "$1" "FailedCall(C)")
    echo "$1: $ok successful, $failed failed of $2"
    [ "$ok" -eq "$2" ] && [ "$failed" -eq 0 ] \
        || fail "$1: $failed calls failed, $ok of $2 succeeded: $(tail -5 "$TMP/$1.log")"
}

start_dnsmasq sec "$sec" "${RECORDS[@]}"
start_uas uas1 "$u1" uas_call.xml
start_uas uas2 "$u2" uas_call.xml

# ---- 1. the primary is dead: a closed port ----
conf "$TMP/keel1.yaml" "$prim"
start_keel "$TMP/keel1.yaml" keel1
wait_until 5 targets_are 2 || fail "zone-b.test not resolved with the primary dead: $(grep dns "$TMP/m.prom")"
[ "$(m "${PUP[@]}")" = 0 ] || fail "the dead primary is not marked down"
[ "$(m keel_dns_queries_total resolver=127.0.0.1:$sec result=answer)" != 0 ] \
    || fail "no answer counted from the secondary"
[ "$(m keel_dns_tier_failovers_total)" != 0 ] || fail "no tier failover counted"
grep -q "event=resolver_down tier=primary" "$TMP/keel1.log" || fail "no resolver_down logged"
run_uac dead "127.0.0.1:$port" uac_call.xml -s 1000 -m 100 -r 50 -d 100 -timeout 60s || true
calls_ok dead 100
pass "primary dead: resolved through the secondary, primary down, 100 calls completed"
stop_keel

# ---- 2. the primary is blackholed from the start ----
python3 "$LIB_DIR/dnsconf.py" blackhole "$prim" "$TMP/blackhole.queries" &
BH_PID=$!
PIDS+=("$BH_PID")
sleep 0.3
conf "$TMP/keel2.yaml" "$prim"
start_keel "$TMP/keel2.yaml" keel2
wait_until 5 targets_are 2 || fail "zone-b.test not resolved with the primary blackholed: $(grep dns "$TMP/m.prom")"
cat "$TMP/blackhole.queries"
gaps=$(python3 - "$TMP/blackhole.queries" <<'PY'
import sys
first = {}
for line in open(sys.argv[1]):
    t, typ, name = line.split()
    first.setdefault(typ, float(t))
# NAPTR (35) -> SRV (33) -> A (1): each next query is sent when the
# previous one's answer arrived
if not all(k in first for k in ("35", "33", "1")):
    sys.exit("the blackhole did not see NAPTR, SRV and A: %s" % first)
print("%.0f %.0f" % ((first["33"] - first["35"]) * 1e3, (first["1"] - first["33"]) * 1e3))
PY
) || fail "$gaps"
read -r g1 g2 <<<"$gaps"
echo "hedged steps answered after ${g1} ms (NAPTR) and ${g2} ms (SRV); hedge_after ${HEDGE_MS} ms"
for g in $g1 $g2; do
    [ "$g" -ge $((HEDGE_MS - 5)) ] && [ "$g" -le $((HEDGE_MS + SLACK_MS)) ] \
        || fail "a hedged query was answered ${g} ms after it was sent (expected ${HEDGE_MS}..$((HEDGE_MS + SLACK_MS)) ms)"
done
wait_until 3 eval '[ "$(m "${PUP[@]}")" = 0 ]' || fail "the blackholed primary is not marked down"
won=$(m keel_dns_hedges_total result=won); sent=$(m keel_dns_hedges_total result=sent)
tmo=$(m keel_dns_queries_total resolver=127.0.0.1:$prim result=timeout)
echo "hedges sent $sent, won $won; primary timeouts $tmo"
[ "${won%.*}" -ge 3 ] || fail "hedges won: $won (NAPTR, SRV and A were each hedged)"
[ "${tmo%.*}" -ge 2 ] || fail "primary timeouts counted: $tmo"
grep -q "event=resolver_down tier=primary" "$TMP/keel2.log" || fail "no resolver_down logged"
pass "primary blackholed: each query answered by the secondary ${g1}/${g2} ms after it was sent (hedge_after ${HEDGE_MS}), $won hedges won, primary down"

# steady load through TTL refreshes
naptrs() { grep -c "query\[NAPTR\] zone-b.test" "$TMP/sec.log" || true; }
sec_before=$(naptrs)
n_bh=$((RATE * 20))
load bh "$n_bh"
calls_ok bh "$n_bh"
refreshes=$(($(naptrs) - sec_before))
echo "the secondary answered $refreshes refreshes of zone-b.test (its NAPTR queries) during the 20 s load"
[ "$refreshes" -ge 4 ] || fail "only $refreshes refreshes during 20 s with a 5 s TTL"
[ "$(m "${PUP[@]}")" = 0 ] || fail "the blackholed primary came back up"
stop_keel

# ---- 3. baseline: the same load with a healthy primary ----
stop_pid "$BH_PID"
start_dnsmasq prim "$prim" "${RECORDS[@]}"
conf "$TMP/keel3.yaml" "$prim"
start_keel "$TMP/keel3.yaml" keel3
wait_until 5 targets_are 2 || fail "zone-b.test not resolved with a healthy primary"
n_base=$((RATE * 10))
load base "$n_base"
calls_ok base "$n_base"
[ "$(m keel_dns_hedges_total result=sent)" = 0 ] || fail "hedges sent with a healthy primary"
pass "healthy primary: $n_base calls, no hedge sent"

# ---- 4. the healthy primary turns into a blackhole under load ----
n_sw=$((RATE * 12))
(load switch "$n_sw") &
SW_PID=$!
PIDS+=("$SW_PID")
sleep 2
stop_pid "$prim_PID"
python3 "$LIB_DIR/dnsconf.py" blackhole "$prim" "$TMP/blackhole2.queries" &
BH_PID=$!
PIDS+=("$BH_PID")
wait "$SW_PID" || true
_pids_forget "$SW_PID"
calls_ok switch "$n_sw"
won=$(m keel_dns_hedges_total result=won)
hq=$(grep -c "zone-b.test" "$TMP/blackhole2.queries" || true)
echo "after the switch: the blackhole got $hq queries for zone-b.test names, hedges won $won"
[ "$hq" -ge 1 ] || fail "no refresh reached the blackholed primary"
[ "${won%.*}" -ge 1 ] || fail "no hedge won after the primary turned into a blackhole"
[ "$(m "${PUP[@]}")" = 0 ] || fail "the primary is not marked down after it turned into a blackhole"
targets_are 2 || fail "zone-b.test lost its targets"
pass "primary blackholed under load: $n_sw calls, 0 failed, $won hedges won, primary down"
# it answers again: the probe (every 2 s) brings it back
stop_pid "$BH_PID"
start_dnsmasq prim "$prim" "${RECORDS[@]}"
wait_until 5 eval '[ "$(m "${PUP[@]}")" = 1 ]' || fail "the primary not back up 5 s after it answers again"
grep -q "event=resolver_up tier=primary" "$TMP/keel3.log" || fail "no resolver_up logged"
pass "the primary answers again: up within the 2 s probe interval"
stop_keel

b50=$(pct base 50); b99=$(pct base 99); h50=$(pct bh 50); h99=$(pct bh 99); s99=$(pct switch 99)
added=$(python3 -c "print('%.1f' % max(0.0, max($h99, $s99) - $b99))")
echo "INVITE->200 ms: healthy primary p50 $b50 p99 $b99; blackholed primary p50 $h50 p99 $h99; turning blackholed p99 $s99; added p99 $added ms"
slow() { # slow NAME: when the calls slower than 100 ms were placed
    python3 - "$TMP/$1.rtt" <<'PY'
import sys, time
v = [l.split() for l in open(sys.argv[1]) if l.strip()]
s = [(float(t), float(r)) for t, r in v if float(r) > 100]
if s:
    print("%d calls over 100 ms, placed %s..%s (max %.0f ms)" % (
        len(s), "%.3f" % (s[0][0] / 1e3), "%.3f" % (s[-1][0] / 1e3), max(r for _, r in s)))
PY
}
for r in base bh switch; do o=$(slow $r); [ -z "$o" ] || echo "$r: $o"; done
echo "queries the primary got after it turned into a blackhole:"; cat "$TMP/blackhole2.queries"
python3 -c "import sys; sys.exit(0 if $added < 200 else 1)" \
    || fail "the blackholed primary added $added ms to the p99 setup time (limit 200 ms)"
pass "blackholed primary at $RATE calls/s: $((n_bh + n_sw)) calls, 0 failed, $refreshes TTL refreshes, p99 setup $h99/$s99 ms vs $b99 ms healthy (added $added ms)"
