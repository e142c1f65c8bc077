"""Signals and the sync facade: PEP 475 retry with the time left, handler exceptions abort.

A ``setitimer`` timer interrupts the facade while it waits; its handler runs
in the main thread, as Python signal handlers do.  A waiting call that is
interrupted must resume (and keep its original deadline, not restart it), and
a handler that raises must end the call with that exception.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

sync: Any = pytest.importorskip("asock.sync")

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")

INTERVAL = 0.02  # a signal every 20 ms: many interruptions during each wait
TIMEOUT = 0.5


class Interrupted(Exception):
    pass


class Ticker:
    """SIGALRM every INTERVAL seconds while active, counted; optionally raising from the handler."""

    def __init__(self, raise_after: int | None = None) -> None:
        self.count = 0
        self.raise_after = raise_after

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.raise_after is not None and self.count >= self.raise_after:
            signal.setitimer(signal.ITIMER_REAL, 0)
            raise Interrupted(f"signal #{self.count}")


@pytest.fixture
def ticker() -> Iterator[Callable[..., Ticker]]:
    previous = signal.getsignal(signal.SIGALRM)

    def start(raise_after: int | None = None) -> Ticker:
        tick = Ticker(raise_after)
        signal.signal(signal.SIGALRM, tick.handler)
        signal.setitimer(signal.ITIMER_REAL, INTERVAL, INTERVAL)
        return tick

    try:
        yield start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any]]:
    a, b = sync.socketpair()
    with a, b:
        yield a, b


def later(delay: float, action: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.start()
    return timer


def test_blocking_recv_resumes_after_signals(ticker: Callable[..., Ticker], pair: tuple[Any, Any]) -> None:
    a, b = pair
    assert a.gettimeout() is None
    timer = later(0.3, lambda: b.sendall(b"finally"))
    try:
        tick = ticker()
        assert a.recv(100) == b"finally"
    finally:
        timer.join()
    assert tick.count >= 3, "the wait was never interrupted"


def test_timed_recv_keeps_its_deadline(ticker: Callable[..., Ticker], pair: tuple[Any, Any]) -> None:
    """Interrupted every 20 ms, a 0.5 s recv still times out after 0.5 s: not never, not early."""
    a, _ = pair
    a.settimeout(TIMEOUT)
    tick = ticker()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^timed out$"):
        a.recv(100)
    elapsed = time.monotonic() - started
    assert tick.count >= 5
    assert elapsed >= TIMEOUT
    # Restarting the full timeout after each signal would never end; a
    # generous bound tells "honours the deadline" from "restarts it".
    assert elapsed < TIMEOUT * 6, elapsed


def test_timed_recv_resumes_and_returns_data(ticker: Callable[..., Ticker], pair: tuple[Any, Any]) -> None:
    a, b = pair
    a.settimeout(5)
    timer = later(0.2, lambda: b.sendall(b"data"))
    try:
        tick = ticker()
        assert a.recv(100) == b"data"
    finally:
        timer.join()
    assert tick.count >= 2


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_raising_handler_aborts_recv(
    ticker: Callable[..., Ticker], pair: tuple[Any, Any], timeout: float | None
) -> None:
    a, b = pair
    a.settimeout(timeout)
    ticker(raise_after=3)
    started = time.monotonic()
    with pytest.raises(Interrupted, match="signal #3"):
        a.recv(100)
    assert time.monotonic() - started < 4  # the handler, not the timeout, ended it
    # Nothing was consumed, and the socket still works.
    b.sendall(b"after")
    assert a.recv(100) == b"after"


def test_raising_handler_aborts_accept(ticker: Callable[..., Ticker]) -> None:
    with sync.create_server(("127.0.0.1", 0)) as server:
        ticker(raise_after=2)
        with pytest.raises(Interrupted):
            server.accept()
        with sync.create_connection(server.getsockname(), timeout=5) as client:
            conn, _ = server.accept()
            conn.close()
            assert client.recv(1) == b""


def test_blocking_sendall_resumes_after_signals(ticker: Callable[..., Ticker], pair: tuple[Any, Any]) -> None:
    """A sendall far bigger than the socket buffers, interrupted throughout, delivers every byte."""
    a, b = pair
    payload = bytes(range(256)) * 40_000  # 10 MiB
    received = bytearray()

    def drain() -> None:
        while len(received) < len(payload):
            time.sleep(0.001)  # a slow reader keeps the sender waiting
            chunk = b.recv(1 << 20)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        tick = ticker()
        a.sendall(payload)
    finally:
        reader.join(30)
    assert tick.count >= 1
    assert bytes(received) == payload


def test_timed_accept_resumes(ticker: Callable[..., Ticker]) -> None:
    with sync.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        address = server.getsockname()
        connector = later(0.2, lambda: sync.create_connection(address, timeout=5).close())
        try:
            tick = ticker()
            conn, _ = server.accept()
            conn.close()
        finally:
            connector.join()
    assert tick.count >= 2
