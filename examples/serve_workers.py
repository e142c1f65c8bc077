"""Several worker processes serving one port, each with its own SO_REUSEPORT listener.

    python examples/serve_workers.py --workers 4 --port 8007 [--trio]

Every worker runs ``asock.serve`` on its own listening socket; the kernel
spreads incoming connections over the listeners (Linux hashes the addresses),
so no process accepts for the others and there is no shared accept lock.  Each
worker answers every line with its pid and the line, so a client can see which
process served it:

    $ printf 'hi\\n' | python -m asock connect 127.0.0.1 8007
    12345 hi

Ctrl-C (or SIGTERM) stops the workers gracefully: each stops accepting, lets
its connections finish for up to two seconds, then exits.  With --trio the
workers run under trio, ``asock.serve`` in a nursery that the signal cancels.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import signal
import socket
import sys
from multiprocessing.connection import Connection

import asock


async def answer(conn: asock.socket) -> None:
    stream = asock.Stream(conn)
    prefix = b"%d " % os.getpid()
    async for line in stream:
        await stream.write(prefix + line)


async def worker_main(host: str, port: int, ready: Connection) -> None:
    listener = asock.create_server((host, port), reuse_port=True)
    server = await asock.start_server(answer, listener, shutdown_timeout=2.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ready.send(os.getpid())
    ready.close()
    async with server:
        await stop.wait()


async def worker_main_trio(host: str, port: int, ready: Connection) -> None:
    import trio

    listener = asock.create_server((host, port), reuse_port=True)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            # Cancelling serve shuts it down gracefully, as on asyncio.
            nursery.start_soon(functools.partial(asock.serve, answer, listener, shutdown_timeout=2.0))
            ready.send(os.getpid())
            ready.close()
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def worker(host: str, port: int, ready: Connection, use_trio: bool) -> None:
    # The parent handles Ctrl-C for the whole group until the loop is up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if use_trio:
        import trio

        trio.run(worker_main_trio, host, port, ready)
    else:
        asyncio.run(worker_main(host, port, ready))


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) a SO_REUSEPORT socket to pick the port the workers share.

    A socket that does not listen receives no connections, but it keeps the
    port ours while the workers start.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8007, help="0 picks a free port")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--trio", action="store_true", help="run the workers under trio instead of asyncio")
    args = parser.parse_args()
    if not hasattr(socket, "SO_REUSEPORT"):
        print("SO_REUSEPORT is not available on this platform", file=sys.stderr)
        return 1

    status = 0
    context = multiprocessing.get_context("spawn")
    with reserve_port(args.host, args.port) as reservation:
        port = reservation.getsockname()[1]
        workers = []
        for _ in range(args.workers):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=worker, args=(args.host, port, sender, args.trio), daemon=True)
            process.start()
            sender.close()
            workers.append((process, receiver))
        try:
            signal.signal(signal.SIGTERM, _interrupt)
            pids = [receiver.recv() for _, receiver in workers]
            print(f"serving on {args.host}:{port} with {len(pids)} workers: {pids}", flush=True)
            signal.pause()
        except KeyboardInterrupt:
            pass
        except EOFError:
            print("a worker failed to start", file=sys.stderr)
            status = 1
        finally:
            for process, receiver in workers:
                receiver.close()
                if process.is_alive() and process.pid is not None:
                    os.kill(process.pid, signal.SIGTERM)
            for process, _ in workers:
                process.join(10)
                if process.is_alive():
                    process.kill()
                    process.join()
    return status


if __name__ == "__main__":
    sys.exit(main())
