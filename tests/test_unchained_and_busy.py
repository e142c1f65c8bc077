"""Two guarantees the other suites do not pin down.

Bare exceptions: an exception asock raises leaves as the stdlib's own does,
with no internal exception chained to it.  A stdlib ``recv`` that times out
raises a ``TimeoutError`` whose ``__context__`` is None; one chained to the
``BlockingIOError`` of the attempt before the wait would print "During
handling of the above exception, another exception occurred" and the
would-block's traceback as well.  Every call that can time out or give up is
checked, in both drivers and every mode, against the same call on a stdlib
socket as the reference.

Concurrent sends: on an ``asock.socket``, a send started while another
task's send is in progress raises ``asock.BusyError`` before it sends a byte,
even when the kernel has room for it at that moment, and even in the moment
after the first send was woken but before its task has run again.  (The
facade, used from threads, keeps the stdlib's behaviour and is not checked
here.)  A receive that finds data while another task waits to receive may
take it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket as stdlib
import tempfile
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from helpers import (
    Reader,
    Task,
    Tasks,
    abstract_name,
    backend,
    cancelled_exc,
    full_backlog_listener,
    settle,
    tasks,
    wait_for,
)

import asock
import asock.sync

TIMEOUT = 0.05
DONTWAIT: int = getattr(stdlib, "MSG_DONTWAIT", 0)
EAGAIN_TEXT = f"[Errno {errno.EAGAIN}] {os.strerror(errno.EAGAIN)}"
EINPROGRESS_TEXT = f"[Errno {errno.EINPROGRESS}] {os.strerror(errno.EINPROGRESS)}"


def assert_bare(exc: BaseException) -> None:
    """Nothing chained: no context, no cause, nothing suppressed."""
    assert exc.__context__ is None, f"{exc!r} is chained to {exc.__context__!r}"
    assert exc.__cause__ is None, f"{exc!r} has the cause {exc.__cause__!r}"
    assert exc.__suppress_context__ is False


def assert_same(exc: BaseException, reference: BaseException) -> None:
    """The same exception as the stdlib's: class, arguments, text, errno."""
    assert type(exc) is type(reference)
    assert exc.args == reference.args
    assert str(exc) == str(reference)
    assert getattr(exc, "errno", None) == getattr(reference, "errno", None)


def raised(call: Callable[[], Any]) -> BaseException:
    """What a stdlib or facade call raises (it must raise)."""
    try:
        call()
    except Exception as exc:
        return exc
    pytest.fail(f"{call!r} did not raise")


async def raised_async(call: Callable[[], Awaitable[Any]]) -> BaseException:
    """What an awaited call raises (it must raise)."""
    try:
        await call()
    except Exception as exc:
        return exc
    pytest.fail(f"{call!r} did not raise")


# -- rigs: a stdlib socket in the state where the call would block ---------------


@dataclass
class Rig:
    sock: stdlib.socket  # blocking; the driver under test takes over its descriptor
    address: Any = None  # where sendto and connect go
    file: Any = None  # what sendfile sends


def fill(sock: stdlib.socket) -> None:
    """Send until the kernel refuses even a single byte."""
    sock.setblocking(False)
    for size in (65536, 4096, 256, 1):
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.send(b"f" * size)
    sock.setblocking(True)


def nothing_to_read(stack: contextlib.ExitStack) -> Rig:
    a, b = stdlib.socketpair()
    stack.enter_context(b)
    return Rig(a)


def nobody_connecting(stack: contextlib.ExitStack) -> Rig:
    listener = stdlib.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return Rig(listener)


def full_stream(stack: contextlib.ExitStack) -> Rig:
    a, b = stdlib.socketpair()
    stack.enter_context(b)
    a.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, 4096)
    fill(a)
    file = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115  (closed with the rig)
    file.write(b"s" * 65536)
    file.seek(0)
    return Rig(a, file=file)


def full_datagram(stack: contextlib.ExitStack) -> Rig:
    """A datagram socket whose peer's queue is full: a ``sendto`` there would block."""
    name = abstract_name()
    b = stack.enter_context(stdlib.socket(stdlib.AF_UNIX, stdlib.SOCK_DGRAM))
    b.bind(name)
    a = stdlib.socket(stdlib.AF_UNIX, stdlib.SOCK_DGRAM)
    a.connect(name)
    fill(a)
    return Rig(a, address=name)


def full_backlog(stack: contextlib.ExitStack) -> Rig:
    listener = full_backlog_listener(stack)
    return Rig(stdlib.socket(), address=listener.getsockname())


# -- the calls: one form for every driver (the async one returns a coroutine) ------


@dataclass
class Case:
    rig: Callable[[contextlib.ExitStack], Rig]
    call: Callable[[Any, Rig, int], Any]
    flags: bool = True  # whether it takes MSG_* flags (so MSG_DONTWAIT applies)


CASES = {
    "recv": Case(nothing_to_read, lambda s, r, f: s.recv(16, f)),
    "recv_into": Case(nothing_to_read, lambda s, r, f: s.recv_into(bytearray(16), 16, f)),
    "recvfrom": Case(nothing_to_read, lambda s, r, f: s.recvfrom(16, f)),
    "recvfrom_into": Case(nothing_to_read, lambda s, r, f: s.recvfrom_into(bytearray(16), 16, f)),
    "recvmsg": Case(nothing_to_read, lambda s, r, f: s.recvmsg(16, 0, f)),
    "recvmsg_into": Case(nothing_to_read, lambda s, r, f: s.recvmsg_into([bytearray(16)], 0, f)),
    "accept": Case(nobody_connecting, lambda s, r, f: s.accept(), flags=False),
    "send": Case(full_stream, lambda s, r, f: s.send(b"x" * 1024, f)),
    "sendall": Case(full_stream, lambda s, r, f: s.sendall(b"x" * 1024, f)),
    "sendto": Case(full_datagram, lambda s, r, f: s.sendto(b"x", f, r.address)),
    "sendmsg": Case(full_stream, lambda s, r, f: s.sendmsg([b"x" * 1024], [], f)),
    "sendfile": Case(full_stream, lambda s, r, f: s.sendfile(r.file), flags=False),
    "connect": Case(full_backlog, lambda s, r, f: s.connect(r.address), flags=False),
}

#: How each mode is set: the socket's timeout and the call's flags.
MODES = {"timeout": (TIMEOUT, 0), "nonblocking": (0.0, 0), "dontwait": (None, DONTWAIT)}

PARAMS = [
    pytest.param(name, mode, id=f"{name}-{mode}")
    for name, case in CASES.items()
    for mode in MODES
    if mode != "dontwait" or case.flags
]


def check_expected(name: str, mode: str, exc: BaseException) -> None:
    """What the stdlib's rules say the call raises in this mode."""
    if mode == "timeout":
        assert type(exc) is TimeoutError
        assert exc.args == ("timed out",)
        assert str(exc) == "timed out"
    elif name == "sendfile":  # non-blocking mode: the stdlib refuses it outright
        assert type(exc) is ValueError
        assert str(exc) == "non-blocking sockets are not supported"
    elif name == "connect":
        assert type(exc) is BlockingIOError
        assert exc.errno == errno.EINPROGRESS
        assert str(exc) == EINPROGRESS_TEXT
    else:
        assert type(exc) is BlockingIOError
        assert exc.errno == errno.EAGAIN
        assert exc.args == (errno.EAGAIN, os.strerror(errno.EAGAIN))
        assert str(exc) == EAGAIN_TEXT


def check_progress(name: str, exc: BaseException) -> None:
    """asock's interrupted ``sendall`` and ``sendfile`` say how much went (the stdlib's cannot)."""
    if name in ("sendall", "sendfile") and not isinstance(exc, ValueError):
        assert getattr(exc, "bytes_sent", None) == 0  # the buffer was full: nothing fitted


def stdlib_reference(name: str, mode: str) -> BaseException:
    """The stdlib's own exception for the call, which must be bare too."""
    case = CASES[name]
    timeout, flags = MODES[mode]
    with contextlib.ExitStack() as stack:
        rig = case.rig(stack)
        sock = stack.enter_context(rig.sock)
        sock.settimeout(timeout)
        exc = raised(lambda: case.call(sock, rig, flags))
    assert_bare(exc)
    check_expected(name, mode, exc)
    return exc


# -- bare exceptions: the facade ---------------------------------------------------


@pytest.mark.parametrize(("name", "mode"), PARAMS)
def test_facade_exception_is_bare(name: str, mode: str) -> None:
    reference = stdlib_reference(name, mode)
    case = CASES[name]
    timeout, flags = MODES[mode]
    with contextlib.ExitStack() as stack:
        rig = case.rig(stack)
        sock = stack.enter_context(asock.sync.socket(fileno=rig.sock.detach()))
        sock.settimeout(timeout)
        exc = raised(lambda: case.call(sock, rig, flags))
    assert_bare(exc)
    check_expected(name, mode, exc)
    assert_same(exc, reference)
    check_progress(name, exc)


#: Receives that wait for readiness before they try, after a short receive.
SHORT_RECEIVE_ARGS: dict[str, tuple[Any, ...]] = {"recv": (16,), "recv_into": (bytearray(16),)}


@pytest.mark.parametrize("method", list(SHORT_RECEIVE_ARGS))
def test_facade_timeout_after_a_short_receive_is_bare(method: str) -> None:
    # A short receive makes the next one wait for readiness before it tries.
    a, b = asock.sync.socketpair()
    with a, b:
        a.settimeout(TIMEOUT)
        b.sendall(b"x")
        assert a.recv(16) == b"x"
        exc = raised(lambda: getattr(a, method)(*SHORT_RECEIVE_ARGS[method]))
        assert_bare(exc)
        check_expected(method, "timeout", exc)
        # The socket still works after it.
        b.sendall(b"y")
        assert a.recv(16) == b"y"


def test_facade_recv_timeout_prints_one_exception() -> None:
    a, b = asock.sync.socketpair()
    with a, b:
        a.settimeout(TIMEOUT)
        exc = raised(lambda: a.recv(1))
    text = "".join(traceback.format_exception(exc))
    assert "During handling" not in text
    assert "BlockingIOError" not in text
    assert text.rstrip().endswith("TimeoutError: timed out")


@pytest.mark.parametrize("timeout", [TIMEOUT, 0.0])
def test_facade_create_connection_error_is_bare(timeout: float) -> None:
    with contextlib.ExitStack() as stack:
        address = full_backlog_listener(stack).getsockname()
        reference = raised(lambda: stdlib.create_connection(address, timeout=timeout))
    with contextlib.ExitStack() as stack:
        address = full_backlog_listener(stack).getsockname()
        exc = raised(lambda: asock.sync.create_connection(address, timeout=timeout))
    assert_bare(reference)
    assert_bare(exc)
    check_expected("connect", "timeout" if timeout else "nonblocking", exc)
    assert_same(exc, reference)


@pytest.mark.parametrize("module", [stdlib, asock.sync], ids=["stdlib", "facade"])
def test_facade_connect_ex_bad_argument_is_bare(module: Any) -> None:
    with stdlib.socket() as native:
        reference = raised(lambda: native.connect_ex(("127.0.0.1", "x")))
    with module.socket() as sock:
        exc = raised(lambda: sock.connect_ex(("127.0.0.1", "x")))
    assert type(exc) is TypeError
    assert_bare(exc)
    assert_same(exc, reference)


# -- bare exceptions: the async socket -----------------------------------------------


@pytest.mark.parametrize(("name", "mode"), PARAMS)
async def test_async_exception_is_bare(name: str, mode: str) -> None:
    reference = stdlib_reference(name, mode)
    case = CASES[name]
    timeout, flags = MODES[mode]
    with contextlib.ExitStack() as stack:
        rig = case.rig(stack)
        sock = stack.enter_context(asock.socket(fileno=rig.sock.detach()))
        sock.settimeout(timeout)
        exc = await raised_async(lambda: case.call(sock, rig, flags))
    assert_bare(exc)
    check_expected(name, mode, exc)
    assert_same(exc, reference)
    check_progress(name, exc)


@pytest.mark.parametrize("method", list(SHORT_RECEIVE_ARGS))
async def test_async_timeout_after_a_short_receive_is_bare(method: str) -> None:
    a, b = asock.socketpair()
    with a, b:
        a.settimeout(TIMEOUT)
        await b.sendall(b"x")
        assert await a.recv(16) == b"x"
        exc = await raised_async(lambda: getattr(a, method)(*SHORT_RECEIVE_ARGS[method]))
        assert_bare(exc)
        check_expected(method, "timeout", exc)
        await b.sendall(b"y")
        assert await a.recv(16) == b"y"


@pytest.mark.parametrize("timeout", [TIMEOUT, 0.0])
async def test_async_create_connection_error_is_bare(timeout: float) -> None:
    with contextlib.ExitStack() as stack:
        address = full_backlog_listener(stack).getsockname()
        reference = raised(lambda: stdlib.create_connection(address, timeout=timeout))
    with contextlib.ExitStack() as stack:
        address = full_backlog_listener(stack).getsockname()
        exc = await raised_async(lambda: asock.create_connection(address, timeout=timeout))
    assert_bare(exc)
    check_expected("connect", "timeout" if timeout else "nonblocking", exc)
    assert_same(exc, reference)


async def test_async_connect_ex_bad_argument_is_bare() -> None:
    with stdlib.socket() as native:
        reference = raised(lambda: native.connect_ex(("127.0.0.1", "x")))
    with asock.socket() as sock:
        exc = await raised_async(lambda: sock.connect_ex(("127.0.0.1", "x")))
    assert type(exc) is TypeError
    assert_bare(exc)
    assert_same(exc, reference)


# -- concurrent sends --------------------------------------------------------------

TOTAL = 4_000_000
SECOND = b"B" * 10


@contextlib.contextmanager
def tcp_pair() -> Iterator[tuple[asock.socket, stdlib.socket, Any]]:
    """A connected loopback TCP pair with small buffers: an ``asock.socket`` and
    its stdlib peer (TCP, so that ``sendto`` works on the connected socket)."""
    with stdlib.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_RCVBUF, 32768)  # the accepted socket inherits it
        listener.listen()
        client = stdlib.socket()
        try:
            client.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, 32768)
            client.connect(listener.getsockname())
            peer, _ = listener.accept()
        except BaseException:
            client.close()
            raise
    with asock.socket(fileno=client.detach()) as sock, peer:
        yield sock, peer, peer.getsockname()


async def _send(sock: asock.socket, address: Any, file: Any) -> int:
    return await sock.send(SECOND)


async def _sendall(sock: asock.socket, address: Any, file: Any) -> int:
    await sock.sendall(SECOND)
    return len(SECOND)


async def _sendto(sock: asock.socket, address: Any, file: Any) -> int:
    return await sock.sendto(SECOND, address)


async def _sendmsg(sock: asock.socket, address: Any, file: Any) -> int:
    return await sock.sendmsg([SECOND])


async def _sendfile(sock: asock.socket, address: Any, file: Any) -> int:
    return await sock.sendfile(file)


SENDS: dict[str, Callable[[asock.socket, Any, Any], Awaitable[int]]] = {
    "send": _send,
    "sendall": _sendall,
    "sendto": _sendto,
    "sendmsg": _sendmsg,
    "sendfile": _sendfile,
}


def drain_some(peer: stdlib.socket, sock: asock.socket) -> bytes:
    """Read what the peer has, then block (without yielding to the loop) until
    the kernel has room for ``sock`` to send again; return what was read."""
    chunks = []
    peer.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        for _ in range(64):
            chunks.append(peer.recv(1 << 20))
    peer.setblocking(True)
    _, writable, _ = select.select([], [sock.fileno()], [], 5)
    assert writable, "the kernel has no room although the peer read everything"
    return b"".join(chunks)


# -- the moment a waiter was woken but has not run yet ----------------------------
#
# On asyncio the wake-up is the waiter's future completing, a loop iteration
# before its task's next step: the test spins until the future is done and is
# then in that moment, every time.  trio has no such future: a waiter is a
# task parked in trio's wait, which trio reschedules when the descriptor is
# ready and runs in the next batch, in an order trio randomizes within the
# batch.  The moment is seen there through the parked task's
# ``custom_sleep_data``, which trio sets to None when it reschedules a task:
# rescheduled while the waiter's stand-in is not done yet means woken, not yet
# run.  About half the time trio runs the waiter before the test's task, and
# the moment has passed by then; the caller then sets it up anew (a fresh
# round), so that the refusal is checked in the moment itself.

#: Rounds of setting up the moment on trio before giving up (each catches it with probability 1/2).
WOKEN_ROUNDS = 30


class Parked:
    """A task started with ``start`` and parked in an asock wait, seen from the test."""

    def __init__(self) -> None:
        self.trio_task: Any = None  # the trio task running it, under trio

    def start(self, tg: Tasks, fn: Callable[..., Awaitable[Any]], *args: Any) -> Task:
        async def noting_its_task() -> Any:
            if backend() == "trio":
                import trio

                self.trio_task = trio.lowlevel.current_task()
            return await fn(*args)

        return tg.spawn(noting_its_task)

    async def until_woken(self, waiter: Any) -> bool:
        """Run the loop until ``waiter`` (the socket's ``_reader`` or ``_writer``,
        taken while the task is parked) is woken; True if its task has not run
        since (always, on asyncio), False if trio ran it first."""
        assert waiter is not None and not waiter.done()
        if self.trio_task is None:  # asyncio: the future is done a step before the task runs
            while not waiter.done():
                await anyio.lowlevel.checkpoint()
            return True
        parked = object()
        self.trio_task.custom_sleep_data = parked
        with anyio.fail_after(10):
            while self.trio_task.custom_sleep_data is parked:
                await anyio.lowlevel.checkpoint()
        return not waiter.done()


@pytest.mark.parametrize("moment", ["waiting", "room", "woken"])
@pytest.mark.parametrize("second", list(SENDS))
@pytest.mark.parametrize("first", ["sendall", "sendfile"])
async def test_send_during_another_tasks_send_is_busy(first: str, second: str, moment: str) -> None:
    with tcp_pair() as (a, peer, address), tempfile.TemporaryFile() as big, tempfile.TemporaryFile() as small:
        big.write(b"A" * TOTAL)
        big.seek(0)
        small.write(SECOND)
        small.seek(0)
        async with tasks() as tg:
            parked = Parked()
            if first == "sendall":
                sending = parked.start(tg, a.sendall, b"A" * TOTAL)
            else:
                sending = parked.start(tg, a.sendfile, big)
            await settle(sending)
            head = b""
            for _ in range(WOKEN_ROUNDS):
                if moment in ("room", "woken"):
                    # The kernel has room now: the refusal cannot come from the kernel.
                    head += drain_some(peer, a)
                if moment != "woken":
                    break
                # The first send's wait is over (its future is done; under trio,
                # trio has rescheduled its task) but its task has not run again
                # yet: the send is still in progress.
                woken = a._writer
                if await parked.until_woken(woken):
                    assert a._writer is woken and not sending.done()
                    break
                # (trio ran the send first: it filled the room and waits again.)
                await settle(sending)
            else:
                pytest.fail(f"never saw the send woken but not yet run in {WOKEN_ROUNDS} rounds")
            # The message names the refused call and the one in progress.
            with pytest.raises(asock.BusyError, match=rf"^{second}\(\) .* waiting in {first}\(\) to send"):
                await SENDS[second](a, address, small)
            assert small.tell() == 0
            assert not sending.done()
            # The peer reads everything; the first send completes normally.
            reader = Reader(peer)
            assert await wait_for(sending, 30) == (TOTAL if first == "sendfile" else None)
        # Now a send works, after every byte of the first.
        sent = await SENDS[second](a, address, small)
        assert sent == len(SECOND)
        a.shutdown(stdlib.SHUT_WR)
        data = head + await anyio.to_thread.run_sync(reader.result)
        assert len(data) == TOTAL + len(SECOND)
        assert data.count(b"B") == len(SECOND)
        assert data == b"A" * TOTAL + SECOND


async def test_connect_in_progress_makes_a_send_busy() -> None:
    with contextlib.ExitStack() as stack:
        address = full_backlog_listener(stack).getsockname()
        sock = stack.enter_context(asock.socket())
        async with tasks() as tg:
            connecting = tg.spawn(sock.connect, address)
            await settle(connecting)
            with pytest.raises(asock.BusyError, match=r"^sendall\(\) .* waiting in connect\(\) to send"):
                await sock.sendall(b"x")
            connecting.cancel()
            with pytest.raises(cancelled_exc()):
                await connecting


@pytest.mark.parametrize("moment", ["waiting", "woken"])
async def test_receive_may_take_data_while_another_task_waits(moment: str) -> None:
    a, b = asock.socketpair()
    with a, b:
        async with tasks() as tg:
            for _ in range(WOKEN_ROUNDS):
                parked = Parked()
                waiting = parked.start(tg, a.recv, 16)
                await settle(waiting)
                await b.sendall(b"first")
                if moment != "woken":
                    break
                # The waiting receive was woken but its task has not run again yet.
                if await parked.until_woken(a._reader):
                    assert not waiting.done()
                    break
                # (trio ran the waiting task first: it took the data; a fresh round.)
                assert await wait_for(waiting, 10) == b"first"
            else:
                pytest.fail(f"never saw the receive woken but not yet run in {WOKEN_ROUNDS} rounds")
            # Data is there: this receive takes it, without a BusyError.
            assert await a.recv(16) == b"first"
            # The waiting task keeps waiting, and gets what comes next.
            await settle(waiting)
            await b.sendall(b"second")
            assert await wait_for(waiting, 10) == b"second"


async def test_receive_in_the_other_direction_is_not_busy() -> None:
    # A send in progress does not stop a receive on the same socket.
    with tcp_pair() as (a, peer, _):
        async with tasks() as tg:
            sending = tg.spawn(a.sendall, b"A" * TOTAL)
            await settle(sending)
            peer.sendall(b"hello")
            assert await wait_for(a.recv(16), 10) == b"hello"
            reader = Reader(peer)
            await wait_for(sending, 30)
        a.shutdown(stdlib.SHUT_WR)
        assert await anyio.to_thread.run_sync(reader.result) == b"A" * TOTAL
