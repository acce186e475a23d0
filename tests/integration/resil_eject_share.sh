#!/usr/bin/env bash
# Max ejected share (DESIGN.md "Resilience semantics"): at most 50% of a
# zone's destinations ejected at once (one may always be). zone-a has a1
# and a2, both answering 503 to everything; zone-b answers. With
# max_ejected_percent 50 only one of a1/a2 is ever ejected at a time (the
# other stays in and keeps failing over); a reload to 100 lets both go, and
# then zone-a gets no more calls. Every call completes on zone-b. Probes
# off, so only the breaker acts.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa1=$(free_port); pa2=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() {
    python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml.new" "$port" \
        zone=zone-a:50:127.0.0.1:$pa1,127.0.0.1:$pa2 zone=zone-b:50:127.0.0.1:$pb health=false \
        consecutive_failures=5 base_ejection=30s retry_min=50 admin="$ADMIN_PORT" "$@" &&
        mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"
}
conf max_ejected_percent=50
start_uas uasa1 "$pa1" uas_503.xml
start_uas uasa2 "$pa2" uas_503.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

ejected_a() { scrape "$TMP/e.prom"; metric "$TMP/e.prom" keel_destination_ejected zone=zone-a; }
sample() { # sample FILE: zone-a's ejected count every 0.1 s
    while :; do ejected_a >>"$1"; sleep 0.1; done
}

# ---- 50%: one of two ----
sample "$TMP/p1.txt" &
S=$!
PIDS+=("$S")
run_uac uac1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 120 -r 20 -d 100 -timeout 40s \
    || fail "sipp uac1: not every call succeeded: $(tail -5 "$TMP/uac1.log")"
stop_pid "$S"
sleep 1.2
max=$(sort -n "$TMP/p1.txt" | tail -1)
a1=$(uas_count uasa1 INVITE_Recv); a2=$(uas_count uasa2 INVITE_Recv)
echo "max_ejected_percent 50: at most $max of zone-a's 2 ejected at once; a1 saw $a1, a2 saw $a2 INVITEs"
grep -o "event=destination_ejected zone=zone-a .*" "$TMP/keel.log" || true
[ "$max" = 1 ] || fail "$max of zone-a's 2 destinations ejected at once with max_ejected_percent 50"
[ $((a1 + a2)) -ge 30 ] || fail "zone-a saw only $((a1 + a2)) INVITEs: the one kept in should take zone-a's share (~60)"
pass "max_ejected_percent 50: one of zone-a's two failing destinations ejected, the other kept in"

# ---- 100%: both may go ----
conf max_ejected_percent=100
kill -HUP "$KEEL_PID"
sleep 0.5
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 120 -r 20 -d 100 -timeout 40s \
    || fail "sipp uac2: not every call succeeded: $(tail -5 "$TMP/uac2.log")"
sleep 1.2
both=$(ejected_a)
b1=$(uas_count uasa1 INVITE_Recv); b2=$(uas_count uasa2 INVITE_Recv)
echo "max_ejected_percent 100: $both of 2 ejected; a1 saw $((b1 - a1)), a2 $((b2 - a2)) more INVITEs"
[ "$both" = 2 ] || fail "$both of zone-a's 2 failing destinations ejected with max_ejected_percent 100"
[ $((b1 - a1 + b2 - a2)) -le 12 ] || fail "zone-a saw $((b1 - a1 + b2 - a2)) INVITEs of 120 with both destinations failing and 100% ejectable"
pass "max_ejected_percent 100: both ejected, zone-a out of rotation"
stop_keel
