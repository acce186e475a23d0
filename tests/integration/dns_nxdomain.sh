#!/usr/bin/env bash
# A name that does not exist (NXDOMAIN, DESIGN.md "DNS"): zone-b's only
# destination is sip:zone-b.test, which dnsmasq (authoritative for "test",
# SOA minimum 6 s) answers NXDOMAIN. zone-b has no target and is not
# eligible (event=dns_no_targets); zone-a has a static destination: every
# call goes there, 0 fail. The negative answer is cached per the SOA
# minimum: the name is asked again about every 6 s, not on every call.
# Then the name appears (dnsmasq restarted with its records): within the
# negative TTL (+1 s) zone-b resolves and takes its share of the calls.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

NEG=6
port=$(free_port); ADMIN_PORT=$(free_port); dns=$(free_port)
ua=$(free_port); ub=$(free_port)

# start_dnsmasq NAME PORT ARGS...: dnsmasq authoritative for the zone
# "test" on 127.0.0.1:PORT (NXDOMAIN answers carry its SOA)
# (not common.sh's: this one is authoritative for test., so NXDOMAIN comes
# with the SOA whose minimum sets the negative-cache time)
start_dnsmasq() {
    local name=$1 p=$2
    shift 2
    dnsmasq --no-daemon --port="$p" --listen-address=127.0.0.1 --bind-interfaces \
        --no-resolv --no-hosts --pid-file="$TMP/$name.pid" \
        --auth-server=ns.test,127.0.0.1 --auth-zone=test --auth-ttl=$NEG \
        --auth-soa=1,hostmaster.test,1200,120,1209600 \
        --log-queries --log-facility=- "$@" >>"$TMP/$name.log" 2>&1 &
    eval "${name}_PID=$!"
    PIDS+=("$!")
    wait_until 5 python3 "$LIB_DIR/dnsconf.py" query "$p" up.test A >/dev/null \
        || fail "dnsmasq $name did not come up on $p"
}
start_dnsmasq dns "$dns" --host-record=other.test,127.0.0.1
out=$(python3 "$LIB_DIR/dnsconf.py" query "$dns" zone-b.test NAPTR "$TMP/nx.bin")
case "$out" in rcode=3*) ;; *) fail "dnsmasq does not answer NXDOMAIN for zone-b.test: $out" ;; esac
start_uas uasa "$ua" uas_call.xml
start_uas uasb "$ub" uas_call.xml
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-b:50:sip:zone-b.test zone=zone-a:50:127.0.0.1:$ua \
    tier=primary:127.0.0.1:$dns admin="$ADMIN_PORT"
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
nx() { m keel_dns_queries_total resolver=127.0.0.1:$dns result=nxdomain; }
targets_are() { [ "$(m keel_dns_targets zone=zone-b name=sip:zone-b.test)" = "$1" ]; }
now() { date +%s.%3N; }

wait_until 5 grep -q "event=dns_no_targets zone=zone-b name=zone-b.test" "$TMP/keel.log" \
    || fail "no dns_no_targets logged for zone-b.test"
t_nx=$(now)
targets_are 0 || fail "zone-b.test has targets though it is NXDOMAIN"
nx1=$(nx)
[ "${nx1%.*}" -ge 1 ] || fail "no NXDOMAIN counted"
pass "zone-b.test NXDOMAIN: no targets, logged"

# 40 calls/s for 10 s
run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 400 -r 40 -d 100 -timeout 60s \
    || fail "sipp uac: not every call succeeded with zone-b NXDOMAIN: $(tail -5 "$TMP/uac.log")"
sleep 1.5
a=$(uas_count uasa INVITE_Recv); b=$(uas_count uasb INVITE_Recv)
nx2=$(nx)
el=$(python3 -c "print('%.1f' % ($(now) - $t_nx))")
echo "zone-a got $a, zone-b $b of 400; NXDOMAIN answers $nx1 -> $nx2 in $el s"
[ "$a" -eq 400 ] && [ "$b" -eq 0 ] || fail "calls split $a/$b with zone-b NXDOMAIN"
# asked again once per negative TTL (6 s): at most el/6 + 1 more times
maxq=$(python3 -c "print(int($el / $NEG) + 1)")
[ $((${nx2%.*} - ${nx1%.*})) -le "$maxq" ] \
    || fail "zone-b.test asked $((${nx2%.*} - ${nx1%.*})) times in $el s: the negative answer (SOA minimum $NEG s) is not cached"
[ $((${nx2%.*} - ${nx1%.*})) -ge 1 ] \
    || fail "zone-b.test not asked again in $el s: the negative answer outlives its SOA minimum ($NEG s)"
pass "400 calls, 0 failed, all to zone-a; the NXDOMAIN cached per its SOA minimum ($((${nx2%.*} - ${nx1%.*})) queries in $el s)"

# ---- the name appears ----
stop_pid "$dns_PID"
start_dnsmasq dns "$dns" --local-ttl=$NEG \
    --naptr-record=zone-b.test,10,10,s,SIP+D2U,,_sip._udp.zone-b.test \
    --srv-host=_sip._udp.zone-b.test,b.zone-b.test,$ub,10,10 --host-record=b.zone-b.test,127.0.0.1
t_add=$(now)
wait_until $((NEG + 1)) targets_are 1 || fail "zone-b.test not resolved $((NEG + 1)) s after it appeared"
pass "zone-b.test resolves $(python3 -c "print('%.1f' % ($(now) - $t_add))") s after it appeared (negative TTL $NEG s)"
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 200 -r 40 -d 100 -timeout 60s \
    || fail "sipp uac2: not every call succeeded: $(tail -5 "$TMP/uac2.log")"
sleep 1.5
b2=$(uas_count uasb INVITE_Recv); a2=$(uas_count uasa INVITE_Recv)
echo "after: zone-a got $((a2 - a)), zone-b $b2 of 200"
[ $((a2 - a + b2)) -eq 200 ] && [ "$b2" -ge 60 ] && [ $((a2 - a)) -ge 60 ] \
    || fail "zone-b resolved but the calls split $((a2 - a))/$b2"
pass "zone-b takes its share once resolved: $((a2 - a))/$b2"
stop_keel
