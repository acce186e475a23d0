"""sipcheck.py wait HOST PORT: waits (up to 15 s) until a SIP server on
HOST:PORT/UDP answers OPTIONS; exit 0 when it does."""
import sys
import time

import sip

if sys.argv[1] == "wait":
    host, port = sys.argv[2], int(sys.argv[3])
    end = time.time() + 15
    while time.time() < end:
        u = sip.Udp(port, host)
        r = u.ask(sip.request("OPTIONS", "sip:%s:%d" % (host, port), local_port=u.local_port),
                  timeout=0.3)
        u.close()
        if r is not None:
            sys.exit(0)
    sys.exit(1)
