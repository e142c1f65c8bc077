"""Load: thousands of concurrent TCP connections in one process, on every loop.

Client and server are both asock sockets on the same loop, so every
connection costs this process two descriptors.  The test raises the soft
RLIMIT_NOFILE up to the hard limit; it cannot raise the hard limit itself
(that needs privileges most machines, containers included, withhold).
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from helpers import backend

import asock

TARGET = 10_000
# Descriptors besides the connections: stdio, pytest's capture files, the
# loop's selector and self-pipe, the listening socket, /proc/self/fd itself.
RESERVE = 64
# Connects in flight at once: far below the listen backlog (somaxconn is
# often 4096) and tcp_max_syn_backlog, so no SYN is dropped and retried a
# second later.
CONNECTS_IN_FLIGHT = 256
BACKLOG = 4096
#: Bounds on the whole load, and on the connection tasks' ending once the clients left.
LOAD_SECONDS = 50
DRAIN_SECONDS = 30


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def socket_fds() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
        except OSError:
            pass  # closed meanwhile (the listing's own descriptor)
    return count


@pytest.fixture
def nofile() -> Iterator[int]:
    """Raise the soft descriptor limit to the hard one; yield how many connections fit."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to count descriptors")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield (limit - fd_count() - RESERVE) // 2
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class EchoServer:
    """An asock echo server, a task per connection, counting the connections it holds."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.live = self.peak = 0

    async def handle(self, conn: asock.socket) -> None:
        self.live += 1
        self.peak = max(self.peak, self.live)
        try:
            async with conn:
                while data := await conn.recv(4096):
                    await conn.sendall(data)
        except BaseException as exc:  # collected, then asserted empty
            self.errors.append(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self.live -= 1

    async def accept_forever(self, server: asock.socket, handlers: anyio.abc.TaskGroup) -> None:
        while True:
            conn, _ = await server.accept()
            handlers.start_soon(self.handle, conn)

    @contextlib.asynccontextmanager
    async def serving(self, server: asock.socket) -> AsyncIterator[None]:
        """Accept and echo while the block runs; after it, wait for every connection's task to end."""
        async with anyio.create_task_group() as handlers:
            async with anyio.create_task_group() as accepting:
                accepting.start_soon(self.accept_forever, server, handlers)
                try:
                    yield
                finally:
                    accepting.cancel_scope.cancel()
            handlers.cancel_scope.deadline = anyio.current_time() + DRAIN_SECONDS
        if handlers.cancel_scope.cancelled_caught:
            pytest.fail(f"{self.live} connection task(s) still running {DRAIN_SECONDS} s after the clients left")


async def gather_errors(calls: Iterable[Callable[[], Awaitable[object]]]) -> list[Exception]:
    """Run the calls concurrently, each in a task of its own; return the errors they raised."""
    errors: list[Exception] = []

    async def run(call: Callable[[], Awaitable[object]]) -> None:
        try:
            await call()
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for call in calls:
            group.start_soon(run, call)
    return errors


async def hold_and_echo(count: int) -> None:
    """Open ``count`` connections, echo on each twice while all are open, close them all."""
    start_fds = fd_count()
    echo = EchoServer()
    errors = echo.errors

    with asock.create_server(("127.0.0.1", 0), backlog=BACKLOG) as server:
        address = server.getsockname()
        gate = anyio.Semaphore(CONNECTS_IN_FLIGHT)
        clients: list[asock.socket] = []

        async def exchange(sock: asock.socket, message: bytes) -> None:
            await sock.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = await sock.recv(len(message) - len(got))
                if not chunk:
                    raise ConnectionError(f"EOF after {len(got)} of {len(message)} bytes")
                got += chunk
            if got != message:
                raise AssertionError(f"echo mismatch: sent {message!r}, got {got!r}")

        async def open_one(i: int) -> None:
            async with gate:
                sock = await asock.create_connection(address)
                clients.append(sock)
                await exchange(sock, b"hello %d\n" % i)

        async def load() -> None:
            errors.extend(await gather_errors(functools.partial(open_one, i) for i in range(count)))
            assert not errors, f"{len(errors)} errors while connecting, first: {errors[0]!r}"
            # Every connection is open at once, on both sides.
            assert len(clients) == count
            while echo.live < count:
                await anyio.sleep(0.01)
            assert echo.live == count

            # A second exchange on every connection while all are held.
            errors.extend(
                await gather_errors(
                    functools.partial(exchange, sock, b"%d" % i * 100) for i, sock in enumerate(clients)
                )
            )
            assert not errors, f"{len(errors)} errors on open connections, first: {errors[0]!r}"

        async with echo.serving(server):
            try:
                with anyio.fail_after(LOAD_SECONDS):
                    await load()
            finally:
                for sock in clients:
                    sock.close()

    assert not errors, f"{len(errors)} handler errors, first: {errors[0]!r}"
    assert echo.peak == count
    assert fd_count() == start_fds


@pytest.mark.timeout(120)
async def test_ten_thousand_connections(nofile: int) -> None:
    if nofile < TARGET:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        pytest.skip(
            f"{TARGET} connections need about {2 * TARGET + RESERVE} descriptors in one process; "
            f"the hard RLIMIT_NOFILE is {hard} and cannot be raised here (test_as_many_as_fit runs {nofile})"
        )
    await hold_and_echo(TARGET)


@pytest.mark.timeout(120)
async def test_as_many_as_fit(nofile: int) -> None:
    """As many connections as the hard limit allows (at most TARGET), so a low limit still gets load."""
    count = min(TARGET, nofile)
    if count < 1000:
        pytest.skip(f"the hard RLIMIT_NOFILE allows only {count} connections in one process")
    if count == TARGET:
        pytest.skip("test_ten_thousand_connections runs the full count")
    await hold_and_echo(count)


# The client side of test_ten_thousand_from_a_client_process, on the backend
# the test runs on (asyncio, uvloop or trio): opens N connections (all held at
# once), waits for the go line, echoes a distinct message on every one, closes
# them all and reports the number of errors.
_CLIENT = r"""
import resource, sys
import anyio, anyio.to_thread
import asock

port, count, backend = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

async def main():
    gate = anyio.Semaphore(256)
    socks = []
    failed = 0

    async def open_one():
        nonlocal failed
        async with gate:
            sock = asock.socket()
            try:
                await sock.connect(("127.0.0.1", port))
            except Exception:
                sock.close()
                failed += 1
                return
            socks.append(sock)

    async def echo(sock, i):
        nonlocal failed
        message = b"connection %d\n" % i
        try:
            await sock.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = await sock.recv(64)
                if not chunk:
                    raise ConnectionError("EOF")
                got += chunk
            if got != message:
                raise AssertionError(got)
        except Exception:
            failed += 1

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(open_one)
    print("OPEN", len(socks), failed, flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    async with anyio.create_task_group() as group:
        for i, sock in enumerate(socks):
            group.start_soon(echo, sock, i)
    for sock in socks:
        sock.close()
    print("DONE", failed, flush=True)

if backend == "trio":
    anyio.run(main, backend="trio")
else:
    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": backend == "uvloop"})
"""


@pytest.mark.timeout(120)
async def test_ten_thousand_from_a_client_process(nofile: int) -> None:
    """10,000 connections held at once by this process's asock server.

    The client runs in a second process, so each process needs about 10,000
    descriptors: within reach where one process cannot hold both ends.
    """
    if nofile * 2 < TARGET + RESERVE:
        pytest.skip(f"the hard RLIMIT_NOFILE cannot hold {TARGET} server connections")
    start_sockets = socket_fds()
    echo = EchoServer()
    errors = echo.errors

    with asock.create_server(("127.0.0.1", 0), backlog=BACKLOG) as server:
        async with (
            echo.serving(server),
            await anyio.open_process(
                [sys.executable, "-c", _CLIENT, str(server.getsockname()[1]), str(TARGET), backend()],
                stderr=None,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            ) as client,
        ):
            try:
                assert client.stdin is not None and client.stdout is not None
                lines = BufferedByteReceiveStream(client.stdout)
                with anyio.fail_after(60):
                    opened = (await lines.receive_until(b"\n", 1024)).split()
                assert opened == [b"OPEN", str(TARGET).encode(), b"0"], opened
                with anyio.fail_after(30):
                    while echo.live < TARGET:
                        await anyio.sleep(0.01)
                assert echo.live == TARGET  # every connection held at once
                await client.stdin.send(b"go\n")
                with anyio.fail_after(60):
                    done = (await lines.receive_until(b"\n", 1024)).split()
                assert done == [b"DONE", b"0"], done
                with anyio.fail_after(30):
                    assert await client.wait() == 0
            finally:
                if client.returncode is None:
                    client.kill()
                    with anyio.CancelScope(shield=True):
                        await client.wait()
    assert not errors, f"{len(errors)} handler errors, first: {errors[0]!r}"
    assert echo.peak == TARGET
    # Sockets only: uvloop keeps a pipe for child processes once one has run.
    assert socket_fds() == start_sockets
