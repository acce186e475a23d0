"""Prints a port that is free for both UDP and TCP on the given address."""
import socket
import sys

addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
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
