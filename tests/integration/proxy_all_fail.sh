#!/usr/bin/env bash
# When every attempt fails, the caller gets the best answer (RFC 3261
# §16.7): every zone answering 503 -> 500 (503 would say keel itself is
# overloaded), every zone silent -> 408, and answers about the call (486)
# are never failed over.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    prefer_local=true attempt_timeout=300ms
start_keel "$TMP/keel.yaml"

python3 - "$port" "$pa" "$pb" <<'PY'
import sys, time
from sip import Udp, Server, request, check
port, pa, pb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
A, B = Server(pa), Server(pb)
u = Udp(port)
ruri = "sip:+15550002@127.0.0.1:%d" % port

n = [0]

def call(answer_a, answer_b):
    n[0] += 1
    cid = "allfail-%d@test" % n[0]
    inv = request("INVITE", ruri, local_port=u.local_port, call_id=cid, branch="af%d" % n[0])
    u.send(inv)
    seen = []
    for srv, ans in ((A, answer_a), (B, answer_b)):
        req, _, addr = srv.recv_method("INVITE", 1.5)
        seen.append(req is not None)
        if req is not None and ans:
            srv.reply(req, addr, ans, "X")
            srv.recv_method("ACK", 1)
    end = time.time() + 3
    while time.time() < end:
        r = u.recv(0.5)
        if r is not None and r.code >= 200 and r.get("Call-ID") == cid:
            # the ACK for a non-2xx final: same branch, hop by hop
            ack = inv.split(b"\r\n\r\n")[0].replace(b"INVITE sip:", b"ACK sip:", 1)
            ack = ack.replace(b"CSeq: 1 INVITE", b"CSeq: 1 ACK").replace(b"Content-Length: 0", b"")
            ack = ack.replace(b"To: <%s>" % ruri.encode(), b"To: " + r.get("To").encode())
            u.send(ack.rstrip(b"\r\n") + b"\r\nContent-Length: 0\r\n\r\n")
            return r, seen
    return None, seen

r, seen = call(503, 503)
check(seen == [True, True], "both zones tried")
check(r is not None and r.code == 500, "all 503 -> 500 to the caller (%r)" % r)
r, seen = call(None, None)
check(seen == [True, True], "both zones tried when silent")
check(r is not None and r.code == 408, "all silent -> 408 (%r)" % r)
time.sleep(0.7)
for srv in (A, B):
    while srv.recv(0.1)[0] is not None:
        pass
r, seen = call(486, None)
check(r is not None and r.code == 486, "486 Busy Here goes to the caller (%r)" % r)
check(seen == [True, False], "486 is an answer about the call: no failover (%s)" % seen)
PY
stop_keel
