"""The C extension's async hot path (``asock._speedups``) against its pure-Python twins.

``asock.socket``'s ``recv``, ``recv_into`` and ``sendall`` take each step of
their hot path through a step function (``_recv_now``, ``_recv_again``,
...), and the loop reports readiness to a callback (``_on_readable``, ...):
the extension's when it is in use, else the Python twins, which stay the
reference (``asock._async_socket.REFERENCE``).  Checked here, on asyncio's
loop and uvloop:

- which implementation is in use, and that the C module imports no asyncio;
- step by step: the same step on two sockets in the same state, one through
  the C function, one through its twin, must end the same way (the same
  result, or the same exception with nothing chained, and the same state
  afterwards: the socket's slots, its waiter, what is left to read);
- whole calls, once with each set of steps: round trips, lossless
  cancellation, close() waking a waiter with EBADF, BusyError, the fairness
  budget, ``bytes_sent``, a socket used from another loop, subclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket as stdlib
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import bytes_sent, fill_send_buffer, settle

import asock
from asock import _async_socket
from asock._core import AGAIN, READ, WRITE, BusyError

pytestmark = [pytest.mark.asyncio_only, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parent.parent
DISABLED = os.environ.get("ASOCK_NO_EXTENSIONS", "") not in ("", "0")
STEP_NAMES = ("recv_now", "recv_again", "recv_into_now", "recv_into_again", "sendall_now", "into_size")
CALLBACKS = ("on_readable", "on_writable", "on_ready_once")
#: The steps every call starts with (the loop check, the budget) and the inline waits use.
HELPERS = ("on_own_loop", "enter", "arm")

needs_extension = pytest.mark.skipif(not _async_socket.EXTENSION, reason="the C extension is not in use")


# -- which implementation -------------------------------------------------------------


def test_the_steps_are_the_extension_s_when_it_is_in_use() -> None:
    from asock import _sync_socket

    # One switch for both: the facade's methods and the async steps.
    assert _async_socket.EXTENSION is _sync_socket.EXTENSION
    assert set(_async_socket.STEPS) == set(_async_socket.REFERENCE) == {*STEP_NAMES, *CALLBACKS, *HELPERS}
    for name, step in _async_socket.STEPS.items():
        assert getattr(_async_socket, f"_{name}") is step
        if _async_socket.EXTENSION:
            assert type(step).__name__ == "builtin_function_or_method", name
        else:
            assert step is _async_socket.REFERENCE[name]
    if DISABLED:
        assert not _async_socket.EXTENSION


def test_the_extension_imports_no_asyncio() -> None:
    code = "import sys, asock.sync, asock._speedups; print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    if "ModuleNotFoundError" in out.stderr:
        pytest.skip("the extension is not built")
    assert out.stdout.strip() == "False", out.stderr


def test_the_methods_stay_coroutine_functions() -> None:
    import inspect

    for name in ("recv", "recv_into", "sendall"):
        assert inspect.iscoroutinefunction(getattr(asock.socket, name)), name


# -- step by step -------------------------------------------------------------------


class Twin:
    """A bound ``asock.socket`` (``a``) in a given state, and its peer ``b`` (a stdlib socket)."""

    def __init__(self, state: dict[str, Any]) -> None:
        a, b = stdlib.socketpair()
        self.b = b
        if state.get("small buffers"):
            a.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, 4096)
            b.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_RCVBUF, 4096)
        self.a = asock.socket(fileno=a.detach())
        sock = self.a
        if state.get("bound", True):
            sock._bind_loop()
        sock._hint = state.get("hint", 0)
        sock._ticks = state.get("ticks", 0)
        if "timeout" in state:
            sock.settimeout(state["timeout"])
        if state.get("pending"):
            b.sendall(state["pending"])
        if state.get("peer") == "closed":
            b.close()
        elif state.get("peer") == "reset":
            b.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_LINGER, struct.pack("ii", 1, 0))
            b.close()
        if state.get("full"):
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock._sock.send(b"f" * 65536)
        if state.get("reader busy"):
            sock._arm(READ, "recv")
        if state.get("writer busy"):
            sock._arm(WRITE, "sendall")
        if state.get("armed"):  # a wait that has ended: the reader's future done
            sock._arm(READ, _async_socket._c_recv).set_result(None)
        if state.get("closed"):
            self.close_a()

    def close_a(self) -> None:
        for fut in (self.a._reader, self.a._writer):
            if fut is not None and not fut.done():
                fut.cancel()  # (else close() fails it with EBADF, which nobody retrieves)
        self.a.close()

    def snapshot(self) -> dict[str, Any]:
        sock = self.a
        futures = {}
        for name in ("_reader", "_writer"):
            fut = getattr(sock, name)
            futures[name] = None if fut is None else ("done" if fut.done() else "pending", type(fut))
        left = b""
        if sock.fileno() >= 0:
            with contextlib.suppress(OSError):
                left = sock._sock.recv(1 << 20, stdlib.MSG_PEEK | stdlib.MSG_DONTWAIT)
        return {
            "hint": sock._hint,
            "ticks": sock._ticks,
            "watching": sock._watching,
            "reading": sock._reading,
            "writing": sock._writing,
            "timeout": sock._timeout,
            "loop": sock._loop,
            "left to read": left,
            **futures,
        }

    def close(self) -> None:
        self.close_a()
        with contextlib.suppress(OSError):
            self.b.close()


def outcome(step: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        result = step(*args)
    except BaseException as exc:  # compared whole
        return (
            "raised",
            type(exc),
            exc.args,
            getattr(exc, "errno", None),
            exc.__cause__,
            exc.__context__,
            getattr(exc, "bytes_sent", None),
        )
    if isinstance(result, asyncio.Future):
        sock = args[0]
        which = "reader" if result is sock._reader else "writer" if result is sock._writer else "another"
        return ("returned", type(result), which, result.done())
    if result is AGAIN:
        return ("AGAIN",)
    if result is _async_socket._SLOW:
        return ("SLOW",)
    return ("returned", type(result), result)


def compare(name: str, state: dict[str, Any], make_args: Callable[[asock.socket], tuple[Any, ...]]) -> None:
    """The C step and its twin, each on a socket in ``state``: the same outcome and state after."""
    ends = []
    for step in (_async_socket.STEPS[name], _async_socket.REFERENCE[name]):
        twin = Twin(state)
        try:
            args = make_args(twin.a)
            result = outcome(step, args)
            after = [arg.tobytes() for arg in args[1:] if isinstance(arg, memoryview)]
            after += [bytes(arg) for arg in args[1:] if isinstance(arg, bytearray)]
            ends.append((result, twin.snapshot(), after))
        finally:
            twin.close()
    c_end, py_end = ends
    assert c_end[0] == py_end[0], f"{name} {state}: the outcome"
    c_state, py_state = dict(c_end[1]), dict(py_end[1])
    assert c_state.pop("loop") is not None or py_state.pop("loop") is None
    py_state.pop("loop", None)
    assert c_state == py_state, f"{name} {state}: the state after"
    assert c_end[2] == py_end[2], f"{name} {state}: the buffer after"


RECEIVE_STATES: list[dict[str, Any]] = [
    {},
    {"pending": b"x" * 10},
    {"pending": b"x" * 100},
    {"pending": b"x" * 200},
    {"hint": 8},
    {"hint": 8, "pending": b"x" * 10},
    {"hint": 1, "pending": b"x" * 200},
    {"hint": -1},
    {"hint": -1, "pending": b"x" * 10},
    {"ticks": 63, "pending": b"x" * 10},
    {"ticks": 64, "pending": b"x" * 10},
    {"timeout": 5.0, "pending": b"x" * 10},
    {"timeout": 0.0, "pending": b"x" * 10},
    {"timeout": 0.0},
    {"bound": False, "pending": b"x" * 10},
    {"peer": "closed"},
    {"peer": "closed", "hint": 8},
    {"peer": "reset", "pending": b"x" * 10},
    {"reader busy": True, "pending": b"x" * 10},
    {"reader busy": True},
    {"writer busy": True, "pending": b"x" * 10},
    {"armed": True, "pending": b"x" * 10},
    {"armed": True},
    {"closed": True},
    {"closed": True, "hint": 8},
]

RECV_ARGS: list[tuple[Any, ...]] = [
    (100, 0),
    (5, 0),
    (0, 0),
    (-1, 0),
    ("100", 0),
    (2**70, 0),
    (True, 0),
    (100, stdlib.MSG_PEEK),
    (100, stdlib.MSG_DONTWAIT),
    (100, "0"),
    (100, False),
]


@needs_extension
@pytest.mark.parametrize("name", ["recv_now", "recv_again"])
@pytest.mark.parametrize("state", RECEIVE_STATES, ids=repr)
async def test_recv_steps(name: str, state: dict[str, Any]) -> None:
    for args in RECV_ARGS:
        compare(name, state, lambda sock, args=args: (sock, *args))
    compare(name, state, lambda sock: (sock, 100))  # a call of the wrong shape


HELPER_CALLS: list[tuple[str, Callable[[asock.socket], tuple[Any, ...]]]] = [
    ("on_own_loop", lambda sock: (sock,)),
    ("enter", lambda sock: (sock, 0, "recv")),
    ("enter", lambda sock: (sock, READ, "recv")),
    ("enter", lambda sock: (sock, WRITE, "sendall")),
    ("enter", lambda sock: (sock, "2", "sendall")),
    ("enter", lambda sock: (sock, 0)),  # a call of the wrong shape
    ("arm", lambda sock: (sock, READ, "recv")),
    ("arm", lambda sock: (sock, WRITE, "sendall")),
    ("arm", lambda sock: (sock, READ | WRITE, "recv")),
    ("arm", lambda sock: (sock, True, "recv")),
    ("arm", lambda sock: (sock, "1", "recv")),
    ("arm", lambda sock: (sock, READ)),  # a call of the wrong shape
]


@needs_extension
@pytest.mark.parametrize("state", RECEIVE_STATES, ids=repr)
async def test_loop_check_and_arm_steps(state: dict[str, Any]) -> None:
    for name, make_args in HELPER_CALLS:
        compare(name, state, make_args)


INTO_ARGS: list[Callable[[], tuple[Any, ...]]] = [
    lambda: (bytearray(100), 0, 0),
    lambda: (bytearray(100), 5, 0),
    lambda: (bytearray(100), 101, 0),
    lambda: (bytearray(100), -1, 0),
    lambda: (bytearray(0), 0, 0),
    lambda: (memoryview(bytearray(100)), 0, 0),
    lambda: (memoryview(bytearray(100))[10:50], 0, 0),
    lambda: (memoryview(bytearray(100))[::2], 0, 0),
    lambda: (memoryview(bytes(100)), 0, 0),
    lambda: (memoryview(bytearray(100)).cast("B", (10, 10)), 0, 0),
    lambda: (b"x" * 100, 0, 0),
    lambda: ("text", 0, 0),
    lambda: (bytearray(100), 0, stdlib.MSG_PEEK),
    lambda: (bytearray(100), "0", 0),
    lambda: (bytearray(100), 0, 0.0),
]


def _into(sock: asock.socket, make: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
    buffer, nbytes, flags = make()
    try:
        want = _async_socket.REFERENCE["into_size"](buffer, nbytes)
    except ValueError:
        want = -1
    return (sock, buffer, nbytes, flags, want)


@needs_extension
@pytest.mark.parametrize("name", ["recv_into_now", "recv_into_again"])
@pytest.mark.parametrize("state", RECEIVE_STATES, ids=repr)
async def test_recv_into_steps(name: str, state: dict[str, Any]) -> None:
    for make in INTO_ARGS:
        compare(name, state, lambda sock, make=make: _into(sock, make))
    # A want that disagrees with the buffer (the buffer resized during a wait).
    compare(name, state, lambda sock: (sock, bytearray(10), 0, 0, 100))
    compare(name, state, lambda sock: (sock, bytearray(10), 0, 0, "100"))


@needs_extension
def test_into_size() -> None:
    released = memoryview(bytearray(10))
    released.release()
    cases = [
        (bytearray(10), 0),
        (bytearray(10), 4),
        (bytearray(10), 11),
        (bytearray(10), -1),
        (bytearray(10), 2**80),
        (bytearray(10), True),
        (memoryview(bytearray(10)), 0),
        (memoryview(bytes(10)), 0),
        (memoryview(bytearray(10))[::2], 0),
        (bytes(10), 0),
        (released, 0),
    ]
    for args in cases:
        assert outcome(_async_socket.STEPS["into_size"], args) == outcome(
            _async_socket.REFERENCE["into_size"], args
        ), args


SEND_STATES: list[dict[str, Any]] = [
    {},
    {"ticks": 63},
    {"ticks": 64},
    {"timeout": 5.0},
    {"timeout": 0.0},
    {"bound": False},
    {"writer busy": True},
    {"reader busy": True},
    {"full": True},
    {"full": True, "timeout": 0.0},
    {"small buffers": True},
    {"peer": "closed"},
    {"peer": "reset"},
    {"closed": True},
]

SEND_ARGS: list[Callable[[], tuple[Any, ...]]] = [
    lambda: (b"x" * 100, 0),
    lambda: (b"", 0),
    lambda: (b"x" * 300_000, 0),
    lambda: (bytearray(b"x" * 100), 0),
    lambda: (memoryview(b"x" * 100)[10:], 0),
    lambda: (memoryview(b"x" * 100)[::2], 0),
    lambda: (memoryview(bytearray(100)).cast("B", (10, 10)), 0),
    lambda: ("text", 0),
    lambda: (None, 0),
    lambda: (b"x" * 100, stdlib.MSG_DONTWAIT),
    lambda: (b"x" * 100, -1),
    lambda: (b"x" * 100, 2**40),
    lambda: (b"x" * 100, "0"),
    lambda: (b"x" * 100, True),
]


@needs_extension
@pytest.mark.parametrize("state", SEND_STATES, ids=repr)
async def test_sendall_steps(state: dict[str, Any]) -> None:
    for make in SEND_ARGS:
        compare("sendall_now", state, lambda sock, make=make: (sock, *make()))
    compare("sendall_now", state, lambda sock: (sock, b"x"))


@needs_extension
@pytest.mark.parametrize("name", CALLBACKS)
@pytest.mark.parametrize(
    "waiter",
    ["pending", "done", "none", "echo", "dead socket", "not a watch", "unregistered"],
)
async def test_readiness_callbacks(name: str, waiter: str) -> None:
    ends = []
    for callback in (_async_socket.STEPS[name], _async_socket.REFERENCE[name]):
        twin = Twin({})
        sock = twin.a
        try:
            direction = WRITE if name == "on_writable" else READ
            watch_type = _async_socket._WriteWatch if direction == WRITE else _async_socket._ReadWatch
            fut = None
            if waiter in ("pending", "done", "echo", "unregistered"):
                fut = sock._arm(direction, "recv" if direction == READ else "sendall")
                if waiter == "done":
                    fut.set_result(None)
            if waiter == "echo":
                sock._watching |= direction << _async_socket._ECHO
            if waiter == "unregistered":
                sock._unwatch(direction)  # a report the loop delivers after all
            arg: Any = watch_type(sock)
            if waiter == "dead socket":
                gone = asock.socket()
                gone.close()
                arg = watch_type(gone)
                del gone  # collected at once: the weak reference is dead
            elif waiter == "not a watch":
                arg = lambda sock=sock: sock  # noqa: E731  (called as the weak reference is)
            result = outcome(callback, (arg,))
            ends.append((result, None if fut is None else fut.done(), twin.snapshot()))
        finally:
            twin.close()
    assert ends[0] == ends[1]


# -- whole calls, once with each set of steps --------------------------------------


@pytest.fixture(params=["c", "python"])
def steps(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with the C steps, then with the Python twins."""
    if request.param == "c" and not _async_socket.EXTENSION:
        pytest.skip("the C extension is not in use")
    chosen = _async_socket.STEPS if request.param == "c" else _async_socket.REFERENCE
    for name, step in chosen.items():
        monkeypatch.setattr(_async_socket, f"_{name}", step)
    yield request.param


@pytest.mark.parametrize("size", [1, 1024, 65536, 1 << 20])
async def test_round_trips(steps: str, size: int) -> None:
    a, b = asock.socketpair()
    with a, b:
        message = os.urandom(size)

        async def echo() -> None:
            buffer = bytearray(70000)
            while count := await b.recv_into(buffer):
                await b.sendall(memoryview(buffer)[:count])

        task = asyncio.create_task(echo())
        for _ in range(3):
            sending = asyncio.create_task(a.sendall(message))  # the echo may fill both ways
            got = b""
            while len(got) < size:
                got += await a.recv(65536)
            await sending
            assert got == message
        a.shutdown(stdlib.SHUT_WR)
        await task
        b.shutdown(stdlib.SHUT_WR)
        assert await a.recv(10) == b""


async def test_a_cancelled_receive_loses_nothing(steps: str) -> None:
    a, b = asock.socketpair()
    with a, b:
        for _ in range(3):  # also once the hint has it wait before trying
            waiter = asyncio.create_task(a.recv(100))
            await settle(waiter)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await b.sendall(b"kept")
            assert await a.recv(100) == b"kept"


async def test_close_wakes_a_waiter_with_ebadf(steps: str) -> None:
    a, b = asock.socketpair()
    with b:
        waiter = asyncio.create_task(a.recv(100))
        await settle(waiter)
        a.close()
        with pytest.raises(OSError) as info:
            await waiter
        assert info.value.errno == errno.EBADF
        assert info.value.__context__ is None and info.value.__cause__ is None
        with pytest.raises(OSError) as info:
            await a.recv(100)
        assert info.value.errno == errno.EBADF


async def test_a_second_waiter_is_refused(steps: str) -> None:
    a, b = asock.socketpair()
    with a, b:
        first = asyncio.create_task(a.recv(100))
        await settle(first)
        with pytest.raises(BusyError):
            await a.recv(100)
        with pytest.raises(BusyError):
            await a.recv_into(bytearray(10))
        await b.sendall(b"one")
        assert await first == b"one"
        await fill_send_buffer(a)
        sending = asyncio.create_task(a.sendall(b"y" * 100_000))
        await settle(sending)
        with pytest.raises(BusyError):
            await a.sendall(b"z")
        sending.cancel()
        with pytest.raises(asyncio.CancelledError) as info:
            await sending
        assert isinstance(bytes_sent(info.value), int)


async def test_a_reader_that_never_waits_yields_to_the_loop(steps: str) -> None:
    a, b = asock.socketpair()
    with a, b:
        b._sock.sendall(b"x" * 1000)
        turns = 0

        async def other() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        before = turns
        for _ in range(500):
            assert await a.recv(1) == b"x"
        # A yield every _BUDGET calls.
        assert turns - before >= 500 // _async_socket._BUDGET - 1
        before = turns
        for _ in range(500):
            await a.sendall(b"y")
            assert b._sock.recv(10) == b"y"  # (one-byte sends fill an AF_UNIX buffer fast)
        assert turns - before >= 500 // _async_socket._BUDGET - 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_socket_bound_to_another_running_loop(steps: str) -> None:
    a, b = asock.socketpair()
    with a, b:
        await b.sendall(b"x")
        assert await a.recv(1) == b"x"  # binds this loop
        errors: list[BaseException] = []

        def elsewhere() -> None:
            async def use() -> None:
                for call in (a.recv(10), a.recv_into(bytearray(10)), a.sendall(b"y")):
                    try:
                        await call
                    except BaseException as exc:  # collected for the test thread
                        errors.append(exc)

            asyncio.run(use())

        thread = threading.Thread(target=elsewhere)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        assert [type(exc) for exc in errors] == [RuntimeError] * 3


async def test_a_reset_is_raised_bare(steps: str) -> None:
    a, b = asock.socketpair()
    with a:
        await b.sendall(b"x")
        assert await a.recv(1) == b"x"
        b.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_LINGER, struct.pack("ii", 1, 0))
        waiter = asyncio.create_task(a.recv(10))
        await settle(waiter)
        await a.sendall(b"unread")  # so the close resets the connection
        b.close()
        with pytest.raises((ConnectionResetError, OSError)) as info:
            await waiter
        assert info.value.__context__ is None and info.value.__cause__ is None


async def test_subclasses(steps: str) -> None:
    armed: list[int] = []

    class Plain(asock.socket):
        pass

    class Slotted(asock.socket):
        __slots__ = ("extra",)

    class OwnArm(asock.socket):
        def _arm(self, direction: int, what: Any) -> asyncio.Future[None]:
            armed.append(direction)
            return super()._arm(direction, what)

    for cls in (Plain, Slotted, OwnArm):
        a, b = stdlib.socketpair()
        sa, sb = cls(fileno=a.detach()), cls(fileno=b.detach())
        with sa, sb:
            for _ in range(3):
                waiter = asyncio.create_task(sa.recv(100))
                await settle(waiter)
                await sb.sendall(b"ping")
                assert await waiter == b"ping"
    assert armed and set(armed) == {READ}


async def test_a_subclass_overriding_recv_is_unaffected(steps: str) -> None:
    class Upper(asock.socket):
        async def recv(self, bufsize: int, flags: int = 0) -> bytes:
            return (await super().recv(bufsize, flags)).upper()

    a, b = stdlib.socketpair()
    sa, sb = Upper(fileno=a.detach()), Upper(fileno=b.detach())
    with sa, sb:
        await sb.sendall(b"ping")
        assert await sa.recv(100) == b"PING"


@pytest.mark.parametrize("mode", [None, 5.0, 0.0])
async def test_modes_and_flags_take_the_general_path(steps: str, mode: float | None) -> None:
    a, b = asock.socketpair()
    with a, b:
        a.settimeout(mode)
        await b.sendall(b"abc")
        await asyncio.sleep(0.01)
        assert await a.recv(10, stdlib.MSG_PEEK) == b"abc"
        buffer = bytearray(10)
        assert await a.recv_into(buffer, 2) == 2
        assert await a.recv(10) == b"c"
        if mode == 0.0:
            with pytest.raises(BlockingIOError):
                await a.recv(10)
        elif mode is not None:
            a.settimeout(0.05)
            with pytest.raises(TimeoutError):
                await a.recv(10)
        await a.sendall(b"back", 0)
        assert await b.recv(10) == b"back"
