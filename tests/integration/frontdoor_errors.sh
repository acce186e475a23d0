#!/usr/bin/env bash
# The answers RFC 3261 asks for on bad requests, and never an open relay.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port)
keel_conf "$TMP/keel.yaml" "$port"
start_keel "$TMP/keel.yaml"

python3 - "$port" <<'PY'
import sys
from sip import Udp, Tcp, request, check
port = int(sys.argv[1])
u = Udp(port)
lp = u.local_port
me = "sip:+15551234@cc.example.com"

def ask(data, code, what, reason_has=None):
    r = u.ask(data)
    check(r is not None and r.code == code, "%s -> %d (got %r)" % (what, code, r))
    if reason_has:
        check(reason_has.lower() in r.reason.lower(), "%s: reason says %r (got %r)" % (what, reason_has, r.reason))
    return r

ask(request("INVITE", me, local_port=lp, max_forwards=0), 483, "Max-Forwards 0")
ask(request("OPTIONS", me, local_port=lp, max_forwards=0), 483, "OPTIONS with Max-Forwards 0 to a user")
ask(request("INVITE", me, local_port=lp, omit=("Call-ID",)), 400, "missing Call-ID", "Call-ID")
ask(request("INVITE", me, local_port=lp, omit=("From",)), 400, "missing From", "From")
ask(request("INVITE", me, local_port=lp, omit=("To",)), 400, "missing To", "To")
ask(request("INVITE", me, local_port=lp, omit=("CSeq",)), 400, "missing CSeq", "CSeq")
ask(request("INVITE", me, local_port=lp, cseq="1 BYE"), 400, "CSeq method differs", "CSeq")
ask(request("INVITE", me, local_port=lp, cseq="abc INVITE"), 400, "CSeq number not a number", "CSeq")
ask(request("INVITE", me, local_port=lp, headers=[("Max-Forwards", "69")]), 400, "two different Max-Forwards")
ask(request("INVITE", me, local_port=lp, max_forwards="7x"), 400, "Max-Forwards not a number", "Max-Forwards")
ask(request("INVITE", me, local_port=lp, body="v=0\r\n", content_length=50), 400, "Content-Length larger than the body", "Content-Length")
ask(request("INVITE", "http://example.com/x", local_port=lp), 416, "http: Request-URI")
ask(request("INVITE", "sip:+15551234@evil.example.net", local_port=lp), 403, "a domain that is not ours (open relay)")
ask(request("MESSAGE", "sip:someone@8.8.8.8", local_port=lp), 403, "an address that is not ours")
ask(request("INVITE", me, local_port=lp, headers=[("Proxy-Require", "com.example.foo")]), 420, "Proxy-Require")
r = ask(request("OPTIONS", me, local_port=lp).replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505, "SIP/3.0")

# ACKs are never answered, whatever is wrong with them
u.send(request("ACK", me, local_port=lp, omit=("Call-ID",)))
check(u.recv(0.5) is None, "a broken ACK gets no answer")

# junk is dropped silently and keel still answers afterwards
for junk in [b"", b"\x00\x01\x02", b"hello world\r\n\r\n", b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n\r\n",
             b"\xff" * 3000, b"SIP/2.0 200 OK\r\nVia: nothing\r\n\r\n"]:
    u.send(junk)
check(u.recv(0.5) is None, "junk gets no answer")

# a response that matches nothing is dropped
u.send(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKnothing\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
check(u.recv(0.5) is None, "a stray response is dropped")

r = u.ask(request("OPTIONS", "sip:127.0.0.1:%d" % port, local_port=lp))
check(r is not None and r.code == 200, "keel still answers OPTIONS")
PY
stop_keel
pass "clean shutdown"
