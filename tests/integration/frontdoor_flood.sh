#!/usr/bin/env bash
# 10,000 malformed datagrams, then keel still answers OPTIONS, logged as a
# summary and not one line per packet.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port)
keel_conf "$TMP/keel.yaml" "$port"
start_keel "$TMP/keel.yaml"

python3 - "$port" <<'PY'
import random, sys, time
from sip import Udp, request, check
port = int(sys.argv[1])
u = Udp(port)
random.seed(7)
good = request("INVITE", "sip:+1555@cc.example.com", local_port=u.local_port)
sent = 0
for i in range(10000):
    kind = i % 5
    if kind == 0:
        data = bytes(random.getrandbits(8) for _ in range(random.randint(1, 300)))
    elif kind == 1:  # truncated
        data = good[:random.randint(1, len(good) - 1)]
    elif kind == 2:  # bytes flipped
        b = bytearray(good)
        for _ in range(5):
            b[random.randrange(len(b))] = random.getrandbits(8)
        data = bytes(b)
    elif kind == 3:  # headers without values
        data = b"INVITE sip:x@cc.example.com SIP/2.0\r\n" + b"Via:\r\nFrom:\r\nTo:\r\nCall-ID:\r\nCSeq:\r\n\r\n"
    else:
        data = b"SIP/2.0 999 ???\r\n" + b"X: " + b"a" * random.randint(0, 2000) + b"\r\n\r\n"
    u.send(data)
    sent += 1
    if i % 500 == 0:
        time.sleep(0.01)
# drain whatever 4xx answers came back
while u.recv(0.3) is not None:
    pass
r = u.ask(request("OPTIONS", "sip:127.0.0.1:%d" % port, local_port=u.local_port), timeout=3)
check(r is not None and r.code == 200, "after %d malformed datagrams keel answers OPTIONS" % sent)
PY
lines=$(wc -l <"$TMP/keel.log")
[ "$lines" -lt 200 ] || fail "keel logged $lines lines for a flood: hostile input must be counted, not logged per packet"
pass "log stayed short ($lines lines)"
stop_keel
pass "clean shutdown"
