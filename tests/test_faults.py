"""Faults between client and server: every byte intact, or a clear stdlib error.

A ``FaultProxy`` (tests/faultproxy.py) sits between an echo server and the
client under test and re-segments, resets, stalls or half-closes the stream.
Whatever it does, the client must end in one of the outcomes the stdlib
promises: the whole echo intact, ``ConnectionResetError``/``BrokenPipeError``,
``TimeoutError``, or EOF as ``b''`` exactly where the proxy sent its FIN —
never a hang, never corrupted or missing bytes reported as success.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import pytest
from faultproxy import EchoServer, Fault, FaultProxy
from helpers import cancelled_exc, settle, tasks, wait_for

import asock

SEGMENT_SEEDS = range(3)
SEGMENT_SIZE = 3000  # every byte crosses the proxy alone, both ways: keep it small
BULK_SIZE = 256 * 1024
AFTER = 40_000  # bytes the proxy forwards before it resets, stalls or half-closes
CLIENT_TIMEOUT = 0.5
RESET_ERRORS = (ConnectionResetError, BrokenPipeError)


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


# -- the async side: an asock echo server and an asock client on one loop ------

#: How long the echo server's handlers may take to finish once the proxy is closed.
HANDLERS_GRACE = 10


@contextlib.asynccontextmanager
async def asock_echo_server() -> AsyncIterator[tuple[tuple[str, int], list[BaseException | None]]]:
    """An asock echo server; yields its address and each handler's outcome (None: clean EOF)."""
    outcomes: list[BaseException | None] = []

    async def handle(conn: asock.socket) -> None:
        outcome: BaseException | None = None
        try:
            async with conn:
                while data := await conn.recv(65536):
                    await conn.sendall(data)
        except OSError as exc:
            outcome = exc
        outcomes.append(outcome)

    async def accept_forever(server: asock.socket, handlers: anyio.abc.TaskGroup) -> None:
        while True:
            conn, _ = await server.accept()
            handlers.start_soon(handle, conn)

    with asock.create_server(("127.0.0.1", 0)) as server:
        async with anyio.create_task_group() as handlers:
            async with anyio.create_task_group() as accepting:
                accepting.start_soon(accept_forever, server, handlers)
                try:
                    yield server.getsockname(), outcomes
                finally:
                    accepting.cancel_scope.cancel()
            # The proxy is closed by now, so every handler sees EOF or a reset.
            handlers.cancel_scope.deadline = anyio.current_time() + HANDLERS_GRACE
        if handlers.cancel_scope.cancelled_caught:
            pytest.fail(f"echo handlers still running {HANDLERS_GRACE} s after the proxy closed")


async def async_exchange(
    sock: asock.socket, data: bytes, recv: Callable[[], Awaitable[bytes]] | None = None
) -> tuple[bytes, BaseException | None, BaseException | None]:
    """Send ``data`` while reading the echo; return (received, receive error, send error).

    The sender runs in a task of its own, cancelled when the reading ends
    early; the send error is then the backend's cancellation exception.
    """
    send_errors: list[BaseException] = []
    sending = anyio.CancelScope()

    async def send() -> None:
        with sending:
            try:
                await sock.sendall(data)
            except Exception as exc:
                send_errors.append(exc)
            except cancelled_exc() as exc:
                send_errors.append(exc)
                raise

    received = bytearray()
    error: BaseException | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(send)
        try:
            while len(received) < len(data):
                chunk = await (recv() if recv else sock.recv(65536))
                if not chunk:
                    break
                received += chunk
        # wait_for's asyncio.TimeoutError is a class of its own before Python 3.11.
        except (OSError, asyncio.TimeoutError) as exc:
            error = exc
        if error is not None or len(received) < len(data):
            sending.cancel()
    return bytes(received), error, (send_errors[0] if send_errors else None)


def check_server(outcomes: list[BaseException | None], allowed: tuple[type[BaseException], ...]) -> None:
    assert outcomes, "the server saw no connection"
    for outcome in outcomes:
        assert outcome is None or isinstance(outcome, allowed), f"server handler ended with {outcome!r}"


@pytest.mark.parametrize("seed", SEGMENT_SEEDS)
async def test_segmented_stream_arrives_intact(seed: int) -> None:
    data = payload(SEGMENT_SIZE, seed)
    async with asock_echo_server() as (upstream, outcomes):
        with FaultProxy(upstream, Fault("segment", seed=seed)) as proxy:
            async with await asock.create_connection(proxy.address) as sock:
                sock.settimeout(20)
                received, error, send_error = await async_exchange(sock, data)
                assert error is None and send_error is None
                assert received == data
                # Orderly close travels through the proxy: the echo ends in EOF.
                sock.shutdown(asock.SHUT_WR)
                assert await sock.recv(1) == b""
    check_server(outcomes, ())


async def test_segmented_stream_recv_into_and_small_reads() -> None:
    """1-byte segments read with recv_into into a small buffer: no byte lost or repeated."""
    data = payload(SEGMENT_SIZE, 7)
    async with asock_echo_server() as (upstream, _):
        with FaultProxy(upstream, Fault("segment", seed=7)) as proxy:
            async with await asock.create_connection(proxy.address) as sock:
                sock.settimeout(20)
                buf = bytearray(7)

                async def recv() -> bytes:
                    n = await sock.recv_into(buf)
                    return bytes(buf[:n])

                received, error, send_error = await async_exchange(sock, data, recv)
    assert (error, send_error) == (None, None)
    assert received == data


async def test_reset_mid_stream() -> None:
    data = payload(BULK_SIZE, 1)
    async with asock_echo_server() as (upstream, outcomes):
        with FaultProxy(upstream, Fault("reset", after=AFTER)) as proxy:
            async with await asock.create_connection(proxy.address) as sock:
                sock.settimeout(20)
                received, error, send_error = await async_exchange(sock, data)
                assert isinstance(error, RESET_ERRORS), f"recv ended with {error!r}"
                assert send_error is None or isinstance(send_error, RESET_ERRORS), send_error
                assert len(received) <= AFTER
                assert data.startswith(received)
                # The socket stays in a defined state: the error is reported
                # once, then EOF, never a hang.
                assert await sock.recv(1) == b""
    # The server's side was reset too: its handler ends with the error or EOF.
    check_server(outcomes, RESET_ERRORS)


@pytest.mark.parametrize(
    "style",
    [
        "settimeout",
        "fail_after",
        # asyncio's own deadline: a test of asock with asyncio itself.
        pytest.param("wait_for", marks=pytest.mark.asyncio_only),
    ],
)
async def test_stall_longer_than_timeout(style: str) -> None:
    data = payload(BULK_SIZE, 2)
    async with asock_echo_server() as (upstream, outcomes):
        with FaultProxy(upstream, Fault("stall", after=AFTER)) as proxy:
            async with await asock.create_connection(proxy.address) as sock:
                recv: Callable[[], Awaitable[bytes]] | None = None
                if style == "settimeout":
                    sock.settimeout(CLIENT_TIMEOUT)
                elif style == "fail_after":

                    async def recv() -> bytes:
                        with anyio.fail_after(CLIENT_TIMEOUT):
                            return await sock.recv(65536)

                else:

                    def recv() -> Awaitable[bytes]:
                        return asyncio.wait_for(sock.recv(65536), CLIENT_TIMEOUT)

                started = time.monotonic()
                received, error, send_error = await async_exchange(sock, data, recv)
                # wait_for's asyncio.TimeoutError is a class of its own before Python 3.11.
                assert isinstance(error, (TimeoutError, asyncio.TimeoutError)), f"recv ended with {error!r}"
                if style == "settimeout":
                    assert str(error) == "timed out"
                assert time.monotonic() - started >= CLIENT_TIMEOUT
                # Everything sent before the stall arrived, nothing more.
                assert received == data[:AFTER]
                assert proxy.struck.is_set()
                if isinstance(send_error, TimeoutError):
                    assert 0 <= send_error.bytes_sent <= len(data)  # type: ignore[attr-defined]
                else:
                    assert send_error is None or isinstance(send_error, cancelled_exc()), send_error
                # The timed-out socket is still usable and still empty.
                sock.settimeout(0.0)
                with pytest.raises(BlockingIOError):
                    await sock.recv(1)
    check_server(outcomes, RESET_ERRORS)


async def test_half_close() -> None:
    data = payload(BULK_SIZE, 3)
    extra = b"after the server's FIN"
    async with asock_echo_server() as (upstream, outcomes):
        with FaultProxy(upstream, Fault("half_close", after=AFTER)) as proxy:
            async with await asock.create_connection(proxy.address) as sock:
                sock.settimeout(20)
                received, error, send_error = await async_exchange(sock, data)
                assert (error, send_error) == (None, None)
                # EOF exactly where the FIN was sent, after intact data.
                assert received == data[:AFTER]
                assert await sock.recv(100) == b""
                # Our half is still open: more bytes still reach the server.
                await sock.sendall(extra)
                for _ in range(500):
                    if proxy.forwarded_up == len(data) + len(extra):
                        break
                    await anyio.sleep(0.01)
                assert proxy.forwarded_up == len(data) + len(extra)
                assert await sock.recv(100) == b""
    check_server(outcomes, RESET_ERRORS)


# -- the sync facade: a thread echo server and an asock.sync client ---------------


def sync_exchange(sock: Any, data: bytes) -> tuple[bytes, BaseException | None, BaseException | None]:
    """The blocking twin of ``async_exchange``: a sender thread, reads on this one."""
    send_error: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(data)
        except OSError as exc:
            send_error.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = bytearray()
    error: BaseException | None = None
    try:
        while len(received) < len(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except OSError as exc:
        error = exc
    sender.join(30)
    assert not sender.is_alive(), "sendall hung"
    return bytes(received), error, (send_error[0] if send_error else None)


@contextlib.contextmanager
def proxied_sync(sync: Any, fault: Fault) -> Iterator[tuple[FaultProxy, Any]]:
    """A thread echo server behind a proxy, and a facade client connected through it."""
    with (
        EchoServer() as upstream,
        FaultProxy(upstream.address, fault) as proxy,
        sync.create_connection(proxy.address, timeout=20) as sock,
    ):
        yield proxy, sock


@pytest.fixture
def sync() -> Any:
    return pytest.importorskip("asock.sync")


@pytest.mark.parametrize("seed", SEGMENT_SEEDS)
def test_sync_segmented(sync: Any, seed: int) -> None:
    data = payload(SEGMENT_SIZE, seed)
    with proxied_sync(sync, Fault("segment", seed=seed)) as (_, sock):
        received, error, send_error = sync_exchange(sock, data)
        assert (error, send_error) == (None, None)
        assert received == data
        sock.shutdown(sync.SHUT_WR)
        assert sock.recv(1) == b""


def test_sync_reset(sync: Any) -> None:
    data = payload(BULK_SIZE, 1)
    with proxied_sync(sync, Fault("reset", after=AFTER)) as (_, sock):
        received, error, send_error = sync_exchange(sock, data)
        assert isinstance(error, RESET_ERRORS), f"recv ended with {error!r}"
        assert send_error is None or isinstance(send_error, RESET_ERRORS), send_error
        assert len(received) <= AFTER
        assert data.startswith(received)
        assert sock.recv(1) == b""


@pytest.mark.parametrize("mode", ["timeout", "blocking-with-default"])
def test_sync_stall(sync: Any, mode: str) -> None:
    data = payload(BULK_SIZE, 2)
    with EchoServer() as upstream, FaultProxy(upstream.address, Fault("stall", after=AFTER)) as proxy:
        if mode == "timeout":
            sock = sync.create_connection(proxy.address, timeout=CLIENT_TIMEOUT)
        else:
            previous = sync.getdefaulttimeout()
            sync.setdefaulttimeout(CLIENT_TIMEOUT)
            try:
                sock = sync.socket(sync.AF_INET, sync.SOCK_STREAM)
            finally:
                sync.setdefaulttimeout(previous)
            sock.connect(proxy.address)
        with sock:
            started = time.monotonic()
            received, error, send_error = sync_exchange(sock, data)
            assert isinstance(error, TimeoutError) and str(error) == "timed out", f"recv ended with {error!r}"
            assert time.monotonic() - started >= CLIENT_TIMEOUT
            assert received == data[:AFTER]
            assert send_error is None or isinstance(send_error, TimeoutError), send_error


def test_sync_half_close(sync: Any) -> None:
    data = payload(BULK_SIZE, 3)
    extra = b"after the server's FIN"
    with proxied_sync(sync, Fault("half_close", after=AFTER)) as (proxy, sock):
        received, error, send_error = sync_exchange(sock, data)
        assert (error, send_error) == (None, None)
        assert received == data[:AFTER]
        assert sock.recv(100) == b""
        sock.sendall(extra)
        deadline = time.monotonic() + 5
        while proxy.forwarded_up < len(data) + len(extra) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.forwarded_up == len(data) + len(extra)


# -- after a reset or an ICMP error the socket still never hangs --------------------------
#
# libuv (uvloop) stops watching a descriptor for good once it reports an
# error; these pin that asock never waits on such a dead watch (and that no
# backend hangs there either).  Every wait is bounded by ``wait_for``, so a
# hang fails the test instead of stalling it.

GUARD = 5.0


async def reset_pair() -> tuple[asock.socket, asock.socket]:
    with asock.create_server(("127.0.0.1", 0)) as server:
        client = await asock.create_connection(server.getsockname())
        conn, _ = await server.accept()
    return client, conn


def linger_reset(sock: asock.socket) -> None:
    sock.setsockopt(asock.SOL_SOCKET, asock.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def test_recv_after_reset_does_not_hang() -> None:
    client, conn = await reset_pair()
    with client, conn:
        await conn.sendall(b"x" * 10)
        assert await wait_for(client.recv(100), GUARD) == b"x" * 10  # a short read
        linger_reset(conn)
        with pytest.raises(ConnectionResetError):
            await wait_for(client.recv(100), GUARD)
        assert await wait_for(client.recv(100), GUARD) == b""
        assert await wait_for(client.recv(100), GUARD) == b""


async def test_data_then_reset_does_not_hang() -> None:
    """Bytes queued before the RST are read first; then the error; then EOF."""
    client, conn = await reset_pair()
    with client, conn:
        await conn.sendall(b"a" * 10)
        assert await wait_for(client.recv(100), GUARD) == b"a" * 10
        await conn.sendall(b"b" * 10)
        linger_reset(conn)
        await anyio.sleep(0.05)  # the reset is reported to the loop while nobody waits
        got = await wait_for(client.recv(100), GUARD)
        assert got in (b"b" * 10, b"")
        with pytest.raises(ConnectionResetError):
            await wait_for(client.recv(100), GUARD)
        assert await wait_for(client.recv(100), GUARD) == b""


async def test_waiting_reader_woken_by_data_and_reset() -> None:
    client, conn = await reset_pair()
    with client, conn:
        async with tasks() as tg:
            waiter = tg.spawn(client.recv, 100)
            await settle(waiter)
            await conn.send(b"z" * 10)
            linger_reset(conn)
            assert await wait_for(waiter, GUARD) == b"z" * 10
        with pytest.raises(ConnectionResetError):
            await wait_for(client.recv(5), GUARD)
        assert await wait_for(client.recv(5), GUARD) == b""


async def test_udp_icmp_error_then_datagram() -> None:
    """A connected UDP socket that got ECONNREFUSED (ICMP) still receives later datagrams."""
    with asock.socket(asock.AF_INET, asock.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        port = gone.getsockname()[1]
    with asock.socket(asock.AF_INET, asock.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        await sock.connect(("127.0.0.1", port))
        async with tasks() as tg:
            waiter = tg.spawn(sock.recv, 100)
            await settle(waiter)
            await sock.send(b"anyone?")  # nobody listens: ICMP port unreachable
            with pytest.raises(ConnectionRefusedError):
                await wait_for(waiter, GUARD)
        with asock.socket(asock.AF_INET, asock.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", port))
            await peer.sendto(b"hello", sock.getsockname())
            assert await wait_for(sock.recv(100), GUARD) == b"hello"


@pytest.mark.parametrize("timeout", [2**31 - 1, 1e9])
def test_sync_huge_timeout_still_waits(sync: Any, timeout: float) -> None:
    """A timeout beyond poll()'s int milliseconds waits for data, not OverflowError."""
    a, b = sync.socketpair()
    with a, b:
        a.settimeout(timeout)
        timer = threading.Timer(0.1, b.sendall, (b"late",))
        timer.start()
        try:
            assert a.recv(10) == b"late"
        finally:
            timer.join()
