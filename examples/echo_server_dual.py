"""Echo server for IPv4 or IPv6: the stdlib docs' getaddrinfo example, async.

    python examples/echo_server_dual.py [HOST] [PORT] [--once] [--uvloop | --trio]

Like the docs' version it listens on the first address HOST resolves to that
it can bind (HOST '' means every interface).  To accept IPv4 and IPv6 on one
socket, use ``asock.create_server(addr, family=AF_INET6, dualstack_ipv6=True)``.
"""

import argparse
import asyncio
import signal
import sys

import asock


async def echo(conn: asock.socket, addr: tuple[str, int]) -> None:
    print("Connected by", addr)
    async with conn:
        try:
            while data := await conn.recv(1024):
                await conn.sendall(data)
        except ConnectionError as exc:
            print("Lost", addr, exc)
            return
    print("Closed", addr)


async def listen(host: str | None, port: int) -> asock.socket | None:
    # Name resolution runs off the event loop.
    for af, socktype, proto, _canonname, sa in await asock.getaddrinfo(
        host, port, asock.AF_UNSPEC, asock.SOCK_STREAM, 0, asock.AI_PASSIVE
    ):
        try:
            s = asock.socket(af, socktype, proto)
        except OSError:
            continue
        try:
            s.setsockopt(asock.SOL_SOCKET, asock.SO_REUSEADDR, 1)
            s.bind(sa)
            s.listen()
        except OSError:
            s.close()
            continue
        return s
    return None


async def serve_with_asyncio(s: asock.socket) -> None:
    handlers: set[asyncio.Task[None]] = set()
    while True:
        conn, addr = await s.accept()
        task = asyncio.create_task(echo(conn, addr))
        # The loop keeps only weak references to tasks.
        handlers.add(task)
        task.add_done_callback(handlers.discard)


async def serve_with_trio(s: asock.socket) -> None:
    import trio

    async def accept_forever(nursery: trio.Nursery) -> None:
        while True:
            conn, addr = await s.accept()
            nursery.start_soon(echo, conn, addr)

    # Ctrl-C cancels the nursery (accepting and every connection), rather
    # than interrupting whichever task happens to run.
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_forever, nursery)
            async for _ in interrupts:
                nursery.cancel_scope.cancel()
                break


async def main(host: str | None, port: int, once: bool, use_trio: bool = False) -> None:
    s = await listen(host, port)
    if s is None:
        print("could not open socket")
        sys.exit(1)
    with s:
        host, port = s.getsockname()[:2]
        print(f"Listening on {host} port {port}")
        if once:
            conn, addr = await s.accept()
            await echo(conn, addr)
        elif use_trio:
            await serve_with_trio(s)
        else:
            await serve_with_asyncio(s)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asock echo server (IPv4 or IPv6)")
    parser.add_argument("host", nargs="?", default="localhost", help="'' means every interface")
    parser.add_argument("port", nargs="?", type=int, default=50007)
    parser.add_argument("--once", action="store_true", help="exit after serving one connection")
    loops = parser.add_mutually_exclusive_group()
    loops.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's default loop")
    loops.add_argument("--trio", action="store_true", help="run under trio instead of asyncio")
    args = parser.parse_args()
    try:
        if args.trio:
            import trio

            trio.run(main, args.host or None, args.port, args.once, True)
        elif args.uvloop:
            import uvloop

            uvloop.run(main(args.host or None, args.port, args.once))
        else:
            asyncio.run(main(args.host or None, args.port, args.once))
    except KeyboardInterrupt:
        pass
