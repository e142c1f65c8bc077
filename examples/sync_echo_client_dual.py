"""Echo client for IPv4 or IPv6: the stdlib docs' getaddrinfo example,
unchanged but for its import.

    python examples/sync_echo_client_dual.py [HOST] [PORT]

HOST defaults to 'localhost' (the docs use a remote host) and PORT to 50007.
Each address HOST resolves to is tried in turn until one connects.
"""

# The docs' code style is kept on purpose.
# ruff: noqa: F841

# Echo client program
import sys

import asock.sync as socket

HOST = sys.argv[1] if len(sys.argv) > 1 else 'localhost'  # The remote host
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 50007  # The same port as used by the server
s = None
for res in socket.getaddrinfo(HOST, PORT, socket.AF_UNSPEC, socket.SOCK_STREAM):
    af, socktype, proto, canonname, sa = res
    try:
        s = socket.socket(af, socktype, proto)
    except OSError as msg:
        s = None
        continue
    try:
        s.connect(sa)
    except OSError as msg:
        s.close()
        s = None
        continue
    break
if s is None:
    print('could not open socket')
    sys.exit(1)
with s:
    s.sendall(b'Hello, world')
    data = s.recv(1024)
print('Received', repr(data))
