#!/usr/bin/env bash
# Every resolver dead from the start (closed ports: each query refused at
# once by ICMP): zone-b.test can never be resolved and has no stale answer,
# so zone-b is not eligible and its calls go to zone-a (a static
# destination); keel keeps retrying the name and probing the resolvers,
# and must survive it: 30 calls/s for 20 s, 0 failed, keel alive and
# answering /metrics throughout, a clean exit (no sanitizer report).
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); ADMIN_PORT=$(free_port); d1=$(free_port); d2=$(free_port); ua=$(free_port)
start_uas uasa "$ua" uas_call.xml
python3 "$LIB_DIR/dnsconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-b:50:sip:zone-b.test zone=zone-a:50:127.0.0.1:$ua \
    tier=primary:127.0.0.1:$d1 tier=secondary:127.0.0.1:$d2 admin="$ADMIN_PORT"
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 600 -r 30 -d 100 -timeout 60s &
UAC=$!
PIDS+=("$UAC")
while kill -0 "$UAC" 2>/dev/null; do
    kill -0 "$KEEL_PID" 2>/dev/null || fail "keel died with every resolver refused: $(grep -m1 -A3 "ERROR: AddressSanitizer" "$TMP/keel.log")"
    admin_get /metrics >/dev/null 2>&1 || kill -0 "$KEEL_PID" 2>/dev/null \
        || fail "keel died with every resolver refused: $(grep -m1 -A3 "ERROR: AddressSanitizer" "$TMP/keel.log")"
    sleep 0.5
done
rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
sleep 1.5
ok=$(stat uac "SuccessfulCall(C)"); a=$(uas_count uasa INVITE_Recv)
errs=$(m keel_dns_queries_total result=error)
echo "uac: $ok of 600 successful, zone-a got $a; refused queries counted $errs"
[ $rc -eq 0 ] && [ "$ok" -eq 600 ] || fail "$ok of 600 calls succeeded: $(tail -5 "$TMP/uac.log")"
[ "$(m keel_dns_targets zone=zone-b name=sip:zone-b.test)" = 0 ] || fail "zone-b.test has targets"
[ "${errs%.*}" -ge 10 ] || fail "only $errs refused queries counted in 20 s"
pass "20 s with every resolver refused: 600 calls to zone-a, 0 failed, keel alive"
stop_keel
