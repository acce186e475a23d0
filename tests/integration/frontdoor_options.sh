#!/usr/bin/env bash
# OPTIONS addressed to keel is answered 200 with Allow and Accept, over UDP
# and TCP, IPv4 and IPv6 (when ::1 is there); keel stops cleanly.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port)
keel_conf "$TMP/keel.yaml" "$port"
have6=0
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null; then
    have6=1
    port6=$(free_port ::1)
    cat >>"$TMP/keel.yaml" <<YAML
YAML
    python3 - "$TMP/keel.yaml" "$port6" <<'PY'
import sys
p, port6 = sys.argv[1], sys.argv[2]
t = open(p).read()
t = t.replace("listen:\n", "listen:\n  - { transport: udp, address: \"::1\", port: %s }\n  - { transport: tcp, address: \"::1\", port: %s }\n" % (port6, port6))
open(p, "w").write(t)
PY
fi
start_keel "$TMP/keel.yaml"

python3 - "$port" "$have6" "${port6:-0}" <<'PY'
import sys
from sip import Udp, Tcp, request, check
port, have6, port6 = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])

def verify(r, what):
    check(r is not None and r.code == 200, what + ": 200 OK (got %r)" % r)
    check("INVITE" in (r.get("Allow") or "") and "OPTIONS" in r.get("Allow"), what + ": Allow lists INVITE and OPTIONS")
    check("application/sdp" in (r.get("Accept") or ""), what + ": Accept lists application/sdp")
    check(";tag=" in r.get("To"), what + ": To has a tag")
    check(r.get("Content-Length") == "0", what + ": Content-Length 0")

u = Udp(port)
req = request("OPTIONS", "sip:127.0.0.1:%d" % port, local_port=u.local_port, call_id="opt-udp@test")
r = u.ask(req)
verify(r, "UDP")
check(r.get("Call-ID") == "opt-udp@test", "UDP: Call-ID copied")
check(r.all("Via")[0].startswith("SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK" % u.local_port), "UDP: Via copied")
r2 = u.ask(req)
check(r2 is not None and r2.get("To") == r.get("To"), "UDP: a retransmission gets the same To tag")

r = u.ask(request("OPTIONS", "sip:cc.example.com", local_port=u.local_port))
verify(r, "UDP, by domain")

t = Tcp(port)
verify(t.ask(request("OPTIONS", "sip:127.0.0.1:%d;transport=tcp" % port, transport="TCP", local_port=t.local_port)), "TCP")
verify(t.ask(request("OPTIONS", "sip:127.0.0.1:%d;transport=tcp" % port, transport="TCP", local_port=t.local_port)), "TCP, second on the same connection")

# Via without rport: the answer goes to the sent-by port (RFC 3261 18.2.2)
u2 = Udp(port)
r = u2.ask(request("OPTIONS", "sip:127.0.0.1", local_port=u2.local_port, rport=False))
verify(r, "UDP without rport, to the Via port")

if have6:
    u6 = Udp(port6, "::1")
    r = u6.ask(request("OPTIONS", "sip:[::1]:%d" % port6, local_port=u6.local_port).replace(b"127.0.0.1", b"[::1]"))
    verify(r, "UDP over IPv6")
    t6 = Tcp(port6, "::1")
    verify(t6.ask(request("OPTIONS", "sip:[::1]:%d" % port6, transport="TCP", local_port=t6.local_port).replace(b"127.0.0.1", b"[::1]")), "TCP over IPv6")
PY
stop_keel
pass "clean shutdown"
