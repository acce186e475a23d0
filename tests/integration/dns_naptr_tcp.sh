#!/usr/bin/env bash
# RFC 3263 §4.1 transport choice by NAPTR: zone-t.test has three NAPTR
# records: SIP+D2S (SCTP, order 5: keel cannot use it, skipped), SIP+D2T
# (order 10) and SIP+D2U (order 20). The lowest order keel can use wins:
# TCP, through SRV _sip._tcp.zone-t.test to a TCP server (sipp -t t1); the
# UDP server behind _sip._udp gets nothing. Calls come in over UDP and
# leave over TCP; each BYE reaches the TCP server through keel.
source "$(dirname "$0")/lib/common.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"

port=$(free_port); ADMIN_PORT=$(free_port); dns=$(free_port)
ut=$(free_port); uu=$(free_port); us=$(free_port)


start_dnsmasq dns "$dns" --local-ttl=10 \
    --naptr-record=zone-t.test,5,10,s,SIP+D2S,,_sip._sctp.zone-t.test \
    --naptr-record=zone-t.test,10,10,s,SIP+D2T,,_sip._tcp.zone-t.test \
    --naptr-record=zone-t.test,20,10,s,SIP+D2U,,_sip._udp.zone-t.test \
    --srv-host=_sip._sctp.zone-t.test,t.zone-t.test,$us,10,10 \
    --srv-host=_sip._tcp.zone-t.test,t.zone-t.test,$ut,10,10 \
    --srv-host=_sip._udp.zone-t.test,t.zone-t.test,$uu,10,10 \
    --host-record=t.zone-t.test,127.0.0.1
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" zone=zone-t:1:sip:zone-t.test \
    tier=primary:127.0.0.1:$dns admin="$ADMIN_PORT"
start_uas uastcp "$ut" uas_call.xml t1
start_uas uasudp "$uu" uas_call.xml
start_uas uassctp "$us" uas_call.xml
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
DT="sip:127.0.0.1:$ut;transport=tcp"
targets_are() { [ "$(m keel_dns_targets zone=zone-t name=sip:zone-t.test)" = "$1" ]; }
wait_until 5 targets_are 1 || fail "zone-t.test did not resolve to 1 target: $(grep dns_ "$TMP/m.prom")"
grep -q "keel_destination_up{.*destination=\"$DT\"} 1" "$TMP/m.prom" \
    || fail "no TCP target $DT up: $(grep keel_destination_up "$TMP/m.prom")"
pass "NAPTR chose SIP+D2T: zone-t.test is $DT"

run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 50 -r 25 -d 100 -timeout 60s \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
sleep 1.5
t=$(uas_count uastcp INVITE_Recv); u=$(uas_count uasudp INVITE_Recv); s=$(uas_count uassctp INVITE_Recv)
tb=$(uas_count uastcp BYE_Recv)
seized=$(m keel_calls_seized_total zone=zone-t destination="$DT")
echo "tcp server got $t INVITEs and $tb BYEs, udp $u, sctp-advertised $s; keel seized $seized on $DT"
[ "$t" -eq 50 ] && [ "$tb" -eq 50 ] || fail "the TCP server got $t INVITEs and $tb BYEs of 50"
[ "$u" -eq 0 ] && [ "$s" -eq 0 ] || fail "the UDP / SCTP servers got $u / $s calls"
[ "$seized" = 50 ] || fail "keel_calls_seized_total for $DT is $seized"
pass "50 calls in over UDP, out over TCP to the NAPTR-chosen server (BYEs too), none elsewhere"
stop_keel
