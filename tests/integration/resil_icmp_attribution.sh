#!/usr/bin/env bash
# An ICMP port unreachable is about one destination (DESIGN.md: "failover
# on ... a transport error"; docs/config.md: ICMP unreachable on UDP
# "always moves the request on"). zone-a (preferred) is a port nobody
# listens on, zone-b answers. Bursts of INVITEs arrive together, so keel
# handles several in one go: each attempt to zone-a meets ICMP port
# unreachable and must fail over to zone-b at once (not after
# attempt_timeout, 2 s), and zone-b, which never fails, must never be
# charged with a failure. (Linux queues the ICMP error on the socket: the
# next sendto() on it fails with ECONNREFUSED whatever its destination.)
# Health and the breaker are kept from acting (probes off, 100000
# consecutive failures to eject) so that every INVITE tries zone-a first.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb prefer_local=true health=false \
    consecutive_failures=100000 failure_percent=100 min_requests=1000000 retry_min=10000 \
    attempt_timeout=2s admin="$ADMIN_PORT"
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

# burst.py PORT N ROUNDS KEEL_PID: ROUNDS bursts of N INVITEs sent back to
# back while keel is paused (SIGSTOP, then SIGCONT: it finds them all queued
# and reads them in one batch, as under load);
# per INVITE: whether a 100 came, the final code and its delay (ms). ACKs
# the 200 (hop by hop to keel, which routes it by its cookie). Prints a
# summary line "calls ok100 answered slow max_ms" and the slow ones.
cat >"$TMP/burst.py" <<'PY'
import os, re, signal, socket, sys, time
import sip
port, n, rounds, keel = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
lp = s.getsockname()[1]
calls = {}
for r in range(rounds):
    batch = []
    for i in range(n):
        cid = sip.rand(16) + "@burst"
        req = sip.request("INVITE", "sip:1000@127.0.0.1:%d" % port, local_port=lp, call_id=cid,
                          headers=[("X-Carrier-Tag", "Keep-This-Case")])
        batch.append((cid, req))
    os.kill(keel, signal.SIGSTOP)
    try:
        time.sleep(0.05)
        t0 = time.time()
        for cid, req in batch:
            s.sendto(req, ("127.0.0.1", port))
            calls[cid] = {"t0": t0, "100": False, "final": None, "ms": None}
        time.sleep(0.05)
    finally:
        os.kill(keel, signal.SIGCONT)
    end = time.time() + 4
    s.settimeout(0.2)
    while time.time() < end and any(calls[c]["final"] is None for c, _ in batch):
        try:
            resp = sip.Response(s.recv(70000))
        except socket.timeout:
            continue
        c = calls.get(resp.get("Call-ID"))
        if c is None:
            continue
        if resp.code == 100:
            c["100"] = True
        elif resp.code >= 200 and c["final"] is None:
            c["final"] = resp.code
            c["ms"] = (time.time() - c["t0"]) * 1000
            rr = resp.all("Record-Route")
            m = re.search(r";tag=([^;>\s]+)", resp.get("To") or "")
            if resp.code < 300:
                ack = sip.request("ACK", re.search(r"<([^>]+)>", resp.get("Contact")).group(1),
                                  local_port=lp, call_id=resp.get("Call-ID"), cseq="1 ACK",
                                  to_tag=m.group(1) if m else None,
                                  headers=[("Route", r) for r in rr])
                s.sendto(ack, ("127.0.0.1", port))
    time.sleep(0.3)
vals = list(calls.values())
slow = [c for c in vals if c["final"] is None or c["ms"] > 500]
print(len(vals), sum(c["100"] for c in vals), sum(1 for c in vals if c["final"] == 200), len(slow),
      int(max((c["ms"] or 99999) for c in vals)))
PY
read -r total got100 answered slow maxms < <(python3 "$TMP/burst.py" "$port" 10 5 "$KEEL_PID")
sleep 0.5
scrape "$TMP/end.prom"
e() { metric "$TMP/end.prom" "$@"; }
echo "$total INVITEs in bursts of 10: $answered answered 200, $slow later than 500 ms (slowest ${maxms} ms), $got100 got a 100 Trying"
echo "failovers: $(grep -E '^keel_failovers_total' "$TMP/end.prom" | tr '\n' ' ')"
echo "zone-b: seized $(e keel_calls_seized_total zone=zone-b) answered $(e keel_calls_answered_total zone=zone-b) network failures $(e keel_calls_network_failures_total zone=zone-b)"
grep -E "event=attempt_timeout" "$TMP/keel.log" | head -3 || true

[ "$answered" = "$total" ] || fail "$((total - answered)) of $total INVITEs were not answered 200"
[ "$(e keel_calls_network_failures_total zone=zone-b)" = 0 ] && [ "$(e keel_failovers_total zone=zone-b)" = 0 ] \
    || fail "zone-b, which never failed, was charged with $(e keel_calls_network_failures_total zone=zone-b) network failures / $(e keel_failovers_total zone=zone-b) failovers: zone-a's ICMP error was blamed on a send to zone-b"
[ "$slow" = 0 ] || fail "$slow of $total INVITEs waited for attempt_timeout (slowest ${maxms} ms): zone-a's ICMP error was lost to another send"
[ "$got100" = "$total" ] || fail "$((total - got100)) of $total INVITEs never got keel's 100 Trying: that send failed on zone-a's ICMP error"
pass "$total INVITEs in bursts against a refused zone-a: all failed over at once, zone-b never blamed"
stop_keel
