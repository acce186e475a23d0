#!/usr/bin/env bash
# /metrics after a scripted set of calls: exact counter values for calls,
# seizures, answers and failovers (by cause: code, timeout, transport),
# checked against what the SIPp servers saw; calls in flight back to 0; `promtool check metrics` clean on a scrape
# taken while calls are up.
source "$(dirname "$0")/lib/common.sh"
command -v promtool >/dev/null || fail "promtool is not installed (scripts/setup installs prometheus)"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    admin="$ADMIN_PORT"
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

m() { metric "$TMP/$1.prom" "${@:2}"; }

# ---- phase 1: 20 calls, 50/50, each held 1.5 s; a scrape in the middle ----
run_uac uac1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 20 -r 10 -d 1500 -timeout 40s &
uac_pid=$!
PIDS+=("$uac_pid")
sleep 1.8 # every call set up (20 at 10/s), none hung up yet
scrape "$TMP/load.prom"
rc=0
wait "$uac_pid" || rc=$?
_pids_forget "$uac_pid"
[ $rc -eq 0 ] || fail "sipp uac1: not every call succeeded (rc=$rc): $(tail -5 "$TMP/uac1.log")"

up=$(m load keel_calls_in_flight)
[ "${up%.*}" -gt 0 ] || fail "the scrape during load saw no call in flight ($up)"
out=$(promtool check metrics <"$TMP/load.prom" 2>&1) || fail "promtool check metrics failed: $out"
[ -z "$out" ] || fail "promtool check metrics found problems: $out"
pass "promtool check metrics is clean on a scrape taken with $up calls up"

sleep 1.5 # the last BYE's 200 back through keel, the servers' stats flushed
scrape "$TMP/p1.prom"
a1=$(uas_count uasa INVITE_Recv); b1=$(uas_count uasb INVITE_Recv)
echo "phase 1: zone-a got $a1, zone-b got $b1"
[ $((a1 + b1)) -eq 20 ] || fail "the servers got $((a1 + b1)) calls, not 20"

expect() { # expect FILE VALUE NAME [labels...]
    local f=$1 want=$2 got
    shift 2
    got=$(m "$f" "$@")
    [ "$got" = "$want" ] || fail "$* = $got in $f, expected $want"
}
expect p1 20 keel_sip_requests_received_total method=INVITE
expect p1 20 keel_sip_requests_received_total method=ACK
expect p1 20 keel_sip_requests_received_total method=BYE
expect p1 "$a1" keel_sip_requests_forwarded_total method=INVITE zone=zone-a
expect p1 "$b1" keel_sip_requests_forwarded_total method=INVITE zone=zone-b
expect p1 "$a1" keel_calls_seized_total zone=zone-a destination="sip:127.0.0.1:$pa"
expect p1 "$b1" keel_calls_seized_total zone=zone-b destination="sip:127.0.0.1:$pb"
expect p1 "$a1" keel_calls_answered_total zone=zone-a
expect p1 "$b1" keel_calls_answered_total zone=zone-b
expect p1 "$a1" keel_call_final_responses_total zone=zone-a code=200
expect p1 "$b1" keel_call_final_responses_total zone=zone-b code=200
expect p1 0 keel_calls_network_failures_total
expect p1 0 keel_failovers_total
expect p1 20 keel_sip_responses_sent_total method=INVITE code=2xx
expect p1 20 keel_sip_responses_sent_total method=BYE code=2xx
expect p1 "$a1" keel_sip_responses_received_total method=INVITE code=2xx zone=zone-a
expect p1 "$b1" keel_sip_responses_received_total method=INVITE code=2xx zone=zone-b
expect p1 "$a1" keel_call_setup_seconds_count zone=zone-a phase=answer
expect p1 "$b1" keel_call_setup_seconds_count zone=zone-b phase=ringing
expect p1 20 keel_call_duration_seconds_count
# every call was held 1.5 s: all in the (1, 5] bucket of the duration histogram
expect p1 0 keel_call_duration_seconds_bucket le=1
expect p1 20 keel_call_duration_seconds_bucket le=5
expect p1 0 keel_calls_in_flight
expect p1 0 keel_transactions_in_flight class=call
pass "20 calls: INVITE/ACK/BYE 20 each, seized=answered per zone as the servers saw ($a1/$b1), 0 failovers, 0 in flight"

# ---- phase 2: zone-a's server answers 503: calls that try it fail over ----
stop_pid "$uasa_PID"
start_uas uasa503 "$pa" uas_503.xml
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 40 -r 20 -d 100 -timeout 40s \
    || fail "sipp uac2: not every call succeeded: $(tail -5 "$TMP/uac2.log")"
sleep 1.5
scrape "$TMP/p2.prom"
a2=$(uas_count uasa503 INVITE_Recv); b2=$(( $(uas_count uasb INVITE_Recv) - b1 ))
echo "phase 2: zone-a (503) got $a2, zone-b got $b2"
[ "$b2" -eq 40 ] || fail "zone-b completed $b2 of the 40 calls"
[ "$a2" -gt 0 ] || fail "no call tried zone-a first: no failover to count"
expect p2 60 keel_sip_requests_received_total method=INVITE
expect p2 $((a1 + a2)) keel_calls_seized_total zone=zone-a
expect p2 $((b1 + 40)) keel_calls_seized_total zone=zone-b
expect p2 "$a1" keel_calls_answered_total zone=zone-a
expect p2 $((b1 + 40)) keel_calls_answered_total zone=zone-b
expect p2 "$a2" keel_failovers_total cluster=voice zone=zone-a cause=code
expect p2 "$a2" keel_failovers_total
expect p2 "$a2" keel_calls_network_failures_total zone=zone-a
expect p2 0 keel_calls_network_failures_total zone=zone-b
expect p2 "$a2" keel_call_final_responses_total zone=zone-a code=503
expect p2 "$a2" keel_sip_responses_received_total method=INVITE code=5xx zone=zone-a
expect p2 0 keel_sip_responses_sent_total method=INVITE code=5xx
expect p2 60 keel_sip_responses_sent_total method=INVITE code=2xx
expect p2 0 keel_calls_in_flight
expect p2 0 keel_transactions_in_flight class=call
pass "40 calls with zone-a at 503: $a2 failovers (cause=code, zone-a), all 40 answered on zone-b, counters exact"

# ---- phase 3, by reload: zone-a is one silent destination (a socket that
# reads and never answers: cause=timeout after attempt_timeout) and one
# closed port (ICMP port unreachable: cause=transport) ----
ps=$(free_port); pc=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))
while True: s.recv(65535)' "$ps" &
PIDS+=($!)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml.new" "$port" "127.0.0.1:$ps" "127.0.0.1:$pb" \
    admin="$ADMIN_PORT" extra_a="127.0.0.1:$pc" attempt_timeout=500ms
mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"
[ "$(admin_code POST /v1/reload)" = 200 ] || fail "reload for phase 3: $(cat "$TMP/admin.body")"
run_uac uac3 "127.0.0.1:$port" uac_call.xml -s 1000 -m 20 -r 10 -d 100 -timeout 40s \
    || fail "sipp uac3: not every call succeeded: $(tail -5 "$TMP/uac3.log")"
sleep 1.5
scrape "$TMP/p3.prom"
ds="sip:127.0.0.1:$ps"; dc="sip:127.0.0.1:$pc"
ns=$(m p3 keel_calls_seized_total destination="$ds"); nc=$(m p3 keel_calls_seized_total destination="$dc")
b3=$(( $(uas_count uasb INVITE_Recv) - b1 - 40 ))
echo "phase 3: silent destination seized $ns, closed port seized $nc, zone-b got $b3"
[ "$ns" -gt 0 ] && [ "$nc" -gt 0 ] || fail "a zone-a destination was never tried ($ns, $nc)"
[ "$b3" -eq 20 ] || fail "zone-b completed $b3 of the 20 calls"
expect p3 80 keel_sip_requests_received_total method=INVITE
expect p3 "$ns" keel_failovers_total cluster=voice zone=zone-a cause=timeout
expect p3 "$nc" keel_failovers_total cluster=voice zone=zone-a cause=transport
expect p3 "$a2" keel_failovers_total cause=code
expect p3 $((a2 + ns + nc)) keel_failovers_total
expect p3 "$ns" keel_calls_network_failures_total destination="$ds"
expect p3 "$nc" keel_calls_network_failures_total destination="$dc"
expect p3 0 keel_call_final_responses_total destination="$ds"
expect p3 0 keel_call_final_responses_total destination="$dc"
expect p3 $((b1 + 60)) keel_calls_answered_total zone=zone-b
expect p3 $((b1 + 60)) keel_calls_seized_total zone=zone-b
expect p3 80 keel_sip_responses_sent_total method=INVITE code=2xx
expect p3 0 keel_calls_in_flight
# (no keel_transactions_in_flight check here: the INVITE to the silent
# destination got no provisional, so it cannot be CANCELled and its client
# transaction keeps waiting for a final response until Timer B, 32 s; it is
# in flight as documented)
expect p3 0 keel_transactions_in_flight class=call zone=zone-b
pass "20 calls with zone-a silent or closed: $ns failovers cause=timeout, $nc cause=transport, all answered on zone-b"

stop_keel
