#!/usr/bin/env bash
# Game-day faults beyond abort (issue 6): zone-a preferred, attempt_timeout
# 500 ms.
#  1. blackhole on zone-a: requests to it are not sent, so attempts time
#     out: every call completes on zone-b, some after ~attempt_timeout,
#     zone-a's server sees no INVITE;
#  2. delay 300 ms on zone-a: its calls are answered, none faster than
#     300 ms;
#  3. in-dialog requests of established calls are not touched (in_dialog
#     false, the default): their BYEs reach zone-a during an abort; with
#     in_dialog true they do not.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb prefer_local=true \
    attempt_timeout=500ms interval=1s timeout=500ms window=0ms admin="$ADMIN_PORT" faults=true
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"
m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
inject() { # inject JSON: prints the fault's id
    local code
    code=$(admin_code POST /v1/faults -d "$1")
    [ "$code" = 201 ] || fail "POST /v1/faults $1: HTTP $code: $(cat "$TMP/admin.body")"
    json_eval 'j["id"]' <"$TMP/admin.body"
}
# rtts NAME: min and max INVITE->200 (ms) of the calls of run NAME
rtts() {
    python3 - "$TMP" "$1" <<'PY'
import glob, sys
vals = []
for f in glob.glob("%s/%s_rtt/*_rtt.csv" % (sys.argv[1], sys.argv[2])):
    for line in open(f):
        p = line.strip().split(";")
        if len(p) >= 3 and p[2] == "invite" and p[1].replace(".", "", 1).isdigit():
            vals.append(float(p[1]))
print("%d %d %d" % (len(vals), min(vals), max(vals)) if vals else "0 -1 -1")
PY
}
calls() { # calls NAME N: N calls at 10/s, INVITE->200 times kept
    mkdir -p "$TMP/$1_rtt"
    run_uac "$1" "127.0.0.1:$port" uac_call.xml -s 1000 -m "$2" -r 10 -d 100 \
        -timeout 40s -trace_rtt -rtt_freq 1 || fail "$1: not every call succeeded: $(tail -5 "$TMP/$1.log")"
    mv "$TMP"/*_rtt.csv "$TMP/$1_rtt/" # run_uac works in $TMP
}
idle_a() { # zone-a takes calls (not ejected, up): one probe interval after a fault
    [ "$(m keel_destination_ejected zone=zone-a)" = 0 ] && [ "$(m keel_destination_up zone=zone-a)" = 1 ]
}

# ---- 1. blackhole ----
a0=$(uas_count uasa INVITE_Recv)
id=$(inject '{"kind":"blackhole","zone":"zone-a","duration":"5s"}')
calls bh 30
read -r n lo hi < <(rtts bh)
sleep 1.1
a1=$(uas_count uasa INVITE_Recv)
echo "blackhole: $n calls, INVITE->200 ${lo}..${hi} ms; zone-a's server got $((a1 - a0)) INVITEs; hits $(m keel_fault_hits_total kind=blackhole zone=zone-a)"
[ "$a1" = "$a0" ] || fail "zone-a's server got $((a1 - a0)) INVITEs through a blackhole"
[ "$hi" -ge 450 ] && [ "$hi" -lt 1500 ] || fail "blackholed attempts should time out after attempt_timeout (500 ms): slowest call ${hi} ms"
[ "$(m keel_fault_hits_total kind=blackhole zone=zone-a)" != 0 ] || fail "no blackhole hit counted"
pass "blackhole on zone-a: nothing sent there, calls completed on zone-b after the attempt timeout (max ${hi} ms)"
admin_code DELETE "/v1/faults/$id" >/dev/null || true
wait_until 5 idle_a || fail "zone-a did not come back after the blackhole"

# ---- 2. delay ----
a0=$(uas_count uasa INVITE_Recv)
id=$(inject '{"kind":"delay","zone":"zone-a","duration":"6s","delay":"300ms"}')
calls dl 20
read -r n lo hi < <(rtts dl)
sleep 1.1
a1=$(uas_count uasa INVITE_Recv)
echo "delay 300 ms: $n calls, INVITE->200 ${lo}..${hi} ms; zone-a's server got $((a1 - a0)) INVITEs"
[ $((a1 - a0)) -ge 15 ] || fail "zone-a (preferred, delayed) took only $((a1 - a0)) of 20 calls"
[ "$lo" -ge 290 ] || fail "a call was answered in ${lo} ms through a 300 ms delay"
[ "$hi" -lt 1500 ] || fail "a delayed call took ${hi} ms"
pass "delay 300 ms on zone-a: its calls answered, none under 300 ms (${lo}..${hi} ms)"
admin_code DELETE "/v1/faults/$id" >/dev/null || true

# ---- 3. in-dialog requests ----
wait_until 5 idle_a || fail "zone-a not taking calls before the in-dialog phase"
dialog_phase() { # dialog_phase NAME IN_DIALOG: 5 calls up on zone-a, abort injected, their BYEs
    local b0 b1 id
    b0=$(uas_count uasa BYE_Recv)
    run_uac "$1" "127.0.0.1:$port" resil_uac_call.xml -s 1000 -m 5 -r 10 -d 3000 -timeout 40s -trace_counts &
    local u=$!
    PIDS+=("$u")
    sleep 1.5
    id=$(inject "{\"kind\":\"abort\",\"zone\":\"zone-a\",\"duration\":\"6s\",\"in_dialog\":$2}")
    wait "$u" || fail "$1: calls failed: $(tail -5 "$TMP/$1.log")"
    _pids_forget "$u"
    sleep 1.1
    b1=$(uas_count uasa BYE_Recv)
    admin_code DELETE "/v1/faults/$id" >/dev/null || true
    echo $((b1 - b0))
}
byes=$(dialog_phase dlg_off false)
echo "abort, in_dialog false: zone-a got $byes BYEs of 5 calls up there"
[ "$byes" = 5 ] || fail "an abort with in_dialog false kept $((5 - byes)) BYEs of established calls from zone-a"
pass "in_dialog false: the BYEs of established calls reach zone-a during the abort"
wait_until 5 idle_a || fail "zone-a not taking calls again"
byes=$(dialog_phase dlg_on true)
echo "abort, in_dialog true: zone-a got $byes BYEs of 5 calls up there"
[ "$byes" = 0 ] || fail "an abort with in_dialog true let $byes BYEs through to zone-a"
pass "in_dialog true: the BYEs are aborted too"
stop_keel
