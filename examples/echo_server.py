"""Echo server: the stdlib docs' IPv4 example, in async form with asock.

    python examples/echo_server.py [HOST] [PORT] [--once] [--uvloop | --trio]

Each connection gets its own task (an asyncio task, or with --trio a task in a
trio nursery), so a slow client does not hold up the others.  PORT 0 lets the
kernel pick a free port; the line "Listening on HOST port N" tells which.
--once stops after the first connection, as the docs' version does.
"""

import argparse
import asyncio
import signal

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


async def main(host: str, port: int, once: bool, use_trio: bool = False) -> None:
    with asock.socket(asock.AF_INET, asock.SOCK_STREAM) as s:
        # Lets the server restart at once while old connections sit in TIME_WAIT.
        s.setsockopt(asock.SOL_SOCKET, asock.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen()
        host, port = s.getsockname()
        print(f"Listening on {host} port {port}")
        if once:
            conn, addr = await s.accept()
            await echo(conn, addr)
        elif use_trio:
            await serve_with_trio(s)
        else:
            await serve_with_asyncio(s)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asock echo server (IPv4)")
    parser.add_argument("host", nargs="?", default="127.0.0.1", help="'' means every interface")
    parser.add_argument("port", nargs="?", type=int, default=50007)
    parser.add_argument("--once", action="store_true", help="exit after serving one connection")
    loops = parser.add_mutually_exclusive_group()
    loops.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's default loop")
    loops.add_argument("--trio", action="store_true", help="run under trio instead of asyncio")
    args = parser.parse_args()
    try:
        if args.trio:
            import trio

            trio.run(main, args.host, args.port, args.once, True)
        elif args.uvloop:
            import uvloop

            uvloop.run(main(args.host, args.port, args.once))
        else:
            asyncio.run(main(args.host, args.port, args.once))
    except KeyboardInterrupt:
        pass
