"""TLS echo server: asock.serve with ssl=, a task (and a handshake) per connection.

    python examples/tls_echo_server.py [HOST] [PORT] [--cert PEM [--key PEM]] [--once] [--uvloop | --trio]

Without --cert it makes a throwaway certificate authority and a certificate
for localhost and 127.0.0.1 at start-up (with trustme: pip install trustme),
in a temporary directory removed on exit, and prints "CA certificate: PATH"
for the client's --cafile.  PORT 0 lets the kernel pick a free port; the line
"Listening on HOST port N" tells which.  --once stops after the first client.
With --trio it runs under trio (the same code: asock.serve's tasks live in a
nursery of its own there).
"""

import argparse
import asyncio
import ssl
import tempfile
from pathlib import Path

import asock


def server_context(cert: str | None, key: str | None, directory: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if cert is None:
        try:
            import trustme
        except ImportError:
            raise SystemExit("no --cert given, and trustme (to make one) is not installed") from None
        authority = trustme.CA()
        authority.cert_pem.write_to_path(str(directory / "ca.pem"))
        authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        print(f"CA certificate: {directory / 'ca.pem'}")
    else:
        context.load_cert_chain(cert, key)
    return context


async def main(host: str, port: int, once: bool, context: ssl.SSLContext) -> None:
    server: asock.Server | None = None

    async def echo(conn: asock.socket) -> None:
        assert isinstance(conn, asock.SSLSocket)  # handshaken already, by serve()
        address = conn.getpeername()
        print("Connected by", address, "with", conn.version())
        try:
            while data := await conn.recv(1024):  # b"" once the client sends close_notify
                await conn.sendall(data)
        except (ConnectionError, ssl.SSLError) as exc:
            print("Lost", address, exc)
        else:
            print("Closed", address)
        if once and server is not None:
            server.close()  # a graceful shutdown: serve_forever() returns once it is done

    with asock.create_server((host, port)) as listener:
        host, port = listener.getsockname()
        # A failed handshake (a client that does not trust us, or speaks
        # plain text) is logged at DEBUG and never reaches echo().
        server = await asock.start_server(echo, listener, ssl=context, ssl_handshake_timeout=10)
        print(f"Listening on {host} port {port}", flush=True)
        async with server:
            await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asock TLS echo server")
    parser.add_argument("host", nargs="?", default="127.0.0.1")
    parser.add_argument("port", nargs="?", type=int, default=50443)
    parser.add_argument("--cert", help="certificate chain (PEM); default: make one with trustme")
    parser.add_argument("--key", help="its private key (PEM), if not in the --cert file")
    parser.add_argument("--once", action="store_true", help="exit after serving one connection")
    loops = parser.add_mutually_exclusive_group()
    loops.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's default loop")
    loops.add_argument("--trio", action="store_true", help="run under trio instead of asyncio")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asock-tls-example-") as directory:
        tls = server_context(args.cert, args.key, Path(directory))
        try:
            if args.trio:
                import trio

                trio.run(main, args.host, args.port, args.once, tls)
            elif args.uvloop:
                import uvloop

                uvloop.run(main(args.host, args.port, args.once, tls))
            else:
                asyncio.run(main(args.host, args.port, args.once, tls))
        except KeyboardInterrupt:
            pass
