"""UDP echo server with asock: ``await recvfrom`` and ``await sendto``.

    python examples/udp_echo_server.py [HOST] [PORT] [--once] [--uvloop | --trio]

Sends every datagram back to where it came from.  PORT 0 lets the kernel pick
a free port; the line "Listening on HOST port N" tells which.  --once stops
after echoing one datagram.
"""

import argparse
import asyncio

import asock


async def main(host: str, port: int, once: bool) -> None:
    with asock.socket(asock.AF_INET, asock.SOCK_DGRAM) as s:
        s.bind((host, port))
        host, port = s.getsockname()
        print(f"Listening on {host} port {port}")
        while True:
            # 65535 holds the largest UDP payload, so no datagram is truncated.
            data, addr = await s.recvfrom(65535)
            print("Datagram from", addr, repr(data))
            await s.sendto(data, addr)
            if once:
                return


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asock UDP echo server")
    parser.add_argument("host", nargs="?", default="127.0.0.1", help="'' means every interface")
    parser.add_argument("port", nargs="?", type=int, default=50007)
    parser.add_argument("--once", action="store_true", help="exit after echoing one datagram")
    loops = parser.add_mutually_exclusive_group()
    loops.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's default loop")
    loops.add_argument("--trio", action="store_true", help="run under trio instead of asyncio")
    args = parser.parse_args()
    try:
        if args.trio:
            import trio

            trio.run(main, args.host, args.port, args.once)
        elif args.uvloop:
            import uvloop

            uvloop.run(main(args.host, args.port, args.once))
        else:
            asyncio.run(main(args.host, args.port, args.once))
    except KeyboardInterrupt:
        pass
