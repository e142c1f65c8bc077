"""Echo servers for the benchmark, one implementation per process.

    python examples/bench/servers.py IMPL [--host H] [--port P] [--cpu N] [--cert PEM] [--warm-malloc]

prints ``READY <port>`` on stdout once it listens (``--port 0`` picks a free
port), or ``SKIP <reason>`` if the implementation cannot run here, and echoes
until SIGTERM or SIGINT.  Every implementation sets TCP_NODELAY on its
connections so that none of them wins or loses by Nagle's algorithm.  The
``*-tls-*`` implementations serve TLS with the certificate and key in the
``--cert`` PEM file.  ``--warm-malloc`` puts glibc's allocator in the state a
long-running process reaches (see ``warm_malloc``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import ModuleType
from typing import Any, TypeVar, cast

BUFSIZE = 65536
T = TypeVar("T")
BACKLOG = 1024
#: The certificate chain and key (PEM) the TLS servers present (--cert).
CERT: str | None = None


def ready(port: int) -> None:
    print(f"READY {port}", flush=True)


def skip(reason: str) -> int:
    print(f"SKIP {reason}", flush=True)
    return 0


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def nodelay(sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- asyncio-based servers ---------------------------------------------------


async def task_per_connection(
    accept: Callable[[], Awaitable[T]], handle: Callable[[T], Coroutine[Any, Any, None]]
) -> None:
    """Accept forever, a task per connection; cancelled, cancel them all and wait."""
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            task = asyncio.create_task(handle(await accept()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve_asock(host: str, port: int) -> None:
    import asock

    async def handle(conn: asock.socket) -> None:
        async with conn:
            nodelay(conn)
            try:
                while data := await conn.recv(BUFSIZE):
                    await conn.sendall(data)
            except OSError:
                pass  # the client went away: nothing to report in a benchmark

    async def accept() -> asock.socket:
        conn, _ = await srv.accept()
        return conn

    with asock.create_server((host, port), family=family_of(host), backlog=BACKLOG) as srv:
        ready(srv.getsockname()[1])
        await task_per_connection(accept, handle)


async def serve_streams(host: str, port: int, context: ssl.SSLContext | None = None) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay(writer.get_extra_info("socket"))
        try:
            while data := await reader.read(BUFSIZE):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, backlog=BACKLOG, ssl=context)
    async with server:
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()


def tls_context() -> ssl.SSLContext:
    if CERT is None:
        raise SystemExit("servers.py: the TLS servers need --cert PEM")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERT)
    return context


async def serve_asock_tls(host: str, port: int) -> None:
    """``asock.serve(..., ssl=)``: the handshake in each connection's task, then the echo."""
    import asock

    async def handle(conn: asock.socket) -> None:
        nodelay(conn)
        try:
            while data := await conn.recv(BUFSIZE):
                await conn.sendall(data)
        except OSError:
            pass

    with asock.create_server((host, port), family=family_of(host), backlog=BACKLOG) as srv:
        ready(srv.getsockname()[1])
        await asock.serve(handle, srv, ssl=tls_context())


async def serve_streams_tls(host: str, port: int) -> None:
    await serve_streams(host, port, tls_context())


class EchoProtocol(asyncio.Protocol):
    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance.
        self.transport = transport
        nodelay(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve_protocol(host: str, port: int, factory: Callable[[], asyncio.Protocol] = EchoProtocol) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host, port, backlog=BACKLOG)
    async with server:
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()


class FloorProtocol(asyncio.Protocol):
    """The cost floor of every API that awaits each read (a reference row).

    The loop's transport does the reading and writing (in C on uvloop); the
    only thing added to the plain Protocol is what any ``await recv()`` style
    server pays per request: a future that wakes the connection's task.
    """

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's transport (uvloop's is not an asyncio.Transport subclass).
        self.transport = cast(asyncio.Transport, transport)
        nodelay(transport.get_extra_info("socket"))
        self.task = asyncio.get_running_loop().create_task(self.echo())

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.chunks.append(b"")
        self.wake()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def echo(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.chunks:
                self.waiter = loop.create_future()
                await self.waiter
            data = self.chunks.popleft()
            if not data:
                return
            self.transport.write(data)


async def serve_floor(host: str, port: int) -> None:
    await serve_protocol(host, port, FloorProtocol)


async def serve_sock(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()

    async def handle(conn: socket.socket) -> None:
        with conn:
            nodelay(conn)
            try:
                while data := await loop.sock_recv(conn, BUFSIZE):
                    await loop.sock_sendall(conn, data)
            except OSError:
                pass

    async def accept() -> socket.socket:
        conn, _ = await loop.sock_accept(srv)
        conn.setblocking(False)
        return conn

    with socket.create_server((host, port), family=family_of(host), backlog=BACKLOG) as srv:
        srv.setblocking(False)
        ready(srv.getsockname()[1])
        await task_per_connection(accept, handle)


def run_async(serve: Callable[[str, int], Coroutine[Any, Any, None]], loop_name: str, host: str, port: int) -> int:
    loop: asyncio.AbstractEventLoop
    if loop_name == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            return skip(f"uvloop is not installed ({exc})")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(serve(host, port))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    try:
        loop.run_until_complete(main)
    except asyncio.CancelledError:
        pass
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return 0


# -- thread-per-connection servers -------------------------------------------


def serve_threads(mod: ModuleType, host: str, port: int, context: ssl.SSLContext | None = None) -> int:
    """Plain blocking stdlib-style code; ``mod`` is ``socket`` or ``asock.sync``.

    With ``context``, each connection's thread wraps it in the stdlib's
    ``ssl.SSLSocket`` (the handshake runs in that thread).
    """

    def handle(conn: Any) -> None:
        with conn:
            nodelay(conn)
            try:
                if context is not None:
                    conn = context.wrap_socket(conn, server_side=True)
                while data := conn.recv(BUFSIZE):
                    conn.sendall(data)
            except OSError:
                pass

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with mod.create_server((host, port), family=family_of(host), backlog=BACKLOG) as srv:
        ready(srv.getsockname()[1])
        try:
            while True:
                conn, _ = srv.accept()
                # Daemon threads: the process ends with the listener, and
                # the OS closes whatever connections are still open.
                threading.Thread(target=handle, args=(conn,), daemon=True).start()
        except SystemExit:
            pass
    return 0


def run_trio(host: str, port: int) -> int:
    """trio's own socket layer, the same shape as the asock server: a task per
    connection awaiting ``recv`` and sending the echo back (trio.socket has no
    ``sendall``, so its ``send`` in a loop)."""
    try:
        import trio
        import trio.socket
    except ImportError as exc:
        return skip(f"trio is not installed ({exc})")

    async def handle(conn: Any) -> None:
        with conn:
            nodelay(conn)
            try:
                while data := await conn.recv(BUFSIZE):
                    view = memoryview(data)
                    while view:
                        view = view[await conn.send(view) :]
            except OSError:
                pass

    async def serve() -> None:
        listener = trio.socket.socket(family_of(host))
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await listener.bind((host, port))
        listener.listen(BACKLOG)
        ready(listener.getsockname()[1])
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await listener.accept()
                nursery.start_soon(handle, conn)

    return _trio_main(serve)


def run_asock_trio(host: str, port: int) -> int:
    """``asock.socket`` under ``trio.run``: the asock server's loop, a task per connection in a nursery."""
    try:
        import trio
    except ImportError as exc:
        return skip(f"trio is not installed ({exc})")
    import asock

    async def handle(conn: asock.socket) -> None:
        with conn:
            nodelay(conn)
            try:
                while data := await conn.recv(BUFSIZE):
                    await conn.sendall(data)
            except OSError:
                pass

    async def serve() -> None:
        with asock.create_server((host, port), family=family_of(host), backlog=BACKLOG) as srv:
            ready(srv.getsockname()[1])
            async with trio.open_nursery() as nursery:
                while True:
                    conn, _ = await srv.accept()
                    nursery.start_soon(handle, conn)

    return _trio_main(serve)


def _trio_main(serve: Callable[[], Coroutine[Any, Any, None]]) -> int:
    import trio

    async def main() -> None:
        # SIGTERM and SIGINT cancel the server's nursery: a KeyboardInterrupt
        # raised wherever the signal lands can abandon trio's own tasks and
        # leave tracebacks on the way out.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

    trio.run(main)
    return 0


def run_sync_facade(host: str, port: int) -> int:
    import asock.sync

    return serve_threads(asock.sync, host, port)


IMPLS: dict[str, Callable[[str, int], int]] = {
    "asock-asyncio": lambda h, p: run_async(serve_asock, "asyncio", h, p),
    "asock-uvloop": lambda h, p: run_async(serve_asock, "uvloop", h, p),
    "asock-sync-threads": run_sync_facade,
    "streams-asyncio": lambda h, p: run_async(serve_streams, "asyncio", h, p),
    "streams-uvloop": lambda h, p: run_async(serve_streams, "uvloop", h, p),
    "protocol-asyncio": lambda h, p: run_async(serve_protocol, "asyncio", h, p),
    "protocol-uvloop": lambda h, p: run_async(serve_protocol, "uvloop", h, p),
    "sock-asyncio": lambda h, p: run_async(serve_sock, "asyncio", h, p),
    "sock-uvloop": lambda h, p: run_async(serve_sock, "uvloop", h, p),
    "stdlib-threads": lambda h, p: serve_threads(socket, h, p),
    "asock-trio": run_asock_trio,
    "trio-socket": run_trio,
    "floor-asyncio": lambda h, p: run_async(serve_floor, "asyncio", h, p),
    "floor-uvloop": lambda h, p: run_async(serve_floor, "uvloop", h, p),
    # TLS (needs --cert): asock's SSLSocket, asyncio streams with ssl=, the stdlib's ssl.SSLSocket.
    "asock-tls-asyncio": lambda h, p: run_async(serve_asock_tls, "asyncio", h, p),
    "asock-tls-uvloop": lambda h, p: run_async(serve_asock_tls, "uvloop", h, p),
    "streams-tls-asyncio": lambda h, p: run_async(serve_streams_tls, "asyncio", h, p),
    "streams-tls-uvloop": lambda h, p: run_async(serve_streams_tls, "uvloop", h, p),
    "stdlib-tls-threads": lambda h, p: serve_threads(socket, h, p, tls_context()),
}


def warm_malloc() -> None:
    """Leave glibc's malloc as a process that once freed a large block has it.

    At start-up glibc serves every block of 128 KiB or more with its own mmap,
    and frees it with munmap.  Freeing such a block raises that threshold to
    the block's size, for the rest of the process: asyncio's 256 KiB reads
    then come from the heap.  One 1 MiB block, made and freed, is enough.
    """
    block = bytearray(1 << 20)
    del block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="servers.py", description="Echo server for the asock benchmark.")
    parser.add_argument("impl", choices=sorted(IMPLS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    parser.add_argument("--profile", metavar="FILE", help="run under cProfile and write pstats to FILE on exit")
    parser.add_argument("--cert", metavar="PEM", help="certificate chain and key of the *-tls-* servers")
    parser.add_argument(
        "--warm-malloc", action="store_true", help="raise glibc's mmap threshold first, as a long-lived process has"
    )
    args = parser.parse_args(argv)
    if args.warm_malloc:
        warm_malloc()
    global CERT
    CERT = args.cert
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        try:
            return int(profiler.runcall(IMPLS[args.impl], args.host, args.port))
        finally:
            profiler.dump_stats(args.profile)
    return IMPLS[args.impl](args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
