"""Echo client: the stdlib docs' IPv4 example, unchanged but for its import.

    python examples/sync_echo_client.py [HOST] [PORT]

HOST defaults to 'localhost' (the docs use a remote host) and PORT to 50007.
"""

# Echo client program
import sys

import asock.sync as socket

HOST = sys.argv[1] if len(sys.argv) > 1 else 'localhost'  # The remote host
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 50007  # The same port as used by the server
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.connect((HOST, PORT))
    s.sendall(b'Hello, world')
    data = s.recv(1024)
print('Received', repr(data))
