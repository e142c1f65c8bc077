"""Echo server: the stdlib docs' IPv4 example, unchanged but for its import.

    python examples/sync_echo_server.py [HOST] [PORT]

HOST defaults to '' (every interface) and PORT to 50007, as in the docs.
"""

# The docs' code style is kept on purpose.
# ruff: noqa: E701

# Echo server program
import sys

import asock.sync as socket

HOST = sys.argv[1] if len(sys.argv) > 1 else ''  # Symbolic name meaning all available interfaces
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 50007  # Arbitrary non-privileged port
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((HOST, PORT))
    s.listen(1)
    conn, addr = s.accept()
    with conn:
        print('Connected by', addr)
        while True:
            data = conn.recv(1024)
            if not data: break
            conn.sendall(data)
