"""Echo client for IPv4 or IPv6: the stdlib docs' getaddrinfo example, async.

    python examples/echo_client_dual.py [HOST] [PORT] [--message TEXT] [--uvloop | --trio]

Tries each address HOST resolves to, in order, and talks to the first that
accepts.  ``await asock.create_connection((host, port))`` does the same in one
call, racing the addresses (RFC 8305 Happy Eyeballs) instead of waiting for
each to fail.
"""

import argparse
import asyncio
import sys

import asock


async def connect(host: str, port: int) -> asock.socket | None:
    # Name resolution runs off the event loop.
    for af, socktype, proto, _canonname, sa in await asock.getaddrinfo(host, port, asock.AF_UNSPEC, asock.SOCK_STREAM):
        try:
            s = asock.socket(af, socktype, proto)
        except OSError:
            continue
        try:
            s.settimeout(10)  # each awaited call gives up after 10 s
            await s.connect(sa)
        except OSError:
            s.close()
            continue
        return s
    return None


async def main(host: str, port: int, message: bytes) -> None:
    s = await connect(host, port)
    if s is None:
        print("could not open socket")
        sys.exit(1)
    with s:
        print("Connected to", s.getpeername())
        await s.sendall(message)
        s.shutdown(asock.SHUT_WR)
        # TCP is a byte stream: the echo may come back in several pieces.
        data = b""
        while chunk := await s.recv(1024):
            data += chunk
    print("Received", repr(data))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asock echo client (IPv4 or IPv6)")
    parser.add_argument("host", nargs="?", default="localhost")
    parser.add_argument("port", nargs="?", type=int, default=50007)
    parser.add_argument("--message", default="Hello, world")
    loops = parser.add_mutually_exclusive_group()
    loops.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's default loop")
    loops.add_argument("--trio", action="store_true", help="run under trio instead of asyncio")
    args = parser.parse_args()
    if args.trio:
        import trio

        trio.run(main, args.host, args.port, args.message.encode())
    elif args.uvloop:
        import uvloop

        uvloop.run(main(args.host, args.port, args.message.encode()))
    else:
        asyncio.run(main(args.host, args.port, args.message.encode()))
