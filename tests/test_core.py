"""The operation core (``asock._core``) on its own, with no event loop and no poll.

Operations run against real non-blocking sockets (socketpairs, loopback TCP),
whose syscalls are deterministic, and ``drive`` waits with a fake waiter
(``Waiter``) that records every wait and plays a script: return (a spurious
wake-up), make the socket ready first (the peer sends, drains, closes), or
raise what a driver's wait may raise (a timeout, a cancellation, a close).
Deadlines are checked against a fake clock.  What passes here holds for any
driver built on the core; the drivers' own tests cover how they wait.
"""

from __future__ import annotations

import _socket
import array
import errno
import io
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from asock import _core
from asock._core import READ, WRITE

_c = _socket.socket
DONTWAIT: int = socket.MSG_DONTWAIT
#: Seeded random bytes: a lost, repeated or reordered chunk cannot go unnoticed.
DATA = random.Random(0).randbytes(256 * 1024)
SNDBUF = 16384

Pair = tuple[socket.socket, socket.socket]


# -- the fake waiter, the fake clock and the sockets -------------------------------


class Cancelled(BaseException):
    """A cancellation as a driver's own machinery raises it: not an Exception, not asyncio's."""


_FAIL = object()


class Waiter:
    """A driver's wait, faked: records ``(direction, when, what)`` and plays a script.

    Each call takes the next action: ``None`` returns at once (a spurious
    wake-up), a callable runs and then the wait returns (it makes the socket
    ready), an exception instance is raised.  Once the script is used up,
    ``then`` is played on every further call; by default a further call
    fails the test.
    """

    def __init__(self, *script: Any, then: Any = _FAIL) -> None:
        self.script = list(script)
        self.then = then
        self.calls: list[tuple[int, float | None, Any]] = []

    async def __call__(self, direction: int, when: float | None, what: Any) -> None:
        self.calls.append((direction, when, what))
        if self.script:
            action = self.script.pop(0)
        elif self.then is not _FAIL:
            action = self.then
        else:
            raise AssertionError(f"unexpected wait #{len(self.calls)}: {self.calls[-1]}")
        if isinstance(action, BaseException):
            raise action
        if action is not None:
            action()

    @property
    def directions(self) -> list[int]:
        return [direction for direction, _, _ in self.calls]

    @property
    def whens(self) -> list[float | None]:
        return [when for _, when, _ in self.calls]


def run(op: Any, wait: Waiter, timeout: float | None = None, flags: Any = 0, when: float | None = None) -> Any:
    """``drive`` the operation to its end, as the sync facade does."""
    return _core.run_sync(_core.drive(op, wait, "what", timeout, flags, when))


class Clock:
    """``_core``'s ``monotonic``, under the test's control."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_core, "monotonic", fake)
    return fake


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A non-blocking AF_UNIX stream pair; ``a``'s small send buffer fills with ~32 KiB."""
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        a.setblocking(False)
        b.setblocking(False)
        yield a, b


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP listener with room in its accept queue."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


@pytest.fixture
def client() -> Iterator[socket.socket]:
    """A non-blocking TCP socket, not connected."""
    with socket.socket() as sock:
        sock.setblocking(False)
        yield sock


def fill(sock: _socket.socket) -> int:
    """Send until the kernel refuses more; how many bytes it took."""
    total = 0
    while True:
        try:
            total += _c.send(sock, b"f" * 65536)
        except BlockingIOError:
            return total


def drain(sock: _socket.socket) -> bytes:
    """Everything readable on a non-blocking stream socket right now."""
    chunks = []
    while True:
        try:
            chunk = _c.recv(sock, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class Received:
    """Collects what the peer reads: ``received.drain`` is a waiter action."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.chunks: list[bytes] = []

    def drain(self) -> None:
        self.chunks.append(drain(self.sock))

    def all(self) -> bytes:
        self.drain()
        return b"".join(self.chunks)


def unchained(exc: BaseException) -> bool:
    return exc.__context__ is None and exc.__cause__ is None


#: What a driver's wait may raise: its timer, a cancellation, a close of the socket.
WAIT_FAILURES: dict[str, Callable[[], BaseException]] = {
    "timeout": lambda: TimeoutError("timed out"),
    "cancelled": Cancelled,
    "closed": _core.closed_error,
}
wait_failures = pytest.mark.parametrize("failure", list(WAIT_FAILURES.values()), ids=list(WAIT_FAILURES))


# -- the module itself ---------------------------------------------------------------


def test_core_imports_no_asyncio() -> None:
    """The core is shared by drivers that have no event loop: loading it alone imports no asyncio."""
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('core_alone', {_core.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('asyncio', 'asock')))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- run_sync ----------------------------------------------------------------------------


def test_run_sync_returns_the_result_of_a_coroutine_that_never_suspends() -> None:
    async def answer() -> int:
        await Waiter(None)(READ, None, "what")
        return 42

    assert _core.run_sync(answer()) == 42


def test_run_sync_lets_the_coroutine_s_exception_leave_as_is() -> None:
    failure = ConnectionResetError(errno.ECONNRESET, "reset")

    async def fails() -> None:
        raise failure

    with pytest.raises(ConnectionResetError) as info:
        _core.run_sync(fails())
    assert info.value is failure


class Suspend:
    """What an event loop's future does when awaited: suspends the coroutine."""

    def __await__(self) -> Generator[str, None, None]:
        yield "suspended"


def test_run_sync_refuses_a_coroutine_that_suspends_and_closes_it() -> None:
    finalized = []

    async def suspends() -> None:
        try:
            await Suspend()
        finally:
            finalized.append(True)

    coro = suspends()
    with pytest.raises(RuntimeError, match="suspended"):
        _core.run_sync(coro)
    assert finalized == [True]
    assert coro.cr_frame is None  # closed, so no "never awaited" warning either


# -- retry: a single syscall ----------------------------------------------------------


def test_retry_completes_at_once_without_a_wait(pair: Pair) -> None:
    a, b = pair
    b.send(b"ready")
    wait = Waiter()
    assert run(_core.retry(READ, None, _c.recv, a, 100), wait) == b"ready"
    assert wait.calls == []


@pytest.mark.parametrize("direction", [READ, WRITE], ids=["READ", "WRITE"])
def test_retry_waits_in_its_direction_then_the_syscall_completes(pair: Pair, direction: int) -> None:
    a, b = pair
    received = Received(b)
    if direction == READ:
        op = _core.retry(READ, None, _c.recv, a, 100)
        wait = Waiter(lambda: b.send(b"late"))
        expected: Any = b"late"
    else:
        filled = fill(a)
        op = _core.retry(WRITE, None, _c.send, a, b"x")
        wait = Waiter(received.drain)
        expected = 1
    what = object()
    assert _core.run_sync(_core.drive(op, wait, what, None)) == expected
    assert wait.calls == [(direction, None, what)]  # ``what`` goes through as given
    if direction == WRITE:
        assert len(received.all()) == filled + 1


def test_retry_step_is_the_direction_and_the_kernel_s_would_block(pair: Pair) -> None:
    a, b = pair
    op = _core.retry(READ, None, _c.recv, a, 100)
    direction, would_block = next(op)
    assert direction == READ
    assert type(would_block) is BlockingIOError
    assert would_block.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    b.send(b"now")
    with pytest.raises(StopIteration) as done:
        op.send(None)
    assert done.value.value == b"now"


def test_retry_given_a_first_would_block_waits_before_its_first_attempt(pair: Pair) -> None:
    a, b = pair
    b.send(b"ready")  # ready already, but the driver chose to wait first
    log: list[str] = []

    def recv(*args: Any) -> bytes:
        log.append("attempt")
        return _c.recv(*args)

    first = _core.would_block()
    wait = Waiter(lambda: log.append("wait"))
    assert run(_core.retry(READ, first, recv, a, 100), wait) == b"ready"
    assert log == ["wait", "attempt"]
    op = _core.retry(READ, first, recv, a, 100)
    assert next(op) == (READ, first)


def test_retry_tries_again_after_a_spurious_wake_up(pair: Pair) -> None:
    """Readiness is only a hint: the syscall decides, and a failed retry waits again."""
    a, b = pair
    attempts = []

    def recv(*args: Any) -> bytes:
        attempts.append(1)
        return _c.recv(*args)

    wait = Waiter(None, None, lambda: b.send(b"at last"))
    assert run(_core.retry(READ, None, recv, a, 100), wait) == b"at last"
    assert wait.directions == [READ, READ, READ]
    assert len(attempts) == 4


@pytest.mark.parametrize("after_a_wait", [False, True], ids=["at-once", "after-a-wait"])
def test_retry_returns_eof(pair: Pair, after_a_wait: bool) -> None:
    a, b = pair
    if after_a_wait:
        wait = Waiter(b.close)
    else:
        b.close()
        wait = Waiter()
    assert run(_core.retry(READ, None, _c.recv, a, 100), wait) == b""
    assert len(wait.calls) == after_a_wait


def _peer_gone_with_unread_data(a: socket.socket, b: socket.socket) -> None:
    a.send(b"never read")
    b.close()  # with unread data: a's receives fail with ECONNRESET


@pytest.mark.parametrize("after_a_wait", [False, True], ids=["at-once", "after-a-wait"])
@pytest.mark.parametrize(
    ("direction", "error"), [(WRITE, BrokenPipeError), (READ, ConnectionResetError)], ids=["EPIPE", "ECONNRESET"]
)
def test_retry_lets_an_error_leave_unchanged(
    pair: Pair, direction: int, error: type[OSError], after_a_wait: bool
) -> None:
    a, b = pair
    if direction == WRITE:
        fill(a)
        op = _core.retry(WRITE, None, _c.send, a, b"x")
        break_it: Callable[[], None] = b.close
    else:
        op = _core.retry(READ, None, _c.recv, a, 100)

        def break_it() -> None:
            _peer_gone_with_unread_data(a, b)

    if after_a_wait:
        wait = Waiter(break_it)
    else:
        break_it()
        wait = Waiter()
    with pytest.raises(error) as info:
        run(op, wait)
    assert type(info.value) is error
    assert info.value.errno == {BrokenPipeError: errno.EPIPE, ConnectionResetError: errno.ECONNRESET}[error]
    assert unchained(info.value)  # not chained to the would-block before the wait
    assert wait.directions == [direction] * after_a_wait  # and no wait after the error


@wait_failures
def test_an_exception_the_wait_raises_leaves_drive_as_the_same_object(
    pair: Pair, failure: Callable[[], BaseException]
) -> None:
    a, _ = pair
    exc = failure()
    wait = Waiter(exc)
    with pytest.raises(type(exc)) as info:
        run(_core.retry(READ, None, _c.recv, a, 100), wait)
    assert info.value is exc
    assert unchained(info.value)
    assert len(wait.calls) == 1


def test_the_operation_is_finished_when_the_wait_s_exception_leaves(pair: Pair) -> None:
    a, _ = pair
    op = _core.retry(READ, None, _c.recv, a, 100)
    with pytest.raises(Cancelled):
        run(op, Waiter(Cancelled()))
    assert op.gi_frame is None


# -- deadlines -------------------------------------------------------------------------


def test_blocking_mode_has_no_deadline(pair: Pair) -> None:
    a, b = pair
    wait = Waiter(None, lambda: b.send(b"x"))
    run(_core.retry(READ, None, _c.recv, a, 100), wait, timeout=None)
    assert wait.whens == [None, None]


def test_timeout_mode_deadline_is_monotonic_plus_timeout(pair: Pair) -> None:
    a, b = pair
    wait = Waiter(lambda: b.send(b"x"))
    before = time.monotonic()
    run(_core.retry(READ, None, _c.recv, a, 100), wait, timeout=30.0)
    after = time.monotonic()
    (when,) = wait.whens
    assert when is not None
    assert before + 30.0 <= when <= after + 30.0


def test_one_deadline_for_the_whole_call(pair: Pair, clock: Clock) -> None:
    a, b = pair
    start = clock.now
    wait = Waiter(lambda: clock.advance(3), lambda: clock.advance(3), lambda: b.send(b"x"))
    run(_core.retry(READ, None, _c.recv, a, 100), wait, timeout=10.0)
    assert wait.whens == [start + 10.0] * 3


def test_past_the_deadline_the_next_step_times_out(pair: Pair, clock: Clock) -> None:
    a, _ = pair
    start = clock.now
    wait = Waiter(lambda: clock.advance(9.5), lambda: clock.advance(0.5))  # just before it, then at it
    with pytest.raises(TimeoutError) as info:
        run(_core.retry(READ, None, _c.recv, a, 100), wait, timeout=10.0)
    assert wait.whens == [start + 10.0] * 2
    assert type(info.value) is TimeoutError
    assert info.value.args == ("timed out",)
    assert info.value.errno is None
    assert unchained(info.value)


def test_past_the_deadline_the_attempt_still_decides(pair: Pair, clock: Clock) -> None:
    a, b = pair

    def late_but_ready() -> None:
        clock.advance(60)
        b.send(b"made it")

    wait = Waiter(late_but_ready)
    assert run(_core.retry(READ, None, _c.recv, a, 100), wait, timeout=10.0) == b"made it"


def test_a_deadline_the_driver_already_set_is_kept(pair: Pair, clock: Clock) -> None:
    a, b = pair
    wait = Waiter(lambda: b.send(b"x"))
    run(_core.retry(READ, _core.would_block(), _c.recv, a, 100), wait, timeout=10.0, when=clock.now + 2)
    assert wait.whens == [clock.now + 2]


def test_a_deadline_the_driver_set_that_has_passed_times_out_without_a_wait(pair: Pair, clock: Clock) -> None:
    a, _ = pair
    wait = Waiter()
    with pytest.raises(TimeoutError, match=r"^timed out$") as info:
        run(_core.retry(READ, None, _c.recv, a, 100), wait, timeout=10.0, when=clock.now)
    assert wait.calls == []
    assert unchained(info.value)


def test_deadline_rules(clock: Clock) -> None:
    assert _core.deadline(None, None) is None
    assert _core.deadline(None, clock.now - 1) is None
    assert _core.deadline(5.0, None) == clock.now + 5.0
    assert _core.deadline(0.5, clock.now + 0.1) == clock.now + 0.1
    with pytest.raises(TimeoutError, match=r"^timed out$"):
        _core.deadline(5.0, clock.now)


# -- giving up instead of waiting ---------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "flags", "expected"),
    [
        (0.0, 0, True),  # non-blocking mode
        (0.0, DONTWAIT, True),
        (0.0, socket.MSG_PEEK, True),
        (None, 0, False),  # blocking mode
        (None, DONTWAIT, True),  # the kernel decides, as in the stdlib
        (None, int(DONTWAIT), True),
        (None, DONTWAIT | socket.MSG_PEEK, True),
        (None, socket.MSG_PEEK, False),
        (5.0, 0, False),  # timeout mode polls first, as the stdlib does
        (5.0, DONTWAIT, False),
        (1e-9, DONTWAIT, False),
    ],
)
def test_gives_up(timeout: float | None, flags: int, expected: bool) -> None:
    assert _core.gives_up(timeout, flags) is expected


@pytest.mark.parametrize(("timeout", "flags"), [(0.0, 0), (None, DONTWAIT)], ids=["non-blocking", "MSG_DONTWAIT"])
def test_giving_up_raises_the_would_block_without_a_wait(pair: Pair, timeout: float | None, flags: int) -> None:
    a, _ = pair
    wait = Waiter()
    with pytest.raises(BlockingIOError) as info:
        run(_core.retry(READ, None, _c.recv, a, 100, flags), wait, timeout=timeout, flags=flags)
    assert type(info.value) is BlockingIOError
    assert info.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    assert unchained(info.value)
    assert wait.calls == []


def test_msg_dontwait_in_timeout_mode_waits(pair: Pair) -> None:
    a, b = pair
    wait = Waiter(lambda: b.send(b"x"))
    assert run(_core.retry(READ, None, _c.recv, a, 100, DONTWAIT), wait, timeout=5.0, flags=DONTWAIT) == b"x"
    assert wait.directions == [READ]


@pytest.mark.parametrize(("timeout", "flags"), [(0.0, 0), (None, DONTWAIT)], ids=["non-blocking", "MSG_DONTWAIT"])
def test_sendall_giving_up_reports_bytes_sent(pair: Pair, timeout: float | None, flags: int) -> None:
    a, b = pair
    wait = Waiter()
    with pytest.raises(BlockingIOError) as info:
        run(_core.sendall(a, DATA, flags), wait, timeout=timeout, flags=flags)
    received = drain(b)
    assert 0 < info.value.bytes_sent == len(received) < len(DATA)  # type: ignore[attr-defined]
    assert received == DATA[: len(received)]
    assert unchained(info.value)
    assert wait.calls == []


# -- sendall -------------------------------------------------------------------------------


def test_sendall_that_fits_sends_without_a_wait(pair: Pair) -> None:
    a, b = pair
    wait = Waiter()
    assert run(_core.sendall(a, b"hello"), wait) is None
    assert drain(b) == b"hello"
    assert wait.calls == []


def test_sendall_waits_for_room_and_sends_every_byte_once(pair: Pair) -> None:
    a, b = pair
    received = Received(b)
    wait = Waiter(then=received.drain)
    run(_core.sendall(a, DATA), wait)
    assert received.all() == DATA
    assert len(wait.calls) > 1
    assert set(wait.directions) == {WRITE}


@pytest.mark.parametrize(
    "data",
    [
        bytearray(DATA),
        memoryview(DATA),
        array.array("i", DATA),  # items of 4 bytes: progress counts bytes
        memoryview(DATA).cast("B", (512, 512)),  # 2-D, contiguous
    ],
    ids=["bytearray", "memoryview", "array", "2-D"],
)
def test_sendall_takes_any_contiguous_buffer(pair: Pair, data: Any) -> None:
    a, b = pair
    received = Received(b)
    run(_core.sendall(a, data), Waiter(then=received.drain))
    assert received.all() == bytes(memoryview(data).cast("B"))


@pytest.mark.parametrize("data", ["text", 5, memoryview(b"abcdef")[::2]], ids=["str", "int", "non-contiguous"])
def test_sendall_refuses_what_the_stdlib_refuses_with_its_message(pair: Pair, data: Any) -> None:
    a, b = pair
    with pytest.raises(Exception) as stdlib_info:  # whatever the stdlib raises
        b.sendall(data)
    with pytest.raises(type(stdlib_info.value)) as info:
        run(_core.sendall(a, data), Waiter())
    assert str(info.value) == str(stdlib_info.value)


@pytest.mark.parametrize("peer_open", [True, False], ids=["connected", "peer-closed"])
def test_sendall_of_nothing_still_sends(pair: Pair, peer_open: bool) -> None:
    """Like the stdlib's, ``sendall(b"")`` reports a broken connection instead of succeeding."""
    a, b = pair
    if peer_open:
        assert run(_core.sendall(a, b""), Waiter()) is None
        return
    b.close()
    with pytest.raises(BrokenPipeError) as info:
        run(_core.sendall(a, b""), Waiter())
    assert info.value.bytes_sent == 0  # type: ignore[attr-defined]


@wait_failures
@pytest.mark.parametrize("drains", [0, 1, 3])
def test_sendall_interrupted_reports_exactly_what_the_kernel_took(
    pair: Pair, failure: Callable[[], BaseException], drains: int
) -> None:
    a, b = pair
    received = Received(b)
    exc = failure()
    wait = Waiter(*[received.drain] * drains, exc)
    with pytest.raises(type(exc)) as info:
        run(_core.sendall(a, DATA), wait)
    assert info.value is exc
    assert unchained(exc)
    taken = received.all()
    assert 0 < exc.bytes_sent == len(taken) < len(DATA)  # type: ignore[attr-defined]
    assert taken == DATA[: len(taken)]
    assert len(wait.calls) == drains + 1


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes ``sendall``'s own send() calls returned (-1: would block)."""
    log: list[int] = []

    def counting(sock: _socket.socket, data: Any, flags: int = 0) -> int:
        try:
            sent: int = _c.send(sock, data, flags)
        except BlockingIOError:
            log.append(-1)
            raise
        log.append(sent)
        return sent

    monkeypatch.setattr(_core, "_c_send", counting)
    return log


def test_sendall_counts_the_driver_s_first_attempt(pair: Pair, sends: list[int]) -> None:
    """``sent`` from ``send_first``: the operation waits before sending again, and counts it."""
    a, b = pair
    sent = _core.send_first(a, DATA, 0)
    assert 0 < sent < len(DATA)
    sends.clear()
    op = _core.sendall(a, DATA, 0, sent)
    direction, would_block = next(op)  # the short send said the buffer is full: wait before trying
    assert sends == []
    assert direction == WRITE
    assert would_block.errno == errno.EAGAIN
    exc = Cancelled()
    with pytest.raises(Cancelled):
        op.throw(exc)
    assert exc.bytes_sent == sent == len(drain(b))  # type: ignore[attr-defined]
    assert unchained(exc)


def test_sendall_waits_after_a_short_send_instead_of_trying_again(pair: Pair, sends: list[int]) -> None:
    a, b = pair
    op = _core.sendall(a, DATA)
    direction, would_block = next(op)
    assert direction == WRITE
    assert would_block.errno == errno.EAGAIN
    assert len(sends) == 1
    assert 0 < sends[0] == len(drain(b))
    with pytest.raises(StopIteration):
        while True:
            assert next(op)[0] == WRITE
            drain(b)
    assert -1 not in sends  # every wait followed a short send: no attempt was refused
    assert sum(sends) == len(DATA)


def test_sendall_carries_on_after_the_driver_s_first_attempt(pair: Pair) -> None:
    a, b = pair
    sent = _core.send_first(a, DATA, 0)
    received = Received(b)
    exc = TimeoutError("timed out")
    with pytest.raises(TimeoutError):
        run(_core.sendall(a, DATA, 0, sent), Waiter(received.drain, received.drain, exc))
    taken = received.all()
    assert exc.bytes_sent == len(taken) > sent  # type: ignore[attr-defined]
    assert taken == DATA[: len(taken)]


def test_sendall_after_the_driver_s_first_attempt_sends_the_rest_once(pair: Pair) -> None:
    a, b = pair
    sent = _core.send_first(a, DATA, 0)
    received = Received(b)
    run(_core.sendall(a, DATA, 0, sent), Waiter(then=received.drain))
    assert received.all() == DATA


def test_sendall_after_a_first_attempt_that_would_block(pair: Pair) -> None:
    a, b = pair
    filled = fill(a)
    assert _core.send_first(a, DATA, 0) == 0
    exc = Cancelled()
    with pytest.raises(Cancelled):
        run(_core.sendall(a, DATA, 0, 0), Waiter(exc))
    assert exc.bytes_sent == 0  # type: ignore[attr-defined]
    assert len(drain(b)) == filled


OPS_ON_A_FULL_BUFFER: dict[str, Callable[[socket.socket, io.BufferedReader], Any]] = {
    "retry": lambda sock, file: _core.retry(WRITE, None, _c.send, sock, b"x"),
    "sendall": lambda sock, file: _core.sendall(sock, DATA),
    "zero_copy": _core.sendfile_zero_copy,
    "by_send": _core.sendfile_by_send,
    "sendfile": _core.sendfile,
}


@wait_failures
@pytest.mark.parametrize("make", list(OPS_ON_A_FULL_BUFFER.values()), ids=list(OPS_ON_A_FULL_BUFFER))
def test_an_exception_thrown_in_after_a_refused_attempt_is_unchained(
    pair: Pair, data_file: io.BufferedReader, make: Any, failure: Callable[[], BaseException]
) -> None:
    """No operation waits inside an ``except`` block, where what is thrown in would chain to EAGAIN."""
    a, b = pair
    filled = fill(a)
    exc = failure()
    wait = Waiter(None, exc)  # a spurious wake-up: the next attempt is refused too, then the wait fails
    with pytest.raises(type(exc)) as info:
        run(make(a, data_file), wait)
    assert info.value is exc
    assert unchained(exc)
    assert getattr(exc, "bytes_sent", 0) == 0
    assert len(drain(b)) == filled
    assert data_file.tell() == 0


def test_sendfile_by_send_interrupted_before_a_byte_went_leaves_the_file_at_offset(
    pair: Pair, data_file: io.BufferedReader
) -> None:
    a, _ = pair
    fill(a)
    exc = Cancelled()
    with pytest.raises(Cancelled):
        run(_core.sendfile_by_send(a, data_file, 10), Waiter(exc))
    assert exc.bytes_sent == 0  # type: ignore[attr-defined]
    assert data_file.tell() == 10


def test_sendall_error_after_a_wait_carries_bytes_sent_unchained(pair: Pair) -> None:
    a, b = pair
    received = Received(b)

    def drain_then_close() -> None:
        received.drain()
        b.close()

    wait = Waiter(received.drain, drain_then_close)
    with pytest.raises(BrokenPipeError) as info:
        run(_core.sendall(a, DATA), wait)
    assert info.value.bytes_sent == len(b"".join(received.chunks))  # type: ignore[attr-defined]
    assert unchained(info.value)
    assert len(wait.calls) == 2


def test_sendall_timeout_carries_bytes_sent(pair: Pair, clock: Clock) -> None:
    a, b = pair
    received = Received(b)

    def drain_and_tick() -> None:
        received.drain()
        clock.advance(4)

    wait = Waiter(then=drain_and_tick)
    with pytest.raises(TimeoutError, match=r"^timed out$") as info:
        run(_core.sendall(a, DATA), wait, timeout=10.0)
    assert len(wait.calls) == 3  # at 0, 4 and 8 s; the step at 12 s times out
    assert len(set(wait.whens)) == 1
    taken = received.all()
    assert info.value.bytes_sent == len(taken) < len(DATA)  # type: ignore[attr-defined]
    assert taken == DATA[: len(taken)]
    assert unchained(info.value)


@pytest.mark.parametrize(
    ("data", "filled_first", "expected"),
    [
        (b"hello", False, -1),  # all of it went
        (b"", False, -1),
        (array.array("i", [1, 2, 3]), False, -1),  # 12 bytes, 3 items
        (DATA, False, "partial"),
        (b"hello", True, 0),  # would block
    ],
    ids=["all", "empty", "array", "partial", "would-block"],
)
def test_send_first(pair: Pair, data: Any, filled_first: bool, expected: Any) -> None:
    a, b = pair
    if filled_first:
        fill(a)
    result = _core.send_first(a, data, 0)
    got = drain(b)
    if filled_first:
        assert result == 0
    elif expected == "partial":
        assert 0 < result == len(got) < len(data)
    else:
        assert result == -1
        assert got == bytes(memoryview(data).cast("B"))


# -- connect --------------------------------------------------------------------------------


def test_connect_in_progress_finishes_after_a_wait(client: socket.socket, listener: socket.socket) -> None:
    op = _core.connect(client, listener.getsockname())
    direction, in_progress = next(op)
    assert direction == WRITE
    assert in_progress.errno == errno.EINPROGRESS
    with pytest.raises(StopIteration):
        op.send(None)
    assert client.getpeername() == listener.getsockname()


def test_connect_driven(client: socket.socket, listener: socket.socket) -> None:
    wait = Waiter(None)
    assert run(_core.connect(client, listener.getsockname()), wait) is None
    assert wait.directions == [WRITE]
    assert client.getpeername() == listener.getsockname()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connect_error_comes_through_so_error_unchained(client: socket.socket, closed_port: int) -> None:
    wait = Waiter(None)
    with pytest.raises(ConnectionRefusedError) as info:
        run(_core.connect(client, ("127.0.0.1", closed_port)), wait)
    assert info.value.errno == errno.ECONNREFUSED
    assert info.value.strerror == os.strerror(errno.ECONNREFUSED)
    assert unchained(info.value)
    assert wait.directions == [WRITE]
    assert _core.connect_errno(info.value) == errno.ECONNREFUSED


@pytest.fixture
def full_listener() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback listener whose accept queue is full (Linux drops the next SYN), and its one connection."""
    with socket.socket() as sock, socket.socket() as queued:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        queued.connect(sock.getsockname())
        yield sock, queued


def test_connect_to_a_full_backlog_stays_in_progress_across_wake_ups(
    client: socket.socket, full_listener: tuple[socket.socket, socket.socket]
) -> None:
    """A wake-up is only a hint: without a peer the connection is not made, so it waits again."""
    exc = Cancelled()
    wait = Waiter(None, None, exc)
    with pytest.raises(Cancelled) as info:
        run(_core.connect(client, full_listener[0].getsockname()), wait)
    assert info.value is exc
    assert unchained(exc)
    assert wait.directions == [WRITE] * 3
    with pytest.raises(OSError) as not_yet:
        client.getpeername()
    assert not_yet.value.errno == errno.ENOTCONN


def test_connect_to_a_full_backlog_times_out(
    client: socket.socket, full_listener: tuple[socket.socket, socket.socket], clock: Clock
) -> None:
    wait = Waiter(lambda: clock.advance(5), lambda: clock.advance(5))
    with pytest.raises(TimeoutError, match=r"^timed out$") as info:
        run(_core.connect(client, full_listener[0].getsockname()), wait, timeout=10.0)
    assert wait.whens == [clock.now] * 2
    assert unchained(info.value)
    assert _core.connect_errno(info.value) == errno.EWOULDBLOCK


def test_connect_to_a_full_unix_backlog_connects_again() -> None:
    """AF_UNIX refuses with EAGAIN and nothing in progress: connect() again once there is room."""
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as queued:
        listener.bind("")  # an autobound abstract address
        listener.listen(0)
        queued.connect(listener.getsockname())
        with socket.socket(socket.AF_UNIX) as sock:
            sock.setblocking(False)
            op = _core.connect(sock, listener.getsockname())
            direction, full = next(op)
            assert (direction, full.errno) == (WRITE, errno.EAGAIN)
            direction, still_full = next(op)  # a wake-up with no room yet: connect() again, wait again
            assert (direction, still_full.errno) == (WRITE, errno.EAGAIN)
            fd, _ = listener._accept()  # type: ignore[attr-defined]  # room
            os.close(fd)
            with pytest.raises(StopIteration):
                op.send(None)
            assert sock.getpeername() == listener.getsockname()


@wait_failures
def test_connect_to_a_full_unix_backlog_interrupted(failure: Callable[[], BaseException]) -> None:
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as queued:
        listener.bind("")
        listener.listen(0)
        queued.connect(listener.getsockname())
        with socket.socket(socket.AF_UNIX) as sock:
            sock.setblocking(False)
            exc = failure()
            wait = Waiter(None, exc)
            with pytest.raises(type(exc)) as info:
                run(_core.connect(sock, listener.getsockname()), wait)
            assert info.value is exc
            assert unchained(exc)
            assert wait.directions == [WRITE, WRITE]


def test_connect_interrupted_by_a_signal_waits_instead_of_connecting_again(
    client: socket.socket, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    class Interrupted:
        """The C type, except that connect() reports EINTR after starting the attempt."""

        def __getattr__(self, name: str) -> Any:
            return getattr(_c, name)

        @staticmethod
        def connect(sock: _socket.socket, address: Any) -> None:
            calls.append(address)
            try:
                _c.connect(sock, address)
            except BlockingIOError:
                pass
            raise InterruptedError(errno.EINTR, os.strerror(errno.EINTR))

    monkeypatch.setattr(_core, "_c", Interrupted())
    op = _core.connect(client, listener.getsockname())
    direction, in_progress = next(op)
    assert (direction, type(in_progress), in_progress.errno) == (WRITE, BlockingIOError, errno.EINPROGRESS)
    with pytest.raises(StopIteration):
        op.send(None)
    assert len(calls) == 1
    assert client.getpeername() == listener.getsockname()


def test_connect_error_at_once_leaves_without_a_wait(client: socket.socket) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.setblocking(False)
        wait = Waiter()
        with pytest.raises(ConnectionRefusedError) as refused:
            run(_core.connect(sock, "\0asock-test-nobody-listens-here"), wait)
        assert unchained(refused.value)
        with pytest.raises(TypeError, match="connect\\(\\)"):
            run(_core.connect(client, "not a tuple"), wait)
        assert wait.calls == []


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), errno.ECONNREFUSED),
        (lambda: OSError(errno.EBADF, "Bad file descriptor"), errno.EBADF),
        (lambda: BlockingIOError(errno.EINPROGRESS, "Operation now in progress"), errno.EINPROGRESS),
        (lambda: TimeoutError(errno.ETIMEDOUT, "Connection timed out"), errno.ETIMEDOUT),
        (lambda: TimeoutError("timed out"), errno.EWOULDBLOCK),  # the stdlib's own timeout
    ],
    ids=["ECONNREFUSED", "EBADF", "EINPROGRESS", "ETIMEDOUT", "timed-out"],
)
def test_connect_errno_returns(make: Callable[[], BaseException], expected: int) -> None:
    assert _core.connect_errno(make()) == expected


@pytest.mark.parametrize(
    "make",
    [
        lambda: socket.gaierror(socket.EAI_NONAME, "Name or service not known"),  # has an errno, still raised
        lambda: socket.herror(1, "Unknown host"),
        lambda: TypeError("AF_INET address must be a pair (host, port)"),
        lambda: ValueError("bad"),
        lambda: OverflowError("too big"),
        lambda: TypeError("connect(): two", "arguments"),
        lambda: TypeError(123),
        lambda: OSError("no errno"),
        lambda: RuntimeError("connect(): not an argument error"),
        Cancelled,
        KeyboardInterrupt,
    ],
    ids=[
        "gaierror",
        "herror",
        "TypeError",
        "ValueError",
        "OverflowError",
        "two-args",
        "non-str",
        "no-errno",
        "RuntimeError",
        "Cancelled",
        "KeyboardInterrupt",
    ],
)
def test_connect_errno_raises_the_same_exception(make: Callable[[], BaseException]) -> None:
    exc = make()
    with pytest.raises(type(exc)) as info:
        _core.connect_errno(exc)
    assert info.value is exc


@pytest.mark.parametrize("kind", [TypeError, ValueError, OverflowError])
def test_connect_errno_renames_argument_errors(kind: type[Exception]) -> None:
    exc = kind("connect(): AF_INET address must be tuple, not str")
    with pytest.raises(kind) as info:
        _core.connect_errno(exc)
    assert type(info.value) is kind
    assert info.value is not exc
    assert info.value.args == ("connect_ex(): AF_INET address must be tuple, not str",)
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    "address",
    ["x", ("127.0.0.1",), ("127.0.0.1", 70000), ("127.0.0.1", -1), (1, 2), ("127.0.0.1\0", 80), ("127.0.0.1", "80")],
)
def test_connect_errno_gives_what_the_stdlib_s_connect_ex_gives(address: Any) -> None:
    with socket.socket() as sock:
        with pytest.raises(Exception) as connect_info:  # whatever the stdlib raises
            sock.connect(address)
        with pytest.raises(Exception) as connect_ex_info:
            sock.connect_ex(address)
    expected = connect_ex_info.value
    with pytest.raises(type(expected)) as info:
        _core.connect_errno(connect_info.value)
    assert type(info.value) is type(expected)
    assert info.value.args == expected.args


# -- sendfile ---------------------------------------------------------------------------------

CONTENT = random.Random(1).randbytes(300 * 1024)


@pytest.fixture
def data_file(tmp_path: Path) -> Iterator[io.BufferedReader]:
    path = tmp_path / "data.bin"
    path.write_bytes(CONTENT)
    with path.open("rb") as file:
        yield file


SENDFILES = {
    "zero_copy": _core.sendfile_zero_copy,
    "by_send": _core.sendfile_by_send,
    "sendfile": _core.sendfile,
}
sendfiles = pytest.mark.parametrize("how", list(SENDFILES.values()), ids=list(SENDFILES))


@sendfiles
@pytest.mark.parametrize(("offset", "count"), [(0, None), (1000, None), (777, 200_000), (5, 7)])
def test_sendfile_sends_its_range_and_leaves_the_file_after_it(
    pair: Pair, data_file: io.BufferedReader, how: Any, offset: int, count: int | None
) -> None:
    a, b = pair
    received = Received(b)
    expected = CONTENT[offset:] if count is None else CONTENT[offset : offset + count]
    assert run(how(a, data_file, offset, count), Waiter(then=received.drain)) == len(expected)
    assert received.all() == expected
    assert data_file.tell() == offset + len(expected)


@pytest.mark.parametrize("how", [_core.sendfile_by_send, _core.sendfile], ids=["by_send", "sendfile"])
def test_sendfile_of_a_file_object_without_a_descriptor(pair: Pair, how: Any) -> None:
    a, b = pair
    received = Received(b)
    file = io.BytesIO(CONTENT)
    assert run(how(a, file, 10, 100_000), Waiter(then=received.drain)) == 100_000
    assert received.all() == CONTENT[10:100_010]
    assert file.tell() == 100_010


@wait_failures
@sendfiles
@pytest.mark.parametrize("offset", [0, 4321])
def test_sendfile_interrupted_reports_bytes_sent_and_the_file_position(
    pair: Pair, data_file: io.BufferedReader, how: Any, failure: Callable[[], BaseException], offset: int
) -> None:
    a, b = pair
    received = Received(b)
    exc = failure()
    with pytest.raises(type(exc)) as info:
        run(how(a, data_file, offset), Waiter(received.drain, exc))
    assert info.value is exc
    assert unchained(exc)
    taken = received.all()
    assert 0 < exc.bytes_sent == len(taken) < len(CONTENT) - offset  # type: ignore[attr-defined]
    assert taken == CONTENT[offset : offset + len(taken)]
    assert data_file.tell() == offset + len(taken)


@sendfiles
def test_sendfile_error_after_progress_reports_bytes_sent_unchained(
    pair: Pair, data_file: io.BufferedReader, how: Any
) -> None:
    a, b = pair
    received = Received(b)

    def drain_then_close() -> None:
        received.drain()
        b.close()

    with pytest.raises(BrokenPipeError) as info:
        run(how(a, data_file), Waiter(drain_then_close))
    sent = len(b"".join(received.chunks))
    assert 0 < info.value.bytes_sent == sent  # type: ignore[attr-defined]
    assert unchained(info.value)
    assert data_file.tell() == sent


def test_sendfile_zero_copy_gives_up_before_sending_anything(pair: Pair, data_file: io.BufferedReader) -> None:
    a, b = pair
    with pytest.raises(socket._GiveupOnSendfile):  # type: ignore[attr-defined]
        next(_core.sendfile_zero_copy(a, io.BytesIO(CONTENT)))  # no descriptor
    b.close()
    with pytest.raises(socket._GiveupOnSendfile) as info:  # type: ignore[attr-defined]
        next(_core.sendfile_zero_copy(a, data_file))  # os.sendfile fails before any byte: EPIPE here
    assert isinstance(info.value.args[0], BrokenPipeError)
    assert data_file.tell() == 0


def test_sendfile_falls_back_to_send_when_zero_copy_gives_up(pair: Pair, data_file: io.BufferedReader) -> None:
    a, b = pair
    b.close()
    with pytest.raises(BrokenPipeError) as info:
        run(_core.sendfile(a, data_file), Waiter())
    assert info.value.bytes_sent == 0  # type: ignore[attr-defined]
    assert unchained(info.value)


def test_sendfile_uses_zero_copy_for_a_regular_file_only(
    pair: Pair, data_file: io.BufferedReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    calls = []
    real = os.sendfile

    def counting(*args: Any) -> int:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(os, "sendfile", counting)
    received = Received(b)
    run(_core.sendfile(a, data_file, 0, 1000), Waiter())
    assert len(calls) == 1
    run(_core.sendfile(a, io.BytesIO(b"x" * 1000)), Waiter())
    assert len(calls) == 1
    assert received.all() == CONTENT[:1000] + b"x" * 1000


@pytest.mark.skipif(not os.path.exists("/proc/version"), reason="needs Linux's /proc")
def test_sendfile_reads_a_file_whose_size_is_zero(pair: Pair) -> None:
    """/proc files report a size of 0 but have content: read, not zero-copy (which would send nothing)."""
    a, b = pair
    with open("/proc/version", "rb") as file:
        content = file.read()
        file.seek(0)
        assert os.fstat(file.fileno()).st_size == 0
        assert run(_core.sendfile(a, file), Waiter()) == len(content) > 0
        assert file.tell() == len(content)
    assert drain(b) == content


@sendfiles
def test_sendfile_of_an_empty_file_sends_nothing(pair: Pair, tmp_path: Path, how: Any) -> None:
    a, b = pair
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with path.open("rb") as file:
        assert run(how(a, file), Waiter()) == 0
        assert file.tell() == 0
    assert drain(b) == b""


def test_sendfile_on_a_closed_socket_is_ebadf(data_file: io.BufferedReader) -> None:
    """Not os.sendfile's EBADF, which would read as "not a regular file" and fall back to a 0-byte success."""
    sock = socket.socket()
    sock.close()
    with pytest.raises(OSError) as info:
        run(_core.sendfile(sock, data_file), Waiter())
    assert info.value.args == _core.closed_error().args
    assert data_file.tell() == 0


@pytest.mark.parametrize(
    ("mode", "sock_type", "timeout", "count", "error"),
    [
        ("r", socket.SOCK_DGRAM, 0.0, 0, (ValueError, "file should be opened in binary mode")),
        ("rb", socket.SOCK_DGRAM, 0.0, 0, (ValueError, "only SOCK_STREAM type sockets are supported")),
        ("rb", socket.SOCK_STREAM, 0.0, "1", (TypeError, "count must be a positive integer (got '1')")),
        ("rb", socket.SOCK_STREAM, 0.0, 1.5, (TypeError, "count must be a positive integer (got 1.5)")),
        ("rb", socket.SOCK_STREAM, 0.0, 0, (ValueError, "count must be a positive integer (got 0)")),
        ("rb", socket.SOCK_STREAM, None, -1, (ValueError, "count must be a positive integer (got -1)")),
        ("rb", socket.SOCK_STREAM, 0.0, None, (ValueError, "non-blocking sockets are not supported")),
        ("rb", socket.SOCK_STREAM, 0.0, 10, (ValueError, "non-blocking sockets are not supported")),
        ("rb", socket.SOCK_STREAM, None, None, None),
        ("rb", socket.SOCK_STREAM, 5.0, 10, None),
    ],
)
def test_check_sendfile_is_the_stdlib_s(
    tmp_path: Path, mode: str, sock_type: int, timeout: float | None, count: Any, error: Any
) -> None:
    """The argument rules (check_sendfile), then the mode rule (the operation's first step)."""
    path = tmp_path / "data.bin"
    path.write_bytes(b"content")

    def rules() -> None:
        _core.check_sendfile(sock_type, file, count)
        with socket.socket(socket.AF_INET, sock_type) as sock:
            op = _core.sendfile(sock, file, 0, count, timeout == 0.0)
            try:
                next(op)  # the first step: its checks, and the first attempt fails (unconnected)
            except OSError:
                pass
            finally:
                op.close()

    with path.open(mode) as file:
        if error is None:
            rules()
            return
        kind, message = error
        with pytest.raises(kind) as info:
            rules()
        assert str(info.value) == message
        with socket.socket(socket.AF_INET, sock_type) as sock:  # the stdlib, on an equivalent socket
            sock.settimeout(timeout)
            with pytest.raises(kind) as stdlib_info:
                sock.sendfile(file, 0, count)
        assert str(stdlib_info.value) == message


# -- a driver whose wait suspends (an event loop's) -----------------------------------------


async def suspending_wait(direction: int, when: float | None, what: Any) -> None:
    await Suspend()


def test_a_suspending_driver_resumes_the_operation(pair: Pair) -> None:
    a, b = pair
    received = Received(b)
    coro = _core.drive(_core.sendall(a, DATA), suspending_wait, "sendall", None)
    waits = 0
    with pytest.raises(StopIteration):
        while True:
            assert coro.send(None) == "suspended"
            waits += 1
            received.drain()
    assert waits > 1
    assert received.all() == DATA


def test_a_suspending_driver_cancels_by_throwing_into_drive(pair: Pair) -> None:
    a, b = pair
    coro = _core.drive(_core.sendall(a, DATA), suspending_wait, "sendall", None)
    assert coro.send(None) == "suspended"
    exc = Cancelled()
    with pytest.raises(Cancelled) as info:
        coro.throw(exc)
    assert info.value is exc
    assert exc.bytes_sent == len(drain(b)) > 0  # type: ignore[attr-defined]


def test_closing_a_suspended_drive_finishes_the_operation(pair: Pair, data_file: io.BufferedReader) -> None:
    """``coroutine.close()`` reaches the operation: the file is left just past what was sent."""
    a, b = pair
    op = _core.sendfile_by_send(a, data_file, 100)
    coro: Coroutine[Any, Any, int] = _core.drive(op, suspending_wait, "sendfile", None)
    assert coro.send(None) == "suspended"
    coro.close()
    assert op.gi_frame is None
    assert data_file.tell() == 100 + len(drain(b))


def test_run_sync_of_a_suspending_drive_finishes_the_operation(pair: Pair) -> None:
    a, _ = pair
    op = _core.sendall(a, DATA)
    with pytest.raises(RuntimeError, match="suspended"):
        _core.run_sync(_core.drive(op, suspending_wait, "sendall", None))
    assert op.gi_frame is None


# -- operations call the C type's methods, never the object's own ------------------------------


class Trap(_socket.socket):
    """A driver's subclass whose own methods must not be what the core calls."""


def _trap(name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any) -> Any:
        raise AssertionError(f"the core called {name}() on the object")

    return method


for _name in ("send", "sendall", "recv", "connect", "connect_ex", "getsockopt", "getpeername", "fileno", "setblocking"):
    setattr(Trap, _name, _trap(_name))


def test_operations_call_the_c_methods_unbound(listener: socket.socket, data_file: io.BufferedReader) -> None:
    a, b = socket.socketpair()
    with a, b:
        b.setblocking(False)
        trap = Trap(a.family, a.type, 0, a.detach())
        try:
            _c.setblocking(trap, False)
            received = Received(b)
            run(_core.sendall(trap, DATA), Waiter(then=received.drain))
            assert _core.send_first(trap, b"first", 0) == -1
            run(_core.sendfile(trap, data_file), Waiter(then=received.drain))
            run(_core.sendfile(trap, io.BytesIO(b"last")), Waiter(then=received.drain))
            assert received.all() == DATA + b"first" + CONTENT + b"last"
        finally:
            _c.close(trap)
    trap = Trap(socket.AF_INET, socket.SOCK_STREAM)
    try:
        _c.setblocking(trap, False)
        run(_core.connect(trap, listener.getsockname()), Waiter(None))
        assert _c.getpeername(trap) == listener.getsockname()
    finally:
        _c.close(trap)


# -- small rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "timeout", "flags", "want", "expected"),
    [
        (8, None, 0, 100, True),
        (1, 5.0, 0, 1, True),
        (0, None, 0, 100, False),  # no hint: try first
        (8, 0.0, 0, 100, False),  # non-blocking mode never waits
        (8, None, socket.MSG_PEEK, 100, False),  # flags: signalled differently
        (8, None, DONTWAIT, 100, False),
        (8, None, socket.MSG_PEEK & 0, 100, False),  # an IntFlag: not exactly an int
        (8, None, True, 100, False),  # not exactly an int: the native call decides at once
        (8, None, 0.0, 100, False),
        (8, None, 0, 0, False),  # nothing (or the whole buffer, unknown) wanted
        (8, None, 0, -1, False),  # the native call refuses
        (8, None, 0, sys.maxsize, True),
        (8, None, 0, sys.maxsize + 1, False),  # overflows: the native call refuses at once
        (8, None, 0, True, False),
        (8, None, 0, 100.0, False),
        (8, None, 0, "100", False),
    ],
)
def test_wait_first(hint: int, timeout: float | None, flags: Any, want: Any, expected: bool) -> None:
    assert _core.wait_first(hint, timeout, flags, want) is expected


@pytest.mark.parametrize(
    ("hint", "short", "expected"),
    [
        (0, True, _core.WAIT_FIRST),  # a short receive: the buffer is empty, wait first next time
        (3, True, _core.WAIT_FIRST),
        (_core.WAIT_FIRST, False, _core.WAIT_FIRST - 1),  # full receives count the hint down
        (1, False, 0),
        (0, False, 0),
    ],
)
def test_receive_hint(hint: int, short: bool, expected: int) -> None:
    assert _core.receive_hint(hint, short) == expected


def test_receive_hint_returns_to_trying_first_after_wait_first_full_receives() -> None:
    hint = _core.receive_hint(0, True)
    hints = []
    for _ in range(_core.WAIT_FIRST):
        assert _core.wait_first(hint, None, 0, 100)
        hint = _core.receive_hint(hint, False)
        hints.append(hint)
    assert hints == list(range(_core.WAIT_FIRST - 1, -1, -1))
    assert not _core.wait_first(hint, None, 0, 100)


class ByteArray(bytearray):
    pass


@pytest.mark.parametrize(
    ("buffer", "nbytes", "expected", "native"),
    [
        (bytearray(10), 0, 10, "accepts"),
        (bytearray(10), 4, 4, "accepts"),
        (bytearray(10), 10, 10, "accepts"),
        (bytearray(0), 0, 0, "accepts"),
        (memoryview(bytearray(10)), 0, 10, "accepts"),
        (memoryview(bytearray(12)).cast("i"), 0, 12, "accepts"),  # bytes, not items
        (memoryview(bytearray(12)).cast("i"), 8, 8, "accepts"),
        (bytearray(10), 11, -1, "refuses"),  # larger than the buffer
        (bytearray(10), -1, -1, "refuses"),
        (bytearray(10), 4.0, -1, "refuses"),
        (memoryview(b"abc"), 0, -1, "refuses"),  # read-only
        (memoryview(bytearray(10))[::2], 0, -1, "refuses"),  # not contiguous
        (b"abc", 0, -1, "refuses"),
        (bytearray(10), True, -1, "accepts"),  # not exactly int: no prediction, the native call decides
        (ByteArray(10), 0, -1, "accepts"),
        (array.array("b", bytes(10)), 0, -1, "accepts"),
    ],
)
def test_into_size(pair: Pair, buffer: Any, nbytes: Any, expected: int, native: str) -> None:
    a, b = pair
    assert _core.into_size(buffer, nbytes) == expected
    b.send(b"z" * 64)
    if native == "refuses":
        with pytest.raises((TypeError, ValueError)):
            a.recv_into(buffer, nbytes)
        return
    received = a.recv_into(buffer, nbytes)
    if expected >= 0:
        assert received == expected  # what into_size said the call asks for


TIMEOUT_VALUES = [
    -1,
    -0.5,
    "x",
    b"1",
    None,
    0,
    0.0,
    -0.0,
    1,
    1.5,
    True,
    1e-10,
    float("nan"),
    float("inf"),
    2**80,
    1e300,
]
BLOCKING_VALUES = [True, False, 0, 1, 2, -1, None, "x", "", 1.5, 0.0, 2**80, [], [0]]


def _stdlib_outcome(setter: str, getter: str, value: Any) -> tuple[str, Any]:
    with socket.socket() as sock:
        try:
            getattr(sock, setter)(value)
        except Exception as exc:
            return type(exc).__name__, str(exc)
        return "ok", repr(getattr(sock, getter)())


def _core_outcome(parse: Callable[[Any], Any], value: Any) -> tuple[str, Any]:
    try:
        result = parse(value)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "ok", repr(result)


@pytest.mark.parametrize("value", TIMEOUT_VALUES, ids=repr)
def test_parse_timeout_is_settimeout_s(value: Any) -> None:
    assert _core_outcome(_core.parse_timeout, value) == _stdlib_outcome("settimeout", "gettimeout", value)


@pytest.mark.parametrize("value", BLOCKING_VALUES, ids=repr)
def test_parse_blocking_is_setblocking_s(value: Any) -> None:
    assert _core_outcome(_core.parse_blocking, value) == _stdlib_outcome("setblocking", "getblocking", value)


def test_parse_timeout_values() -> None:
    assert _core.parse_timeout(None) is None
    assert _core.parse_timeout(0) == 0.0
    assert _core.parse_timeout(2) == 2.0
    with pytest.raises(ValueError, match="Timeout value out of range"):
        _core.parse_timeout(-1)


def test_attempt(pair: Pair) -> None:
    a, b = pair
    assert _core.attempt(_c.recv, (a, 10)) is _core.AGAIN
    b.send(b"data")
    assert _core.attempt(_c.recv, (a, 10)) == b"data"
    b.close()
    assert _core.attempt(_c.recv, (a, 10)) == b""
    with pytest.raises(BrokenPipeError):
        _core.attempt(_c.send, (a, b"x"))


def test_errors_are_the_stdlib_s() -> None:
    sock = socket.socket()
    sock.close()
    with pytest.raises(OSError) as closed:
        sock.recv(1)
    assert type(_core.closed_error()) is type(closed.value)
    assert _core.closed_error().args == closed.value.args
    with socket.socket() as sock:
        sock.settimeout(1e-9)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(TimeoutError) as timed_out:
            sock.accept()
    assert type(_core.timed_out()) is TimeoutError
    assert _core.timed_out().args == timed_out.value.args == ("timed out",)
    assert _core.timed_out().errno is None
    would_block = _core.would_block()
    assert type(would_block) is BlockingIOError
    assert would_block.args == (errno.EAGAIN, os.strerror(errno.EAGAIN))


def test_replayable() -> None:
    items = [b"a", b"b"]
    assert _core.replayable(items) is items
    pair = (b"a", b"b")
    assert _core.replayable(pair) is pair
    once = _core.replayable(iter(items))
    assert list(once) == list(once) == items
    assert _core.replayable(b for b in items) == items
    assert _core.replayable(5) == 5  # for the native call to reject with its own message


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"abc", 3), (bytearray(5), 5), (memoryview(b"abcd")[1:], 3), (array.array("i", [1, 2, 3]), 12), (b"", 0)],
)
def test_nbytes(data: Any, expected: int) -> None:
    assert _core.nbytes(data) == expected


def test_nbytes_refuses_what_is_not_bytes_like() -> None:
    with pytest.raises(TypeError):
        _core.nbytes("text")


def _stdlib_repr_matches(sock: socket.socket) -> None:
    name = f"{type(sock).__module__}.{type(sock).__qualname__}"
    assert _core.describe(name, sock, getattr(sock, "_closed", False)) == repr(sock)


def test_describe_is_the_stdlib_s_repr(listener: socket.socket) -> None:
    _stdlib_repr_matches(listener)
    with socket.socket() as fresh:
        _stdlib_repr_matches(fresh)
    with socket.create_connection(listener.getsockname()) as connected:
        _stdlib_repr_matches(connected)
        accepted, _ = listener.accept()
        with accepted:
            _stdlib_repr_matches(accepted)
    a, b = socket.socketpair()
    with a, b:
        _stdlib_repr_matches(a)
    _stdlib_repr_matches(a)  # closed
    assert "[closed]" in _core.describe("x", a, True)


def test_sendfile_reads_a_pipe_and_leaves_it_unseeked(pair: Pair) -> None:
    """A pipe reports size 0 and cannot seek: it is read and sent, and the count returned."""
    a, b = pair
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as pipe:
        os.write(write_end, b"through a pipe")
        os.close(write_end)
        assert run(_core.sendfile(a, pipe), Waiter()) == len(b"through a pipe")
    assert drain(b) == b"through a pipe"


def test_sendfile_of_an_empty_file_in_nonblocking_mode_sends_nothing(pair: Pair, tmp_path: Path) -> None:
    """As the stdlib: an empty file is done before its non-blocking rule applies."""
    a, b = pair
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with path.open("rb") as file:
        assert run(_core.sendfile(a, file, 0, None, True), Waiter()) == 0
        with socket.socket() as stdlib_sock:
            stdlib_sock.setblocking(False)
            assert stdlib_sock.sendfile(file) == 0
    assert drain(b) == b""
