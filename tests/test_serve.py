"""asock.serve / asock.start_server: the accept loop, its cap, back-off and shutdown."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import cancelled_exc, settle, tasks, wait_for

import asock

ROOT = Path(__file__).resolve().parent.parent


async def echo(conn: asock.socket) -> None:
    while data := await conn.recv(65536):
        await conn.sendall(data)


def listener() -> asock.socket:
    return asock.create_server(("127.0.0.1", 0))


@asynccontextmanager
async def client(server: asock.Server, index: int = 0) -> AsyncIterator[asock.socket]:
    sock = await asock.create_connection(server.sockets[index].getsockname()[:2], timeout=10)
    with sock:
        yield sock


async def recv_exactly(sock: asock.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def wait_until(predicate: Any, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await anyio.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


async def test_echo_several_clients_then_aclose() -> None:
    server = await asock.start_server(echo, listener())
    async with server:
        assert server.is_serving()

        async def session(i: int) -> bytes:
            async with client(server) as sock:
                await sock.sendall(b"hello %d" % i)
                return await recv_exactly(sock, len(b"hello %d" % i))

        async with tasks() as tg:
            sessions = [tg.spawn(session, i) for i in range(5)]
            replies = [await wait_for(task, 10) for task in sessions]
        assert replies == [b"hello %d" % i for i in range(5)]
    assert not server.is_serving()
    assert server.sockets[0].fileno() == -1
    assert server.active_connections == 0
    assert "closed" in repr(server)


async def test_start_server_on_an_address() -> None:
    async with await asock.start_server(echo, ("127.0.0.1", 0)) as server:
        assert server.sockets[0].family == asock.AF_INET
        async with client(server) as sock:
            await sock.sendall(b"ping")
            assert await recv_exactly(sock, 4) == b"ping"


async def test_start_server_on_a_unix_path(tmp_path: Path) -> None:
    path = str(tmp_path / "sock")
    async with await asock.start_server(echo, path) as server:
        assert server.sockets[0].family == asock.AF_UNIX
        with asock.socket(asock.AF_UNIX, asock.SOCK_STREAM) as sock:
            await sock.connect(path)
            await sock.sendall(b"unix")
            assert await recv_exactly(sock, 4) == b"unix"


async def test_several_listeners_are_all_served() -> None:
    async with await asock.start_server(echo, [listener(), listener()]) as server:
        assert len(server.sockets) == 2
        for index in (0, 1):
            async with client(server, index) as sock:
                await sock.sendall(b"via %d" % index)
                assert await recv_exactly(sock, 5) == b"via %d" % index


async def test_connection_is_closed_after_the_handler_returns() -> None:
    async def greet(conn: asock.socket) -> None:
        await conn.sendall(b"bye")

    async with await asock.start_server(greet, listener()) as server, client(server) as sock:
        assert await recv_exactly(sock, 10) == b"bye"  # then EOF: the server closed it
        assert await sock.recv(10) == b""


async def test_handler_exception_is_logged_and_serving_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def flaky(conn: asock.socket) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ZeroDivisionError("handler bug")
        await echo(conn)

    caplog.set_level(logging.ERROR, logger="asock.serve")
    async with await asock.start_server(flaky, listener()) as server:
        async with client(server) as sock:
            assert await sock.recv(10) == b""  # the failed handler's connection was closed
        async with client(server) as sock:
            await sock.sendall(b"still here")
            assert await recv_exactly(sock, 10) == b"still here"
    failures = [r for r in caplog.records if r.name == "asock.serve" and r.exc_info]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and failures[0].exc_info[0] is ZeroDivisionError


@pytest.mark.asyncio_only  # asyncio's Task.cancel(): delivered once
async def test_cancelling_serve_lets_running_handlers_finish() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished = []

    async def slow(conn: asock.socket) -> None:
        started.set()
        await release.wait()
        await conn.sendall(b"done")
        finished.append(True)

    sock = listener()
    address = sock.getsockname()
    serving = asyncio.create_task(asock.serve(slow, sock, shutdown_timeout=30))
    async with client_at(address) as conn:
        await started.wait()
        serving.cancel()
        await wait_until(lambda: sock.fileno() == -1, "the listener to close")
        assert not serving.done()  # still waiting for the handler
        # No longer accepting: a new connection is refused.
        with pytest.raises(ConnectionRefusedError):
            await asock.create_connection(address, timeout=10)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert finished == [True]
        assert await recv_exactly(conn, 4) == b"done"


@asynccontextmanager
async def client_at(address: Any) -> AsyncIterator[asock.socket]:
    sock = await asock.create_connection(address[:2], timeout=10)
    with sock:
        yield sock


async def serve_in_scope(
    scope: anyio.CancelScope, handler: Any, sock: asock.socket, shutdown_timeout: float | None
) -> None:
    """``serve`` inside ``scope``: cancelling the scope is how it is stopped."""
    with scope:
        await asock.serve(handler, sock, shutdown_timeout=shutdown_timeout)


async def test_cancelling_the_scope_around_serve_lets_running_handlers_finish() -> None:
    # A cancel scope delivers its cancellation again at every await, the
    # shutdown's included: that must not cut the handlers' grace short.
    started = anyio.Event()
    release = anyio.Event()
    finished = []

    async def slow(conn: asock.socket) -> None:
        started.set()
        await release.wait()
        await conn.sendall(b"done")
        finished.append(True)

    sock = listener()
    address = sock.getsockname()
    scope = anyio.CancelScope()
    async with tasks() as tg:
        serving = tg.spawn(serve_in_scope, scope, slow, sock, 30)
        async with client_at(address) as conn:
            await wait_for(started.wait(), 10)
            scope.cancel()
            await wait_until(lambda: sock.fileno() == -1, "the listener to close")
            await anyio.sleep(0.1)
            assert not serving.done()  # still waiting for the handler
            # No longer accepting: a new connection is refused.
            with pytest.raises(ConnectionRefusedError):
                await asock.create_connection(address, timeout=10)
            release.set()
            await wait_for(serving, 10)
            assert scope.cancelled_caught
            assert finished == [True]
            assert await recv_exactly(conn, 4) == b"done"


async def test_a_request_in_progress_is_answered_when_the_scope_around_serve_is_cancelled() -> None:
    received = anyio.Event()
    replied = []

    async def handler(conn: asock.socket) -> None:
        request = await conn.recv(100)
        received.set()
        await anyio.sleep(0.3)
        await conn.sendall(b"reply to " + request)
        replied.append(True)

    sock = listener()
    scope = anyio.CancelScope()
    async with tasks() as tg:
        serving = tg.spawn(serve_in_scope, scope, handler, sock, 2)
        async with client_at(sock.getsockname()) as conn:
            await conn.sendall(b"request")
            await wait_for(received.wait(), 10)
            scope.cancel()  # mid-request: the handler is in its sleep
            assert await wait_for(recv_exactly(conn, 16), 10) == b"reply to request"
            await wait_for(serving, 10)
    assert scope.cancelled_caught
    assert replied == [True]


async def test_handlers_past_the_shutdown_timeout_are_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    cancelled = []
    started = anyio.Event()

    async def stuck(conn: asock.socket) -> None:
        started.set()
        try:
            await conn.recv(10)  # the client never sends
        except cancelled_exc():
            cancelled.append(True)
            raise

    caplog.set_level(logging.WARNING, logger="asock.serve")
    server = await asock.start_server(stuck, listener(), shutdown_timeout=0.05)
    async with client(server) as sock:
        await started.wait()
        await server.aclose()
        assert cancelled == [True]
        assert server.active_connections == 0
        assert await sock.recv(10) == b""  # the server side was closed
    assert any("cancelling 1" in r.getMessage() for r in caplog.records)


async def test_close_returns_at_once_and_serve_forever_returns() -> None:
    server = await asock.start_server(echo, listener())
    async with tasks() as tg:
        waiter = tg.spawn(server.serve_forever)
        await settle(waiter)
        server.close()
        server.close()  # idempotent
        assert not server.is_serving()
        await wait_for(waiter, 10)  # returns normally: a requested shutdown is no error
    await server.wait_closed()


async def test_max_connections_caps_concurrent_handlers() -> None:
    running = 0
    peak = 0
    gates: list[anyio.Event] = []

    async def gated(conn: asock.socket) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        gate = anyio.Event()
        gates.append(gate)
        try:
            await gate.wait()
            await conn.sendall(b"ok")
        finally:
            running -= 1

    async with await asock.start_server(gated, listener(), max_connections=2) as server:
        clients = [await asock.create_connection(server.sockets[0].getsockname(), timeout=10) for _ in range(4)]
        try:
            await wait_until(lambda: len(gates) == 2, "two handlers to start")
            # The other two connections wait in the kernel's backlog.
            await anyio.sleep(0.1)
            assert len(gates) == 2 and server.active_connections == 2
            gates[0].set()
            await wait_until(lambda: len(gates) == 3, "a third handler to start after one finished")
            for gate in gates[1:]:
                gate.set()
            await wait_until(lambda: len(gates) == 4, "the fourth handler")
            gates[3].set()
            for sock in clients:
                assert await recv_exactly(sock, 2) == b"ok"
        finally:
            for sock in clients:
                sock.close()
    assert peak == 2


class FlakyListener(asock.socket):
    """A listener whose first accepts fail with a chosen errno; records each attempt."""

    def __init__(self, failures: int, err: int) -> None:
        super().__init__(asock.AF_INET, asock.SOCK_STREAM)
        self.failures = failures
        self.err = err
        self.attempts: list[float] = []

    async def accept(self) -> tuple[asock.socket, Any]:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.failures:
            raise OSError(self.err, os.strerror(self.err))
        return await super().accept()


def flaky_listener(failures: int, err: int) -> FlakyListener:
    sock = FlakyListener(failures, err)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("err", [errno.EMFILE, errno.ENFILE])
async def test_out_of_descriptors_backs_off_instead_of_spinning(err: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asock.serve")
    sock = flaky_listener(4, err)
    async with await asock.start_server(echo, sock) as server:
        async with client(server) as conn:
            await conn.sendall(b"served")
            assert await recv_exactly(conn, 6) == b"served"
        gaps = [b - a for a, b in zip(sock.attempts[:4], sock.attempts[1:5], strict=True)]
        # Four failures, then the accept that worked: each retry waited,
        # longer each time (0.01, 0.02, 0.04, 0.08 s at least).
        assert len(sock.attempts) >= 5
        assert all(gap >= 0.009 * 2**i for i, gap in enumerate(gaps)), gaps
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "retrying" in r.getMessage()]
    assert len(warnings) == 4


async def test_per_connection_accept_errors_are_skipped() -> None:
    sock = flaky_listener(3, errno.ECONNABORTED)
    async with await asock.start_server(echo, sock) as server, client(server) as conn:
        await conn.sendall(b"fine")
        assert await recv_exactly(conn, 4) == b"fine"
    assert len(sock.attempts) >= 4


async def test_an_unexpected_accept_error_stops_the_server(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asock.serve")
    sock = flaky_listener(1, errno.EINVAL)
    server = await asock.start_server(echo, sock)
    with pytest.raises(OSError) as info:
        await server.serve_forever()
    assert info.value.errno == errno.EINVAL
    assert sock.fileno() == -1
    assert any("shutting the server down" in r.getMessage() for r in caplog.records)


class BuggyListener(asock.socket):
    async def accept(self) -> tuple[asock.socket, Any]:
        raise RuntimeError("bug in accept")


async def test_a_bug_in_the_accept_loop_stops_the_server(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asock.serve")
    sock = BuggyListener(asock.AF_INET, asock.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = await asock.start_server(echo, sock)
    with pytest.raises(RuntimeError, match="bug in accept"):
        await server.serve_forever()
    assert sock.fileno() == -1
    assert any("accept loop failed" in r.getMessage() for r in caplog.records)


async def test_bad_arguments_close_the_listeners() -> None:
    sock = listener()
    with pytest.raises(ValueError, match="max_connections"):
        await asock.start_server(echo, sock, max_connections=0)
    assert sock.fileno() == -1
    sock = listener()
    with pytest.raises(ValueError, match="shutdown_timeout"):
        await asock.start_server(echo, sock, shutdown_timeout=-1)
    assert sock.fileno() == -1


@pytest.mark.asyncio_only  # asyncio's Task.cancel(): a second one is a second request
async def test_second_cancellation_cancels_handlers_at_once() -> None:
    started = asyncio.Event()
    cancelled = []

    async def stuck(conn: asock.socket) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    sock = listener()
    serving = asyncio.create_task(asock.serve(stuck, sock, shutdown_timeout=None))
    async with client_at(sock.getsockname()):
        await started.wait()
        serving.cancel()
        await wait_until(lambda: sock.fileno() == -1, "the listener to close")
        assert not cancelled  # no deadline: the handler may run on
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert cancelled == [True]


async def test_without_a_shutdown_timeout_a_cancelled_scope_waits_for_the_handlers() -> None:
    # No deadline: however often the scope's cancellation is delivered, the
    # handler runs on until it returns.
    started = anyio.Event()
    release = anyio.Event()
    cancelled = []

    async def stuck(conn: asock.socket) -> None:
        started.set()
        try:
            await release.wait()
        except cancelled_exc():
            cancelled.append(True)
            raise

    sock = listener()
    scope = anyio.CancelScope()
    async with tasks() as tg:
        serving = tg.spawn(serve_in_scope, scope, stuck, sock, None)
        async with client_at(sock.getsockname()):
            await wait_for(started.wait(), 10)
            scope.cancel()
            await wait_until(lambda: sock.fileno() == -1, "the listener to close")
            await anyio.sleep(0.2)
            assert not cancelled  # no deadline: the handler may run on
            assert not serving.done()
            release.set()
            await wait_for(serving, 10)
    assert scope.cancelled_caught
    assert not cancelled


EMFILE_SERVER = """
import asyncio, logging, os, resource, sys
import asock

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")

async def echo(conn):
    while data := await conn.recv(65536):
        await conn.sendall(data)

async def main(stdin_closed):
    listener = asock.create_server(("127.0.0.1", 0))
    # Room for exactly three connections.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = max(int(fd) for fd in os.listdir("/proc/self/fd")) + 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 3, hard))
    async with await asock.start_server(echo, listener):
        print("port", listener.getsockname()[1], flush=True)
        await stdin_closed()  # the test closes our stdin to stop us

async def asyncio_stdin_closed():
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_reader(0, done.set)
    try:
        await done.wait()
    finally:
        loop.remove_reader(0)

async def trio_stdin_closed():
    import trio
    await trio.lowlevel.wait_readable(0)

backend = sys.argv[1]
if backend == "trio":
    import trio
    trio.run(main, trio_stdin_closed)
else:
    if backend == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop()
    try:
        loop.run_until_complete(main(asyncio_stdin_closed))
    finally:
        loop.close()
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("server_backend", ["asyncio", "uvloop", "trio"])
def test_real_emfile_backs_off_and_recovers(server_backend: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", EMFILE_SERVER, server_backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("port "), line
        port = int(line.split()[1])
        # Six connections, room for three: the rest wait in the backlog while
        # the server backs off.
        for _ in range(6):
            conn = socket.create_connection(("127.0.0.1", port), timeout=15)
            clients.append(conn)
        for conn in clients[:3]:
            conn.sendall(b"early")
            assert conn.recv(16) == b"early"
        time.sleep(0.5)  # let the server hit EMFILE and back off a few times
        for conn in clients[:3]:
            conn.close()  # frees the server's descriptors
        for i, conn in enumerate(clients[3:]):
            conn.sendall(b"late %d" % i)
            assert conn.recv(16) == b"late %d" % i
    finally:
        for conn in clients:
            conn.close()
        try:
            _, err = proc.communicate(b"", timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, err.decode()
    retries = err.decode().count("Too many open files")
    # It hit EMFILE and retried, but with growing sleeps, not in a tight loop:
    # over about half a second that is a handful of attempts, not thousands.
    assert 1 <= retries <= 20, err.decode()
