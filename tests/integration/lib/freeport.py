"""freeport.py [ADDR]: prints a port that is free for both UDP and TCP on ADDR.
freeport.py --media [ADDR]: prints an even port P with P..P+3 free for UDP:
SIPp binds its audio and video RTP (and RTCP) sockets at -mp, -mp+2 and their
odd neighbours, and exits when one is taken.

Both come from below the kernel's ephemeral range (SIP ports from 10000 up,
media ports from 21000 up), chosen at random and checked: a port handed out
by bind(0) and given back could be taken again by any socket bound to port 0
before the server that was meant to get it starts (a resolver query, keel's
outgoing TCP, a SIPp client); one below the range can only be taken by a
test that asks for it."""
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


try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768

if low < 24000:
    # no room below the ephemeral range: let the kernel choose (the old way)
    for _ in range(200):
        t = socket.socket(fam, socket.SOCK_STREAM)
        t.bind((addr, 0))
        p = t.getsockname()[1]
        t.close()
        if (not media or p % 2 == 0) and bindable(p, socket.SOCK_DGRAM) \
                and (not media or all(bindable(p + i, socket.SOCK_DGRAM) for i in range(1, 4))):
            print(p)
            sys.exit(0)
    sys.exit("no free port")

if media:
    top = max(low - 8, 22000)
    for _ in range(500):
        p = random.randrange(21000, top, 2)
        if all(bindable(p + i, socket.SOCK_DGRAM) for i in range(4)):
            print(p)
            sys.exit(0)
    sys.exit("no free media ports")

for _ in range(500):
    p = random.randrange(10000, 21000)
    if bindable(p, socket.SOCK_STREAM) and bindable(p, socket.SOCK_DGRAM):
        print(p)
        sys.exit(0)
sys.exit("no free port")
