#!/usr/bin/env bash
# A failing resolver (DESIGN.md "DNS"): the primary answers every query at
# once with SERVFAIL (then, separately, REFUSED). Queries move to the
# secondary at once (a tier failover, no wait for hedge_after): zone-b.test
# resolves through it, and stays resolved through TTL refreshes (TTL 5 s)
# under 50 calls/s for 12 s, 0 failed calls.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

port=$(free_port); ADMIN_PORT=$(free_port); sec=$(free_port); prim=$(free_port)
u1=$(free_port); u2=$(free_port)

dnsmasq --no-daemon --port="$sec" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --local=/test/ --pid-file="$TMP/sec.pid" \
    --log-queries --log-facility=- --local-ttl=5 \
    --naptr-record=zone-b.test,10,10,s,SIP+D2U,,_sip._udp.zone-b.test \
    --srv-host=_sip._udp.zone-b.test,b1.zone-b.test,$u1,10,50 \
    --srv-host=_sip._udp.zone-b.test,b2.zone-b.test,$u2,10,50 \
    --host-record=b1.zone-b.test,127.0.0.1 --host-record=b2.zone-b.test,127.0.0.1 \
    >"$TMP/sec.log" 2>&1 &
PIDS+=("$!")
wait_until 5 python3 "$LIB_DIR/dnsconf.py" query "$sec" b1.zone-b.test A >/dev/null \
    || fail "dnsmasq did not come up"
start_uas uas1 "$u1" uas_call.xml
start_uas uas2 "$u2" uas_call.xml
m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
targets() { m keel_dns_targets zone=zone-b name=sip:zone-b.test; }

for rcode in 2 5; do
    name=$([ $rcode = 2 ] && echo SERVFAIL || echo REFUSED)
    python3 "$LIB_DIR/dnsconf.py" servfail "$prim" "$rcode" &
    FPID=$!
    PIDS+=("$FPID")
    wait_until 5 python3 "$LIB_DIR/dnsconf.py" query "$prim" x.test A >/dev/null \
        || fail "the failing resolver did not come up"
    python3 "$LIB_DIR/dnsconf.py" "$TMP/keel-$rcode.yaml" "$port" zone=zone-b:1:sip:zone-b.test \
        tier=primary:127.0.0.1:$prim tier=secondary:127.0.0.1:$sec hedge_after=150ms \
        admin="$ADMIN_PORT"
    start_keel "$TMP/keel-$rcode.yaml" "keel-$rcode"
    wait_until 5 eval '[ "$(targets)" = 2 ]' || fail "$name primary: zone-b.test not resolved"
    errs=$(m keel_dns_queries_total resolver=127.0.0.1:$prim result=error)
    [ "${errs%.*}" -ge 1 ] || fail "$name primary: no error counted for it"
    run_uac "uac-$rcode" "127.0.0.1:$port" uac_call.xml -s 1000 -m 600 -r 50 -d 100 -timeout 60s &
    UAC=$!
    PIDS+=("$UAC")
    min_t=2
    while kill -0 "$UAC" 2>/dev/null; do
        t=$(targets)
        [ "${t%.*}" -lt "$min_t" ] && min_t=${t%.*}
        sleep 0.25
    done
    rc=0
    wait "$UAC" || rc=$?
    _pids_forget "$UAC"
    ok=$(stat "uac-$rcode" "SuccessfulCall(C)")
    hedges=$(m keel_dns_hedges_total result=sent)
    fo=$(m keel_dns_tier_failovers_total)
    ans=$(m keel_dns_queries_total resolver=127.0.0.1:$sec result=answer)
    echo "$name primary: $ok of 600 calls, fewest targets $min_t, tier failovers $fo, hedges $hedges, secondary answers $ans"
    [ $rc -eq 0 ] && [ "$ok" -eq 600 ] || fail "$name primary: $ok of 600 calls succeeded: $(tail -5 "$TMP/uac-$rcode.log")"
    [ "$min_t" -eq 2 ] || fail "$name primary: zone-b.test fell to $min_t targets during the refreshes"
    [ "${ans%.*}" -ge 12 ] || fail "$name primary: only $ans answers from the secondary (3 refreshes expected)"
    [ "${fo%.*}" -ge 1 ] || fail "$name primary: no tier failover counted"
    pass "$name primary: answers from the secondary through the refreshes, 600 calls, 0 failed"
    stop_keel
    stop_pid "$FPID"
done
