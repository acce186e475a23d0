#!/usr/bin/env bash
# RFC 7339 overload control from a destination (issue 6: "honours the same
# from a destination that sends it: that destination's share of new
# requests is reduced by the asked percentage for the validity period,
# counted, visible in /v1/state"). Chat cluster, zone-a and zone-b 50/50,
# one server each; zone-a's server (a small UDP server) answers MESSAGE 200
# and, while told to, puts oc=50;oc-validity=4000 on keel's Via (keel
# advertises ;oc on its Via). MESSAGEs at 50/s:
#   before: ~50% to zone-a; while it asks for 50% less: ~25% (at most 35%);
#   after the validity lapses: ~50% again.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pb chat_zone=zone-a:50:127.0.0.1:$pa chat_zone=zone-b:50:127.0.0.1:$pb \
    interval=1s timeout=500ms admin="$ADMIN_PORT"

# ocserver.py PORT FLAG COUNTS: 200 to MESSAGE and OPTIONS; while FLAG
# exists, the top Via of each 200 carries oc=50;oc-validity=4000 (when the
# request's top Via advertised ;oc). One line per MESSAGE in COUNTS: "oc" or "-".
cat >"$TMP/ocserver.py" <<'PY'
import os, re, sys
import sip
port, flag, counts = int(sys.argv[1]), sys.argv[2], sys.argv[3]
srv = sip.Server(port)
out = open(counts, "a", buffering=1)
seq = 0
while True:
    req, data, addr = srv.recv(1.0)
    if req is None or req.code:
        continue
    method = req.start.split(" ", 1)[0]
    if method not in ("MESSAGE", "OPTIONS"):
        continue
    lines = ["SIP/2.0 200 OK"]
    first = True
    asked = False
    for n, v in req.headers:
        if n.lower() in ("via", "v"):
            if first and method == "MESSAGE" and os.path.exists(flag) and re.search(r";oc(;|$|=)", v):
                seq += 1
                v = re.sub(r";oc(=[^;]*)?(?=;|$)", "", v) + ";oc=50;oc-validity=4000;oc-seq=%d;oc-algo=\"loss\"" % seq
                asked = True
            first = False
            lines.append("Via: " + v)
    for n, v in req.headers:
        if n.lower() in ("from", "f", "call-id", "i", "cseq"):
            lines.append("%s: %s" % (n, v))
    to = req.get("To") or req.get("t")
    lines.append("To: " + to + ("" if ";tag=" in to else ";tag=oc1"))
    lines.append("Content-Length: 0")
    srv.s.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), addr)
    if method == "MESSAGE":
        out.write(("oc" if asked else "-") + "\n")
PY
python3 "$TMP/ocserver.py" "$pa" "$TMP/ask-oc" "$TMP/a.count" &
PIDS+=("$!")
start_uas chatb "$pb" uas_message.xml
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
got_a() { wc -l <"$TMP/a.count" 2>/dev/null || echo 0; }
got_b() { uas_count chatb MESSAGE_Recv; }
# phase NAME N: N MESSAGEs at 50/s; prints zone-a's share
phase() {
    local a0 b0 a1 b1
    a0=$(got_a); sleep 1.1; b0=$(got_b)
    run_uac "$1" "127.0.0.1:$port" uac_message.xml -s chat -m "$2" -r 50 -timeout 30s \
        || fail "$1: not every MESSAGE got 200: $(tail -5 "$TMP/$1.log")"
    sleep 1.2
    a1=$(got_a); b1=$(got_b)
    echo "$1: zone-a $((a1 - a0)), zone-b $((b1 - b0))" >&2
    python3 -c "import sys; a, b = int(sys.argv[1]), int(sys.argv[2]); print('%.3f' % (a / (a + b)))" \
        $((a1 - a0)) $((b1 - b0))
}

before=$(phase before 100)
touch "$TMP/ask-oc"
# the first answers carry the request: keel cuts zone-a's share from then on
during=$(phase during 200)
grep "event=overload_feedback" "$TMP/keel.log" | head -3
admin_get /v1/state | json_eval '[d.get("overload") for c in j["clusters"] for z in c["zones"] for d in z["destinations"] if d["uri"].endswith(":'"$pa"'")]'
rm "$TMP/ask-oc"
sleep 4.5 # the last oc-validity (4 s) lapses
after=$(phase after 100)
echo "zone-a's share: before $before, while asking for 50% less $during, after $after"

grep -q "event=overload_feedback zone=zone-a .*reduce_percent=50" "$TMP/keel.log" \
    || fail "the destination's oc=50 was not taken up (no overload_feedback logged)"
python3 -c "import sys; b, d, a = map(float, sys.argv[1:]); sys.exit(0 if 0.4 <= b <= 0.6 else 1)" "$before" "$during" "$after" \
    || fail "zone-a's share before any oc was $before, expected ~0.5"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 0.35 else 1)" "$during" \
    || fail "zone-a asked for 50% less (RFC 7339 loss), yet its share stayed $during (before: $before; expected ~0.25)"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.4 else 1)" "$after" \
    || fail "zone-a's share stayed $after after the oc validity lapsed"
pass "oc=50 from zone-a: its share went $before -> $during -> $after"
stop_keel
