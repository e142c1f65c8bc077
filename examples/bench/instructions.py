"""User-space instructions per echo round trip, counted by callgrind.

    python examples/bench/instructions.py                    # every case, a table
    python examples/bench/instructions.py --case asock-uvloop --case floor-uvloop
    python examples/bench/instructions.py --run asock-asyncio --rounds 100   # the workload alone, no valgrind

Wall-clock timings on a shared machine move by tens of percent between
rounds; instruction counts repeat to the instruction.  Each case runs twice
under ``valgrind --tool=callgrind`` with two numbers of round trips, and the
difference divided by the extra round trips is the marginal cost of one
round trip: start-up, imports and tear-down cancel out.  Every instruction of
the process counts, both ends of the connection and the event loop included,
in user space only (the kernel's share is not counted).

Cases:

- ``asock-asyncio``, ``asock-uvloop``: 50 ``asock.socketpair()`` connections
  in one process, 1 KiB messages; one end echoes
  (``while data := await s.recv(65536): await s.sendall(data)``), the other
  sends a message and receives it back, repeatedly.
- ``floor-asyncio``, ``floor-uvloop``: the yardstick, the same exchange with
  both ends written the cheapest way a task can await each read: the loop's
  own transport reads, ``data_received`` completes a future that wakes the
  connection's task, which writes with ``transport.write``.
- ``asock-trio``, ``trio-socket``: the same 50 connections under
  ``trio.run``, one end echoing; ``asock.socket`` against trio's own
  ``trio.socket`` (whose ``send`` is called in a loop: it has no ``sendall``).
- ``asock-tls-asyncio``, ``streams-tls-asyncio`` (and ``-uvloop``): 50 TLS
  connections over socketpairs, 1 KiB messages; the client end is an
  ``asock.SSLSocket`` in both, the echoing end an ``asock.SSLSocket`` or
  asyncio streams with ``ssl=``.  Both ends count, so the server's share is
  the total less the client's, which is half of ``asock-tls-*`` (its two ends
  do the same work).  The certificate is made once (trustme) and shared by
  both runs of a case, so the handshakes cancel out too.
- ``sync-blocking``, ``sync-timeout``, ``stdlib-blocking``, ``stdlib-timeout``:
  one socketpair, 100 B messages, the echo in a second thread; both ends use
  ``asock.sync`` or the stdlib ``socket`` module, in blocking mode or with
  ``settimeout(5)``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

# Run from a checkout without installing: the package lives two levels up.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

CONNS = 50
ASYNC_SIZE = 1024
SYNC_SIZE = 100
BUFSIZE = 65536

CASES = (
    "asock-asyncio",
    "floor-asyncio",
    "asock-uvloop",
    "floor-uvloop",
    "asock-trio",
    "trio-socket",
    "asock-tls-asyncio",
    "streams-tls-asyncio",
    "asock-tls-uvloop",
    "streams-tls-uvloop",
    "sync-blocking",
    "stdlib-blocking",
    "sync-timeout",
    "stdlib-timeout",
)
# Each asock case and the reference it is held against.
PAIRS = {
    "asock-asyncio": "floor-asyncio",
    "asock-uvloop": "floor-uvloop",
    "asock-trio": "trio-socket",
    "asock-tls-asyncio": "streams-tls-asyncio",
    "asock-tls-uvloop": "streams-tls-uvloop",
    "sync-blocking": "stdlib-blocking",
    "sync-timeout": "stdlib-timeout",
}


# -- the workloads ---------------------------------------------------------------


async def asock_echo(sock: Any) -> None:
    """One asock connection's echoing end (on any backend)."""
    with sock:
        while data := await sock.recv(BUFSIZE):
            await sock.sendall(data)


async def asock_client(sock: Any, rounds: int) -> None:
    """The other end: a message out, the same back, ``rounds`` times."""
    message = b"x" * ASYNC_SIZE
    with sock:
        for _ in range(rounds):
            await sock.sendall(message)
            got = 0
            while got < ASYNC_SIZE:
                got += len(await sock.recv(BUFSIZE))


async def asock_pingpong(rounds: int) -> None:
    import asock

    tasks = []
    for _ in range(CONNS):
        a, b = asock.socketpair()
        tasks.append(asyncio.create_task(asock_echo(a)))
        tasks.append(asyncio.create_task(asock_client(b, rounds)))
    await asyncio.gather(*tasks)


class _Woken(asyncio.Protocol):
    """The yardstick's connection end: received data wakes the task through a future."""

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.chunks.append(b"")
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def read(self) -> bytes:
        while not self.chunks:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.chunks.popleft()


async def floor_pingpong(rounds: int) -> None:
    import socket

    loop = asyncio.get_running_loop()
    message = b"x" * ASYNC_SIZE

    async def echo(end: _Woken) -> None:
        while data := await end.read():
            end.transport.write(data)
        end.transport.close()

    async def client(end: _Woken) -> None:
        for _ in range(rounds):
            end.transport.write(message)
            got = 0
            while got < ASYNC_SIZE:
                got += len(await end.read())
        end.transport.close()

    tasks = []
    for _ in range(CONNS):
        a, b = socket.socketpair()
        _, server = await loop.connect_accepted_socket(_Woken, a)
        _, peer = await loop.connect_accepted_socket(_Woken, b)
        tasks.append(asyncio.create_task(echo(server)))
        tasks.append(asyncio.create_task(client(peer)))
    await asyncio.gather(*tasks)


async def asock_trio_pingpong(rounds: int) -> None:
    import trio

    import asock

    async with trio.open_nursery() as nursery:
        for _ in range(CONNS):
            a, b = asock.socketpair()
            nursery.start_soon(asock_echo, a)
            nursery.start_soon(asock_client, b, rounds)


async def trio_socket_pingpong(rounds: int) -> None:
    import trio
    import trio.socket

    message = b"x" * ASYNC_SIZE

    async def send_all(sock: Any, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[await sock.send(view) :]

    async def echo(sock: Any) -> None:
        with sock:
            while data := await sock.recv(BUFSIZE):
                await send_all(sock, data)

    async def client(sock: Any) -> None:
        with sock:
            for _ in range(rounds):
                await send_all(sock, message)
                got = 0
                while got < ASYNC_SIZE:
                    got += len(await sock.recv(BUFSIZE))

    async with trio.open_nursery() as nursery:
        for _ in range(CONNS):
            a, b = trio.socket.socketpair()
            nursery.start_soon(echo, a)
            nursery.start_soon(client, b)


def _tls_contexts() -> tuple[Any, Any]:
    """The server's and the client's contexts, for the certificate in ``$ASOCK_BENCH_CERT``."""
    import ssl

    pem = os.environ["ASOCK_BENCH_CERT"]
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pem)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(pem + ".ca")
    return server, client


async def tls_pingpong(streams: bool, rounds: int) -> None:
    import asock

    server_context, client_context = _tls_contexts()
    loop = asyncio.get_running_loop()

    async def client(sock: Any) -> None:
        await asock_client(await asock.start_tls(sock, client_context, server_hostname="localhost"), rounds)

    async def asock_server(sock: Any) -> None:
        await asock_echo(await asock.start_tls(sock, server_context, server_side=True))

    async def streams_server(sock: socket.socket) -> None:
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock, ssl=server_context)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        while data := await reader.read(BUFSIZE):
            writer.write(data)
            await writer.drain()
        writer.close()

    tasks = []
    for _ in range(CONNS):
        a, b = socket.socketpair()
        if streams:
            tasks.append(asyncio.create_task(streams_server(a)))
        else:
            tasks.append(asyncio.create_task(asock_server(asock.socket(fileno=a.detach()))))
        tasks.append(asyncio.create_task(client(asock.socket(fileno=b.detach()))))
    await asyncio.gather(*tasks)


def make_certificate(directory: str) -> str:
    """A certificate (PEM, with its key) for "localhost", its CA beside it (``.ca``)."""
    import trustme

    ca = trustme.CA()
    path = os.path.join(directory, "cert.pem")
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(path)
    ca.cert_pem.write_to_path(path + ".ca")
    return path


def sync_pingpong(module: Any, timeout: float | None, rounds: int) -> None:
    a, b = module.socketpair()
    a.settimeout(timeout)
    b.settimeout(timeout)
    message = b"x" * SYNC_SIZE

    def echo() -> None:
        with b:
            while data := b.recv(BUFSIZE):
                b.sendall(data)

    thread = threading.Thread(target=echo)
    thread.start()
    with a:
        for _ in range(rounds):
            a.sendall(message)
            got = 0
            while got < SYNC_SIZE:
                got += len(a.recv(BUFSIZE))
        a.shutdown(module.SHUT_WR)
        thread.join()


def run(case: str, rounds: int) -> None:
    """Run one case's workload: ``rounds`` round trips (per connection)."""
    impl, _, mode = case.partition("-")
    if "trio" in (impl, mode):
        import trio

        trio.run(asock_trio_pingpong if impl == "asock" else trio_socket_pingpong, rounds)
        return
    if impl in ("asock", "floor", "streams"):
        work: Callable[[int], Any]
        if mode.startswith("tls-"):
            mode = mode[4:]
            work = functools.partial(tls_pingpong, impl == "streams")
        else:
            work = asock_pingpong if impl == "asock" else floor_pingpong
        if mode == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.SelectorEventLoop()
        try:
            loop.run_until_complete(work(rounds))
        finally:
            loop.close()
        return
    if impl == "sync":
        import asock.sync as module
    else:
        import socket as module
    # As many round trips as the 50 connections of the async cases make.
    sync_pingpong(module, None if mode == "blocking" else 5.0, rounds * CONNS)


# -- counting ---------------------------------------------------------------------


def count(case: str, rounds: int) -> int:
    """Instructions of one whole run of ``case`` under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                os.path.abspath(__file__),
                "--run",
                case,
                "--rounds",
                str(rounds),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=False,
        )
        if proc.returncode:
            raise SystemExit(f"{case}: the run failed:\n{proc.stderr[-2000:]}")
        found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
        if found is None:
            raise SystemExit(f"{case}: callgrind printed no total:\n{proc.stderr[-2000:]}")
        return int(found.group(1))


def marginal(case: str, short: int, long: int) -> float:
    """Instructions per round trip: the difference of two run lengths over the extra round trips."""
    return (count(case, long) - count(case, short)) / ((long - short) * CONNS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=CASES, help="cases to count (default: all)")
    parser.add_argument("--run", choices=CASES, help="run one workload without valgrind")
    parser.add_argument(
        "--rounds", type=int, default=100, help="round trips per connection (x50 in the sync cases), with --run"
    )
    parser.add_argument("--short", type=int, default=100, help="round trips per connection of the shorter run")
    parser.add_argument("--long", type=int, default=300, help="round trips per connection of the longer run")
    args = parser.parse_args()
    if args.run:
        with tempfile.TemporaryDirectory() as tmp:
            if "tls" in args.run and "ASOCK_BENCH_CERT" not in os.environ:
                os.environ["ASOCK_BENCH_CERT"] = make_certificate(tmp)
            run(args.run, args.rounds)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 1
    cases = args.case or list(CASES)
    results: dict[str, float] = {}
    print(f"instructions per round trip (callgrind, {args.long} - {args.short} round trips per connection)")
    certificates = tempfile.TemporaryDirectory(prefix="asock-instructions-")
    for case in cases:
        needs = [name for name in ("uvloop", "trio") if name in case]
        if "tls" in case:
            needs.append("trustme")
        missing = [name for name in needs if importlib.util.find_spec(name) is None]
        if missing:
            print(f"{case:<19} SKIP ({missing[0]} is not installed)")
            continue
        if "tls" in case and "ASOCK_BENCH_CERT" not in os.environ:
            # One certificate for every run: the handshakes cost the same in both lengths.
            os.environ["ASOCK_BENCH_CERT"] = make_certificate(certificates.name)
        results[case] = marginal(case, args.short, args.long)
        reference = PAIRS.get(case)
        ratio = ""
        if reference in results:
            ratio = f"  {results[case] / results[reference]:.2f} x {reference}"
        for other, ref in PAIRS.items():
            if ref == case and other in results:
                ratio = f"  ({other}: {results[other] / results[case]:.2f} x)"
        print(f"{case:<19} {results[case]:>10,.0f}{ratio}", flush=True)
    certificates.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
