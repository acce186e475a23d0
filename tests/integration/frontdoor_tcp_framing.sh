#!/usr/bin/env bash
# TCP framing (RFC 3261 §18.3): pipelined and split messages, missing
# Content-Length, too big, and the connection limits.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port)
keel_conf "$TMP/keel.yaml" "$port"
cat >>"$TMP/keel.yaml" <<YAML
transport: { max_message_size: 4096, max_connections: 8, header_timeout: 1s, idle_timeout: 30s }
YAML
start_keel "$TMP/keel.yaml"

python3 - "$port" <<'PY'
import sys, time
from sip import Tcp, Udp, request, check
port = int(sys.argv[1])

def opt(t, cid):
    return request("OPTIONS", "sip:127.0.0.1:%d" % port, transport="TCP", local_port=t.local_port, call_id=cid)

t = Tcp(port)
t.send(opt(t, "p1") + opt(t, "p2") + b"\r\n" + opt(t, "p3"))
got = [t.recv() for _ in range(3)]
check(all(r is not None and r.code == 200 for r in got), "three pipelined OPTIONS in one write: three 200s")
check([r.get("Call-ID") for r in got] == ["p1", "p2", "p3"], "answered in order")

m = opt(t, "split")
for piece in (m[:7], m[7:60], m[60:-3], m[-3:]):
    t.send(piece)
    time.sleep(0.05)
r = t.recv()
check(r is not None and r.code == 200 and r.get("Call-ID") == "split", "one message in four pieces: one 200")

body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
m = request("OPTIONS", "sip:127.0.0.1:%d" % port, transport="TCP", local_port=t.local_port, call_id="body", body=body, headers=[("Content-Type", "application/sdp")])
cut = len(m) - 10
t.send(m[:cut]); time.sleep(0.05); t.send(m[cut:])
r = t.recv()
check(r is not None and r.code == 200 and r.get("Call-ID") == "body", "body split across reads")

t.send(b"\r\n\r\n")
t.s.settimeout(2)
pong = t.s.recv(10)
check(pong == b"\r\n", "CRLFCRLF keep-alive ping gets a CRLF pong (RFC 5626)")

# no Content-Length on a stream: 400, then closed
t2 = Tcp(port)
t2.send(request("OPTIONS", "sip:127.0.0.1:%d" % port, transport="TCP", local_port=t2.local_port, omit=("Content-Length",)))
r = t2.recv()
check(r is not None and r.code == 400, "missing Content-Length on TCP: 400 (got %r)" % r)
check(t2.closed(), "and the connection is closed")

# bad Content-Length
t3 = Tcp(port)
t3.send(request("OPTIONS", "sip:127.0.0.1:%d" % port, transport="TCP", local_port=t3.local_port, content_length="12abc"))
r = t3.recv()
check(r is not None and r.code == 400, "Content-Length 12abc: 400")
check(t3.closed(), "and the connection is closed")

# too big: 513 where the headers can be read, then closed
t4 = Tcp(port)
t4.send(request("MESSAGE", "sip:a@cc.example.com", transport="TCP", local_port=t4.local_port, body=b"x" * 8000))
try:
    r = t4.recv()
except EOFError:
    r = None
check(r is None or r.code == 513, "a message past max_message_size: 513 or nothing (got %r)" % r)
check(t4.closed(), "and the connection is closed")

# slowloris: a header section that never completes is cut off
t5 = Tcp(port)
t5.send(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKslow\r\n")
check(t5.closed(4), "an incomplete header section is closed after header_timeout")

# connection limit
conns = [Tcp(port) for _ in range(12)]
time.sleep(0.3)
closed = sum(1 for c in conns if c.closed(0.3))
check(closed >= 4, "connections past max_connections are closed (%d of 12)" % closed)
for c in conns:
    c.close()
time.sleep(0.3)

u = Udp(port)
r = u.ask(request("OPTIONS", "sip:127.0.0.1:%d" % port, local_port=u.local_port))
check(r is not None and r.code == 200, "keel still answers")
PY
stop_keel
pass "clean shutdown"
