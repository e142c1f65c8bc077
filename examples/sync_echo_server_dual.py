"""Echo server for IPv4 or IPv6: the stdlib docs' getaddrinfo example,
unchanged but for its import (and closing the listening socket at the end).

    python examples/sync_echo_server_dual.py [HOST] [PORT]

HOST defaults to None (every interface of the first family that works) and
PORT to 50007, as in the docs.
"""

# The docs' code style is kept on purpose.
# ruff: noqa: E701, F841

# Echo server program
import sys

import asock.sync as socket

HOST = sys.argv[1] if len(sys.argv) > 1 else None  # Symbolic name meaning all available interfaces
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 50007  # Arbitrary non-privileged port
s = None
for res in socket.getaddrinfo(HOST, PORT, socket.AF_UNSPEC,
                              socket.SOCK_STREAM, 0, socket.AI_PASSIVE):
    af, socktype, proto, canonname, sa = res
    try:
        s = socket.socket(af, socktype, proto)
    except OSError as msg:
        s = None
        continue
    try:
        s.bind(sa)
        s.listen(1)
    except OSError as msg:
        s.close()
        s = None
        continue
    break
if s is None:
    print('could not open socket')
    sys.exit(1)
conn, addr = s.accept()
with conn:
    print('Connected by', addr)
    while True:
        data = conn.recv(1024)
        if not data: break
        conn.send(data)
s.close()
