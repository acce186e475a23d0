#!/usr/bin/env bash
# Serve-stale (RFC 8767, DESIGN.md "DNS"): zone-b.test (NAPTR -> SRV -> A,
# TTL 5 s) resolved through two resolvers; then both die (dnsmasq stopped:
# closed ports) while 50 calls/s flow to the name, its only destination.
# After the TTL the last answer is served stale: keel_dns_stale 1, logged,
# keel_dns_stale_answers_total and keel_dns_stale_targets_used_total grow,
# and calls keep completing, none fails. A resolver comes back: the refresh
# retried every 30 s finds it and the name is fresh again.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

# DNS_STALE_SECONDS: how long the calls run (the resolvers die after 1 s);
# 300 for the issue's five-minute figure
SECS=${DNS_STALE_SECONDS:-30}
CALLS=$((SECS * 50))
port=$(free_port); ADMIN_PORT=$(free_port); d1=$(free_port); d2=$(free_port)
u1=$(free_port); u2=$(free_port)

RECORDS=(--local-ttl=5
    --naptr-record=zone-b.test,10,10,s,SIP+D2U,,_sip._udp.zone-b.test
    --srv-host=_sip._udp.zone-b.test,b1.zone-b.test,$u1,10,50
    --srv-host=_sip._udp.zone-b.test,b2.zone-b.test,$u2,10,50
    --host-record=b1.zone-b.test,127.0.0.1 --host-record=b2.zone-b.test,127.0.0.1)
start_dnsmasq dns1 "$d1" "${RECORDS[@]}"
start_dnsmasq dns2 "$d2" "${RECORDS[@]}"
# the servers as start_uas starts them, but with a global timeout past the
# run (start_uas's SIPp quits after 120 s)
uas() { # uas NAME PORT
    (cd "$TMP" && exec sipp -sf "$SCEN/uas_call.xml" -i 127.0.0.1 -p "$2" -mp "$(media_port)" -t u1 -aa -nostdin \
        -timeout $((SECS + 120))s -trace_stat -stf "$TMP/$1.csv" -fd 1 -trace_err \
        -error_file "$TMP/$1.err" -trace_counts >"$TMP/$1.log" 2>&1) &
    eval "${1}_PID=$!"
    PIDS+=("$!")
}
uas uas1 "$u1"
uas uas2 "$u2"
sleep 0.3
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" zone=zone-b:1:sip:zone-b.test \
    tier=primary:127.0.0.1:$d1 tier=secondary:127.0.0.1:$d2 admin="$ADMIN_PORT"
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
N=(zone=zone-b name=sip:zone-b.test)
targets_are() { [ "$(m keel_dns_targets "${N[@]}")" = "$1" ]; }
stale_is() { [ "$(m keel_dns_stale "${N[@]}")" = "$1" ]; }
invites() { echo $(($(uas_count uas1 INVITE_Recv) + $(uas_count uas2 INVITE_Recv))); }
now() { date +%s.%3N; }

wait_until 5 targets_are 2 || fail "zone-b.test not resolved: $(grep dns "$TMP/m.prom")"
t_resolved=$(now)
pass "zone-b.test resolved to 2 targets"

# 50 calls/s for SECS s
# (as run_uac, whose `timeout 300` would cut a long run short)
(cd "$TMP" && exec timeout $((SECS + 120)) sipp "127.0.0.1:$port" -sf "$SCEN/uac_call.xml" \
    -i 127.0.0.1 -p "$(free_port)" -mp "$(media_port)" -nostdin -trace_stat -stf "$TMP/uac.csv" -fd 1 -trace_err \
    -error_file "$TMP/uac.err" -s 1000 -m "$CALLS" -r 50 -d 100 -timeout $((SECS + 60))s \
    >"$TMP/uac.log" 2>&1) &
UAC=$!
PIDS+=("$UAC")
sleep 1
stop_pid "$dns1_PID"
stop_pid "$dns2_PID"
pass "both resolvers dead $(python3 -c "print('%.1f' % ($(now) - $t_resolved))") s after the answer (TTL 5 s)"

wait_until 10 stale_is 1 || fail "zone-b.test not served stale 10 s after every resolver died"
t_stale=$(now)
grep -q "event=dns_serve_stale zone=zone-b name=zone-b.test" "$TMP/keel.log" || fail "no dns_serve_stale logged"
targets_are 2 || fail "the stale answer does not keep the 2 targets"
used1=$(m keel_dns_stale_targets_used_total "${N[@]}"); inv1=$(invites)
sleep 8
used2=$(m keel_dns_stale_targets_used_total "${N[@]}"); inv2=$(invites)
served=$(m keel_dns_stale_answers_total name=sip:zone-b.test)
stale_is 1 || fail "the name is not stale any more with every resolver dead"
echo "stale for 8 s: targets used from the stale answer $used1 -> $used2, servers got $inv1 -> $inv2 INVITEs, stale answers served $served"
[ "$((${used2%.*} - ${used1%.*}))" -ge 300 ] || fail "only $((${used2%.*} - ${used1%.*})) attempts on the stale answer in 8 s at 50 calls/s"
[ $((inv2 - inv1)) -ge 300 ] || fail "only $((inv2 - inv1)) calls reached the servers in 8 s on the stale answer"
[ "${served%.*}" -ge 1 ] || fail "keel_dns_stale_answers_total is $served"
pass "calls flow on the stale answer past its TTL, counted ($used1 -> $used2 attempts)"

# a resolver comes back near the end: the next retry (every 30 s) refreshes the name
while kill -0 "$UAC" 2>/dev/null && [ "$(python3 -c "print(int($(now) - $t_resolved))")" -lt $((SECS - 15)) ]; do
    sleep 1
done
served=$(m keel_dns_stale_answers_total name=sip:zone-b.test); used3=$(m keel_dns_stale_targets_used_total "${N[@]}")
stale_is 1 || fail "zone-b.test not stale any more with every resolver dead"
echo "every resolver dead for $(python3 -c "print('%.0f' % ($(now) - $t_resolved - 1))") s: stale answers served $served, attempts on them $used3, servers got $(invites) INVITEs"
start_dnsmasq dns1 "$d1" "${RECORDS[@]}"
rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
ok=$(stat uac "SuccessfulCall(C)"); failed=$(stat uac "FailedCall(C)")
echo "uac: $ok successful, $failed failed of $CALLS"
[ $rc -eq 0 ] && [ "$ok" -eq "$CALLS" ] || fail "$failed of $CALLS calls failed with every resolver dead: $(tail -5 "$TMP/uac.log")"
pass "$CALLS calls, 0 failed, through $(python3 -c "print('%.0f' % ($(now) - $t_stale))") s of stale answers"
t_back=$(now)
wait_until 32 stale_is 0 || fail "zone-b.test still stale 32 s after a resolver came back (retry every 30 s)"
targets_are 2 || fail "zone-b.test lost its targets on the refresh"
pass "a resolver back: the name is fresh again $(python3 -c "print('%.1f' % ($(now) - $t_back))") s after the calls ended (retry every 30 s)"
stop_keel
