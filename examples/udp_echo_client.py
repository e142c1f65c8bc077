"""UDP echo client with asock: one datagram out, one back.

    python examples/udp_echo_client.py [HOST] [PORT] [--message TEXT] [--uvloop | --trio]

UDP may drop a datagram, so the client retries a few times, waiting a bounded
time for each reply (``settimeout`` applies to every awaited call).
"""

import argparse
import asyncio
import sys

import asock


async def main(host: str, port: int, message: bytes) -> None:
    with asock.socket(asock.AF_INET, asock.SOCK_DGRAM) as s:
        s.settimeout(2)
        for _attempt in range(3):
            await s.sendto(message, (host, port))
            try:
                data, addr = await s.recvfrom(65535)
            except TimeoutError:
                continue
            print("Received", repr(data), "from", addr)
            return
    print("no reply")
    sys.exit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asock UDP echo client")
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
