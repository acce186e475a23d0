"""freeport.py [ADDR]: prints a port that is free for both UDP and TCP on ADDR.
freeport.py --media [ADDR]: prints an even port P with P..P+3 free for UDP,
below the kernel's ephemeral range: SIPp binds its audio and video RTP (and
RTCP) sockets at -mp, -mp+2 and their odd neighbours, and exits when one is
taken. An ephemeral port found free could later be taken by any socket bound
to port 0 (a resolver query, a SIPp client); one below the range can only be
taken by a test that asks for it."""
import random
import socket
import sys

args = sys.argv[1:]
media = "--media" in args
args = [a for a in args if a != "--media"]
addr = args[0] if args else "127.0.0.1"
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET


def bindable(port, kind):
    s = socket.socket(fam, kind)
    try:
        s.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


if media:
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = max(low - 8, 12000)
    for _ in range(500):
        p = random.randrange(10000, top, 2)
        if all(bindable(p + i, socket.SOCK_DGRAM) for i in range(4)):
            print(p)
            sys.exit(0)
    sys.exit("no free media ports")

for _ in range(200):
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.bind((addr, 0))
    port = t.getsockname()[1]
    u = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        u.bind((addr, port))
    except OSError:
        t.close()
        u.close()
        continue
    t.close()
    u.close()
    print(port)
    sys.exit(0)
sys.exit("no free port")
