#!/usr/bin/env bash
# Media quality per zone from the reports endpoints put on the BYE and its
# 200 (P-RTP-Stat / X-RTP-Stat; keel relays no media): 40 calls, the caller
# reports 980 received / 20 lost / 15 ms jitter / 40 ms latency on each BYE,
# the servers 1000 / 0 / 4 ms / 20 ms on each 200. The counters, the jitter
# and MOS histograms match exactly, by zone and by side, and the documented
# loss query gives 2 % for the callers' side.
source "$(dirname "$0")/lib/common.sh"
command -v promtool >/dev/null || fail "promtool is not installed (scripts/setup installs prometheus)"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" admin="$ADMIN_PORT"
start_uas uasa "$pa" uas_call_rtpstat.xml
start_uas uasb "$pb" uas_call_rtpstat.xml
start_keel "$TMP/keel.yaml"

run_uac uac "127.0.0.1:$port" uac_call_rtpstat.xml -s 1000 -m 40 -r 20 -d 100 -timeout 60s \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
sleep 1.5
scrape "$TMP/m.prom"
m() { metric "$TMP/m.prom" "$@"; }
grep "^keel_rtp_" "$TMP/m.prom" | grep -v _bucket
out=$(promtool check metrics <"$TMP/m.prom" 2>&1) || fail "promtool check metrics failed: $out"

a=$(uas_count uasa INVITE_Recv); b=$(uas_count uasb INVITE_Recv)
[ "$(m keel_rtp_reports_total side=caller)" = 40 ] || fail "caller reports: $(m keel_rtp_reports_total side=caller) of 40"
[ "$(m keel_rtp_reports_total side=platform)" = 40 ] || fail "platform reports: $(m keel_rtp_reports_total side=platform) of 40"
[ "$(m keel_rtp_reports_total side=caller zone=zone-a)" = "$a" ] \
    && [ "$(m keel_rtp_reports_total side=caller zone=zone-b)" = "$b" ] \
    || fail "reports by zone $(m keel_rtp_reports_total side=caller zone=zone-a)/$(m keel_rtp_reports_total side=caller zone=zone-b), calls by zone $a/$b"
[ "$(m keel_rtp_packets_lost_total side=caller)" = 800 ] || fail "lost (caller): $(m keel_rtp_packets_lost_total side=caller), expected 40 x 20"
[ "$(m keel_rtp_packets_received_total side=caller)" = 39200 ] || fail "received (caller): $(m keel_rtp_packets_received_total side=caller)"
[ "$(m keel_rtp_packets_lost_total side=platform)" = 0 ] || fail "lost (platform): $(m keel_rtp_packets_lost_total side=platform)"
[ "$(m keel_rtp_packets_received_total side=platform)" = 40000 ] || fail "received (platform): $(m keel_rtp_packets_received_total side=platform)"
[ "$(m keel_rtp_jitter_seconds_count side=caller)" = 40 ] || fail "jitter observations (caller): $(m keel_rtp_jitter_seconds_count side=caller)"
# 15 ms each: all in le=0.02, none in le=0.01
[ "$(m keel_rtp_jitter_seconds_bucket side=caller le=0.01)" = 0 ] \
    && [ "$(m keel_rtp_jitter_seconds_bucket side=caller le=0.02)" = 40 ] \
    || fail "caller jitter buckets: le=0.01 $(m keel_rtp_jitter_seconds_bucket side=caller le=0.01), le=0.02 $(m keel_rtp_jitter_seconds_bucket side=caller le=0.02)"
[ "$(m keel_rtp_jitter_seconds_bucket side=platform le=0.005)" = 40 ] || fail "platform jitter (4 ms) not all in le=0.005"
# MOS by the simplified E-model (docs/metrics.md): the same formula here
mos() { python3 -c "
l,j,lost=$1,$2,$3
eff=l+2*j+10
r=93.2-(eff/40 if eff<160 else (eff-120)/10)-2.5*100*lost
print('%.4f' % (1+0.035*r+7e-6*r*(r-60)*(100-r)))"; }
want_c=$(mos 40 15 0.02); want_p=$(mos 20 4 0)
got_c=$(python3 -c "print('%.4f' % ($(m keel_rtp_mos_sum side=caller) / 40))")
got_p=$(python3 -c "print('%.4f' % ($(m keel_rtp_mos_sum side=platform) / 40))")
echo "MOS caller side $got_c (expected $want_c), platform side $got_p (expected $want_p)"
python3 -c "import sys; sys.exit(0 if abs($got_c - $want_c) < 0.001 and abs($got_p - $want_p) < 0.001 else 1)" || fail "MOS caller $got_c (want $want_c), platform $got_p (want $want_p)"
loss=$(python3 -c "print('%.4f' % ($(m keel_rtp_packets_lost_total side=caller) / ($(m keel_rtp_packets_lost_total side=caller) + $(m keel_rtp_packets_received_total side=caller))))")
[ "$loss" = 0.0200 ] || fail "loss share $loss, expected 0.0200"
pass "40 calls: caller side 2 % loss, 15 ms jitter, MOS $got_c; platform side no loss, MOS $got_p; by zone $a/$b"

# ---- the platform hangs up: its report on the BYE, the caller's on the 200 ----
stop_pid "$uasa_PID"
stop_pid "$uasb_PID"
start_uas uasa2 "$pa" uas_call_bye.xml
start_uas uasb2 "$pb" uas_call_bye.xml
run_uac uac2 "127.0.0.1:$port" uac_call_callee_bye.xml -s 1000 -m 20 -r 20 -timeout 60s \
    || fail "sipp uac2: not every call hung up by the server succeeded: $(tail -5 "$TMP/uac2.log")"
sleep 1.5
scrape "$TMP/m2.prom"
m2() { metric "$TMP/m2.prom" "$@"; }
a2=$(uas_count uasa2 INVITE_Recv); b2=$(uas_count uasb2 INVITE_Recv)
for side in caller platform; do
    for z in a b; do
        eval "want=\$(( \$${z}2 + \$${z} ))"
        got=$(m2 keel_rtp_reports_total side=$side zone=zone-$z)
        [ "$got" = "$want" ] || fail "$side reports in zone-$z: $got, expected $want (20 more calls, $a2/$b2)"
    done
done
[ "$(grep -c 'keel_rtp_reports_total{zone="",' "$TMP/m2.prom")" = 0 ] || fail "a report counted without a zone"
[ "$(m2 keel_rtp_packets_lost_total side=caller)" = 1000 ] || fail "caller lost $(m2 keel_rtp_packets_lost_total side=caller): 800 + 20 x 10 expected"
[ "$(m2 keel_rtp_packets_received_total side=platform)" = 50000 ] || fail "platform received $(m2 keel_rtp_packets_received_total side=platform): 40000 + 20 x 500 expected"
pass "20 calls hung up by the platform: its reports (BYE) and the callers' (200) by zone $a2/$b2"
stop_keel
