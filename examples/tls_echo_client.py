"""TLS echo client: create_connection with ssl=, checking the server's certificate.

    python examples/tls_echo_client.py [HOST] [PORT] [--message TEXT] [--cafile PEM] [--uvloop | --trio]

--cafile is the CA that signed the server's certificate (the path the
example server prints); without it, the system's CAs are trusted.  The host
name given is the one checked against the certificate.
"""

import argparse
import asyncio
import ssl

import asock


async def main(host: str, port: int, message: bytes, cafile: str | None) -> None:
    context = ssl.create_default_context(cafile=cafile)
    # The timeout bounds connecting and the TLS handshake, and then each call.
    async with await asock.create_connection((host, port), timeout=10, ssl=context) as sock:
        assert isinstance(sock, asock.SSLSocket)
        print("Connected with", sock.version(), sock.cipher()[0])
        await sock.sendall(message)
        data = b""
        while len(data) < len(message):  # the echo may come back in several pieces
            chunk = await sock.recv(1024)
            if not chunk:
                break
            data += chunk
    # Leaving the block sent close_notify: the server's recv() returns b"".
    print("Received", repr(data))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asock TLS echo client")
    parser.add_argument("host", nargs="?", default="localhost")
    parser.add_argument("port", nargs="?", type=int, default=50443)
    parser.add_argument("--message", default="Hello, TLS world")
    parser.add_argument("--cafile", help="CA certificate to trust (PEM)")
    loops = parser.add_mutually_exclusive_group()
    loops.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's default loop")
    loops.add_argument("--trio", action="store_true", help="run under trio instead of asyncio")
    args = parser.parse_args()
    if args.trio:
        import trio

        trio.run(main, args.host, args.port, args.message.encode(), args.cafile)
    elif args.uvloop:
        import uvloop

        uvloop.run(main(args.host, args.port, args.message.encode(), args.cafile))
    else:
        asyncio.run(main(args.host, args.port, args.message.encode(), args.cafile))
