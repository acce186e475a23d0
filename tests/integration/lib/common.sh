# Sourced by every integration test: paths, free ports, starting and
# stopping the processes a test owns (by PID, trapped on exit).
set -euo pipefail

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KEEL_SRC=${KEEL_SRC:-$(cd "$LIB_DIR/../../.." && pwd)}
KEEL_BIN=${KEEL_BIN:-$KEEL_SRC/build/keel}
TEST_NAME=$(basename "$0" .sh)
TMP=$(mktemp -d "/tmp/keel-$TEST_NAME.XXXXXX")
PIDS=()
export PYTHONPATH="$LIB_DIR${PYTHONPATH:+:$PYTHONPATH}"

_cleanup() {
    local rc=$?
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && wait "$p" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        echo "--- $TEST_NAME failed (rc=$rc); logs in $TMP"
        for f in "$TMP"/*.log; do
            [ -f "$f" ] || continue
            echo "--- $f (last 40 lines)"
            tail -n 40 "$f"
        done
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap _cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

pass() {
    echo "ok: $*"
}

# A port free for both UDP and TCP on 127.0.0.1, found at run time.
free_port() {
    python3 "$LIB_DIR/freeport.py" "${1:-127.0.0.1}"
}

# media_port [ADDR]: a port for SIPp's -mp: P..P+3 free (SIPp binds audio
# and video RTP at P and P+2 and exits if either is taken), below the
# ephemeral range so no socket bound to port 0 can take it meanwhile.
media_port() {
    python3 "$LIB_DIR/freeport.py" --media "${1:-127.0.0.1}"
}

# keel_conf FILE UDP_TCP_PORT [extra yaml appended]: a minimal config on
# loopback with both transports on one port, routing to 127.0.0.1:DEST_PORT.
keel_conf() {
    local file=$1 port=$2 dest=${3:-$(free_port)}
    cat >"$file" <<YAML
node: { id: test, zone: zone-a }
log: { level: info }
cookie_secret: "integration-test-secret-0123456789"
domains: [cc.example.com]
listen:
  - { transport: udp, address: 127.0.0.1, port: $port }
  - { transport: tcp, address: 127.0.0.1, port: $port }
clusters:
  - name: voice
    zones:
      - name: zone-a
        weight: 1
        destinations:
          - { uri: "sip:127.0.0.1:$dest" }
YAML
}

# start_keel CONF [NAME]: starts keel, records its PID in KEEL_PID, waits until
# it answers OPTIONS on its first UDP listener.
start_keel() {
    local conf=$1 name=${2:-keel}
    "$KEEL_BIN" -c "$conf" >"$TMP/$name.log" 2>&1 &
    KEEL_PID=$!
    PIDS+=("$KEEL_PID")
    local port
    port=$(python3 -c 'import sys,re
t=open(sys.argv[1]).read()
m=re.search(r"transport:\s*udp,\s*address:\s*(127\.[0-9.]+),\s*port:\s*(\d+)",t)
print(m.group(1)+" "+m.group(2))' "$conf")
    if ! python3 "$LIB_DIR/sipcheck.py" wait $port; then
        fail "keel did not come up on $port"
    fi
}

# stop_keel: SIGTERM, then the exit status must be 0 (ASan/LSan report
# leaks and errors through it).
stop_keel() {
    local pid=${1:-$KEEL_PID} rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    _pids_forget "$pid"
    [ $rc -eq 0 ] || fail "keel exited with $rc after SIGTERM (see $TMP/keel.log)"
    if grep -q "ERROR: \(Address\|Leak\)Sanitizer\|runtime error:" "$TMP"/keel*.log 2>/dev/null; then
        fail "sanitizer report in keel's log"
    fi
}

SCEN="$KEEL_SRC/tests/integration/scenarios"

# start_uas NAME PORT SCENARIO [u1|t1]: a SIPp server in the background,
# answering OPTIONS (-aa); its PID in <NAME>_PID, stats in $TMP/NAME.csv,
# message counts (-trace_counts) for uas_count.
start_uas() {
    local name=$1 port=$2 sf=$3 t=${4:-u1}
    command -v sipp >/dev/null || fail "sipp is not installed (scripts/setup installs sip-tester)"
    # -mp: a media port found free, not SIPp's fixed 6000 (parallel tests,
    # the bench harness)
    (cd "$TMP" && exec sipp -sf "$SCEN/$sf" -i 127.0.0.1 -p "$port" -mp "$(media_port)" -t "$t" -aa -nostdin -timeout "${UAS_TIMEOUT:-120s}" \
        -trace_stat -stf "$TMP/$name.csv" -fd 1 -trace_err -error_file "$TMP/$name.err" \
        -trace_counts >"$TMP/$name.log" 2>&1) &
    local pid=$!
    PIDS+=("$pid")
    eval "${name}_PID=$pid"
    sleep 0.3
    kill -0 "$pid" 2>/dev/null || fail "sipp $name did not start: $(cat "$TMP/$name.log")"
}

# run_uac NAME TARGET SCENARIO SIPP-ARGS...: a SIPp client in the
# foreground, bounded by -timeout; returns sipp's exit code (0: every call
# succeeded).
run_uac() {
    local name=$1 target=$2 sf=$3
    shift 3
    local lport rc=0
    lport=$(free_port)
    # in $TMP: SIPp writes its trace files (-trace_rtt ...) to the current folder
    (cd "$TMP" && timeout 300 sipp "$target" -sf "$SCEN/$sf" -i 127.0.0.1 -p "$lport" -mp "$(media_port)" -nostdin \
        -trace_stat -stf "$TMP/$name.csv" -fd 1 -trace_err -error_file "$TMP/$name.err" \
        "$@" >"$TMP/$name.log" 2>&1) || rc=$?
    return $rc
}

# stat NAME COLUMN: the last value of a SIPp statistics column, e.g.
# stat uac "SuccessfulCall(C)"
stat() {
    python3 - "$TMP/$1.csv" "$2" <<'PY'
import sys
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
head = rows[0]
print(rows[-1][head.index(sys.argv[2])])
PY
}

# uas_count NAME SUFFIX: the last value of the first message-count column of
# the SIPp server NAME (started by start_uas) whose name ends with SUFFIX,
# e.g. uas_count uasa INVITE_Recv. Unlike IncomingCall(C), it does not count
# the OPTIONS health probes that -aa answers. Written every second.
uas_count() {
    local pid
    eval "pid=\${$1_PID}"
    python3 - "$TMP" "$pid" "$2" <<'PY'
import glob, sys
files = glob.glob("%s/*_%s_counts.csv" % (sys.argv[1], sys.argv[2]))
if len(files) != 1:
    sys.exit("no single SIPp counts file for pid %s: %s" % (sys.argv[2], files))
rows = [l.rstrip("\n").split(";") for l in open(files[0]) if l.strip()]
head = rows[0]
col = [i for i, h in enumerate(head) if h.endswith("_" + sys.argv[3])][0]
print(rows[-1][col])
PY
}

# start_dnsmasq NAME PORT DNSMASQ-ARGS...: a dnsmasq on 127.0.0.1:PORT that
# answers only for *.test from the records in its arguments (log in
# $TMP/NAME.log, PID in NAME_PID, stopped on exit); waits until it answers
# a query (any answer: up.test has no record, NXDOMAIN will do).
start_dnsmasq() {
    local name=$1 p=$2
    shift 2
    dnsmasq --no-daemon --port="$p" --listen-address=127.0.0.1 --bind-interfaces \
        --no-resolv --no-hosts --local=/test/ --pid-file="$TMP/$name.pid" \
        --log-queries --log-facility=- "$@" >>"$TMP/$name.log" 2>&1 &
    eval "${name}_PID=$!"
    PIDS+=("$!")
    wait_until 5 python3 "$LIB_DIR/dnsconf.py" query "$p" up.test A >/dev/null \
        || fail "dnsmasq $name did not come up on $p"
}

# ---- the admin API (issue 4); ADMIN_PORT set by the test, ADMIN_TOKEN
# optional (sent as a bearer token on POSTs) ----

# admin_get PATH: prints the body of GET PATH (fails on a transport error).
admin_get() {
    curl -sS --max-time 10 "http://127.0.0.1:$ADMIN_PORT$1"
}

# admin_post PATH: prints the body of POST PATH, with the bearer token when
# ADMIN_TOKEN is set.
admin_post() {
    local auth=()
    [ -n "${ADMIN_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $ADMIN_TOKEN")
    curl -sS --max-time 10 -X POST "${auth[@]}" "http://127.0.0.1:$ADMIN_PORT$1"
}

# admin_code METHOD PATH [curl args...]: prints only the HTTP status code;
# the body goes to $TMP/admin.body, the headers to $TMP/admin.headers.
admin_code() {
    local method=$1 path=$2
    shift 2
    curl -sS --max-time 10 -X "$method" -o "$TMP/admin.body" -D "$TMP/admin.headers" \
        -w '%{http_code}' "$@" "http://127.0.0.1:$ADMIN_PORT$path"
}

# scrape FILE: saves GET /metrics in FILE.
scrape() {
    admin_get /metrics >"$1" || fail "GET /metrics failed"
}

# metric FILE NAME [label=value...]: the sum of the samples of NAME in the
# scrape FILE whose labels include every label=value given (0 when none).
# (awk: tests call it dozens of times, a process start each)
metric() {
    local f=$1 name=$2 wants=""
    shift 2
    local IFS=$'\036'
    wants="$*"
    awk -v name="$name" -v wants="$wants" '
BEGIN { n = split(wants, W, "\036") }
/^#/ { next }
{
    line = $0; b = index(line, "{")
    if (b > 0) {
        nm = substr(line, 1, b - 1); rest = substr(line, b); e = index(rest, "} ")
        labels = substr(rest, 1, e); val = substr(rest, e + 2)
    } else {
        split(line, P, " "); nm = P[1]; labels = ""; val = P[2]
    }
    if (nm != name) next
    for (i = 1; i <= n; i++) {
        if (W[i] == "") continue
        eq = index(W[i], "="); pat = substr(W[i], 1, eq - 1) "=\"" substr(W[i], eq + 1) "\""
        if (!index(labels, "{" pat ",") && !index(labels, "{" pat "}") &&
            !index(labels, "," pat ",") && !index(labels, "," pat "}")) next
    }
    split(val, V, " "); total += V[1]
}
END { if (total == int(total)) printf "%.0f\n", total; else print total }' "$f"
}

# json_eval EXPR: evaluates the Python expression EXPR with j bound to the
# JSON document read on stdin, prints the result (JSON for lists and dicts).
json_eval() {
    python3 -c 'import json,sys
j=json.load(sys.stdin)
r=eval(sys.argv[1])
print(json.dumps(r) if isinstance(r,(list,dict)) else ("true" if r is True else "false" if r is False else r))' "$1"
}

# wait_until SECONDS CMD...: runs CMD every 0.1 s until it succeeds; fails
# when it has not within SECONDS.
wait_until() {
    local limit=$1 i
    shift
    for ((i = 0; i < limit * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# stop_pid PID: SIGTERM a process this test started and wait for it.
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    _pids_forget "$1"
}

# _pids_forget PID: drops PID (exactly that one) from PIDS.
_pids_forget() {
    local p keep=()
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && [ "$p" != "$1" ] && keep+=("$p")
    done
    PIDS=("${keep[@]:-}")
}
