#!/usr/bin/env bash
# Slow-start (DESIGN.md "Resilience semantics"): weight = w x max(10%,
# t/window), window 6 s here, and a zone's weight follows its destinations'.
# Under 100 calls/s, per-destination INVITE counts (keel_calls_seized_total)
# are sampled every 0.2 s:
#  1. zone-a (one destination, a1; zones 50/50) dies and comes back by its
#     health checks: in the first fifth of the window (1.2 s) zone-a gets
#     well under half its steady share (50%), by the end of the window all
#     of it, ramping in between, not jumping.
#  2. a reload adds a2 to zone-a (a1 and a2 1:1, so a2's steady share is
#     25%): the same ramp for a2.
# Destinations present at start are not ramped (they start at full weight).
source "$(dirname "$0")/lib/common.sh"

WINDOW=6
port=$(free_port); pa1=$(free_port); pa2=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() {
    python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml.new" "$port" "$@" zone=zone-b:50:127.0.0.1:$pb \
        interval=1s timeout=500ms rise=2 fall=3 attempt_timeout=500ms \
        window=${WINDOW}s aggression=1.0 min_weight_percent=10 admin="$ADMIN_PORT" &&
        mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"
}
conf zone=zone-a:50:127.0.0.1:$pa1
start_uas uasa1 "$pa1" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"
A1="sip:127.0.0.1:$pa1" A2="sip:127.0.0.1:$pa2" B="sip:127.0.0.1:$pb"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
up() { [ "$(m keel_destination_up destination="$1")" = "$2" ]; }
[ "$(m keel_destination_weight destination="$A1")" = 1 ] || fail "a1 does not start at full weight"

# sampler.py OUT: every 0.2 s, a JSON line {t, seized:{uri:n}, weight:{uri:w}}
cat >"$TMP/sampler.py" <<'PY'
import json, re, sys, time, urllib.request
port, out = sys.argv[1], sys.argv[2]
f = open(out, "a", buffering=1)
pat = re.compile(r'^(keel_calls_seized_total|keel_destination_weight)\{[^}]*destination="([^"]+)"[^}]*\}\s+(\S+)', re.M)
while True:
    t = time.time()
    try:
        body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=2).read().decode()
    except Exception:
        time.sleep(0.2)
        continue
    rec = {"t": t, "seized": {}, "weight": {}}
    for name, uri, v in pat.findall(body):
        rec["seized" if name == "keel_calls_seized_total" else "weight"][uri] = float(v)
    f.write(json.dumps(rec) + "\n")
    time.sleep(max(0, 0.2 - (time.time() - t)))
PY
# analyse.py SAMPLES T0 URI PEERS...: URI's share of the calls seized by
# URI+PEERS in slices of the window after T0, and its weight in force
cat >"$TMP/analyse.py" <<'PY'
import json, sys
samples = [json.loads(l) for l in open(sys.argv[1])]
t0, uri, window = float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
peers = sys.argv[5:]
def at(t):  # the last sample taken at or before t
    best = samples[0]
    for s in samples:
        if s["t"] <= t:
            best = s
    return best
def share(a, b):
    sa, sb = at(t0 + a * window), at(t0 + b * window)
    d = lambda s, u: s["seized"].get(u, 0)
    mine = d(sb, uri) - d(sa, uri)
    total = mine + sum(d(sb, p) - d(sa, p) for p in peers)
    return mine, total
for name, a, b in (("first", 0.0, 0.2), ("second", 0.2, 0.4), ("middle", 0.4, 0.6),
                   ("fourth", 0.6, 0.8), ("fifth", 0.8, 1.0), ("after", 1.0, 1.4)):
    mine, total = share(a, b)
    print("%s %d %d %.3f %.2f" % (name, mine, total, mine / total if total else -1,
                                  at(t0 + b * window)["weight"].get(uri, -1)))
PY
python3 "$TMP/sampler.py" "$ADMIN_PORT" "$TMP/samples.jsonl" &
PIDS+=("$!")

# ts_of REGEX: Unix time of the first log line matching REGEX
ts_of() {
    python3 - "$TMP/keel.log" "$1" <<'PY'
import datetime, re, sys
for line in open(sys.argv[1]):
    if re.search(sys.argv[2], line):
        ts = re.match(r"ts=(\S+)Z", line).group(1)
        print(datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f")
              .replace(tzinfo=datetime.timezone.utc).timestamp())
        sys.exit(0)
sys.exit(1)
PY
}
# judge NAME STEADY: the ramp of analyse.py's output in $TMP/NAME.ramp
judge() {
    local name=$1 steady=$2
    cat "$TMP/$name.ramp"
    python3 - "$TMP/$name.ramp" "$steady" "$name" <<'PY' || fail "$name: no ramp"
import sys
rows = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1])}
steady, name = float(sys.argv[2]), sys.argv[3]
share = {k: float(v[2]) for k, v in rows.items()}
bad = []
if int(rows["first"][1]) < 60:
    bad.append("too few calls in the first fifth (%s) to judge" % rows["first"][1])
if not share["first"] < steady / 2:
    bad.append("first fifth of the window: share %.3f, not well under half the steady %.2f"
               % (share["first"], steady))
if not share["first"] < share["middle"] < share["fifth"]:
    bad.append("no ramp: first %.3f, middle %.3f, last fifth %.3f"
               % (share["first"], share["middle"], share["fifth"]))
if not share["after"] >= steady * 0.85:
    bad.append("after the window: share %.3f, not all of the steady %.2f" % (share["after"], steady))
if float(rows["after"][3]) != 1.0:
    bad.append("weight in force after the window is %s, not 1" % rows["after"][3])
for b in bad:
    print("FAIL: %s: %s" % (name, b))
sys.exit(1 if bad else 0)
PY
}

# ---- 1. zone-a dies, then comes back by its health checks ----
stop_pid "$uasa1_PID"
wait_until 8 up "$A1" 0 || fail "a1 not marked down after its server died"
run_uac uac1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 1600 -r 100 -d 50 -timeout 60s &
UAC=$!
PIDS+=("$UAC")
sleep 2
start_uas uasa1b "$pa1" uas_call.xml
wait_until 8 up "$A1" 1 || fail "a1 not marked up after its server came back"
t_up=$(ts_of "event=destination_up zone=zone-a") || fail "no destination_up logged"
grep -q "event=destination_recovered zone=zone-a dest=$A1 by=health" "$TMP/keel.log" || fail "no recovery logged"
sleep $((WINDOW * 14 / 10 + 1))
rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
[ $rc -eq 0 ] || fail "sipp uac1: not every call succeeded: $(tail -5 "$TMP/uac1.log")"
python3 "$TMP/analyse.py" "$TMP/samples.jsonl" "$t_up" "$A1" "$WINDOW" "$B" >"$TMP/zone.ramp"
judge zone 0.5
pass "zone-a's return ramps over the ${WINDOW} s window (steady share 50%)"

# ---- 2. a reload adds a2 to zone-a ----
start_uas uasa2 "$pa2" uas_call.xml
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 1300 -r 100 -d 50 -timeout 60s &
UAC=$!
PIDS+=("$UAC")
sleep 2
conf zone=zone-a:50:127.0.0.1:$pa1,127.0.0.1:$pa2
kill -HUP "$KEEL_PID"
has_a2() { grep -q "destination=\"$A2\"" <(admin_get /metrics); }
wait_until 5 has_a2 || fail "a2 not in the metrics after the reload"
t_add=$(ts_of "event=reloaded") \
    || fail "no reload logged: $(grep -i reload "$TMP/keel.log" | tail -3)"
[ "$(m keel_destination_weight destination="$A1")" = 1 ] || fail "a1, kept by the reload, is ramping"
sleep $((WINDOW * 14 / 10 + 1))
rc=0
wait "$UAC" || rc=$?
_pids_forget "$UAC"
[ $rc -eq 0 ] || fail "sipp uac2: not every call succeeded: $(tail -5 "$TMP/uac2.log")"
python3 "$TMP/analyse.py" "$TMP/samples.jsonl" "$t_add" "$A2" "$WINDOW" "$A1" "$B" >"$TMP/added.ramp"
judge added 0.25
pass "a2, added by reload, ramps over the window (steady share 25%)"
stop_keel
