"""Echo client: the stdlib docs' IPv4 example, in async form with asock.

    python examples/echo_client.py [HOST] [PORT] [--message TEXT] [--uvloop | --trio]

Sends the message, half-closes the connection so the server sees the end, and
prints everything that comes back.
"""

import argparse
import asyncio

import asock


async def main(host: str, port: int, message: bytes) -> None:
    with asock.socket(asock.AF_INET, asock.SOCK_STREAM) as s:
        s.settimeout(10)  # each awaited call below gives up after 10 s
        await s.connect((host, port))
        await s.sendall(message)
        s.shutdown(asock.SHUT_WR)
        # TCP is a byte stream: the echo may come back in several pieces.
        data = b""
        while chunk := await s.recv(1024):
            data += chunk
    print("Received", repr(data))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asock echo client (IPv4)")
    parser.add_argument("host", nargs="?", default="127.0.0.1")
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
