"""The async socket's semantics beyond the path matrix: progress reporting
(``bytes_sent``), fairness, close, loop binding, errors, ResourceWarning and
repr."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import math
import os
import re
import socket as stdlib
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest
from conftest import LOOPS
from helpers import (
    Reader,
    backend,
    bytes_sent,
    cancelled_exc,
    fill_send_buffer,
    settle,
    tasks,
    ticks,
    wait_for,
    wrap,
)

import asock

# -- bytes_sent ----------------------------------------------------------------

PAYLOAD = os.urandom(512 * 1024)
READ_FIRST = 100_000  # what the peer reads before it stops reading


@contextlib.contextmanager
def stalled_pair() -> Iterator[tuple[asock.socket, stdlib.socket]]:
    """A sender with a small buffer and a stdlib peer."""
    a, peer = stdlib.socketpair()
    a.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, 4096)
    with wrap(a) as sock, peer:
        yield sock, peer


async def _sendall(sock: asock.socket, file: Any) -> None:
    await sock.sendall(PAYLOAD)


async def _sendfile(sock: asock.socket, file: Any) -> None:
    await sock.sendfile(file, 1000)


SENDERS = {"sendall": (_sendall, 0), "sendfile": (_sendfile, 1000)}


@pytest.mark.parametrize(
    "how",
    [
        "timeout",
        "cancel",
        "deadline",
        # asyncio.wait_for's TimeoutError, chained to the cancellation that carries bytes_sent.
        pytest.param("wait_for", marks=pytest.mark.asyncio_only),
    ],
)
@pytest.mark.parametrize("name", list(SENDERS))
async def test_bytes_sent_is_what_the_peer_gets(name: str, how: str) -> None:
    send, offset = SENDERS[name]
    with stalled_pair() as (sock, peer), tempfile.TemporaryFile() as file:
        file.write(PAYLOAD)
        file.seek(0)
        filled = await fill_send_buffer(sock)
        # The peer takes part of the transfer, then stops reading: the call is
        # cut while it is waiting, with a prefix of the payload sent.
        first = Reader(peer, limit=filled + READ_FIRST)
        if how == "timeout":
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError) as info:
                await send(sock, file)
            assert str(info.value) == "timed out"
        elif how == "cancel":
            async with tasks() as tg:
                task = tg.spawn(send, sock, file)
                await anyio.to_thread.run_sync(first.join, 20)
                await settle(task)
                task.cancel()
                with pytest.raises(cancelled_exc()) as info:
                    await task
        elif how == "deadline":
            with pytest.raises(TimeoutError) as info, anyio.fail_after(0.5):
                await send(sock, file)
        else:
            with pytest.raises(asyncio.TimeoutError) as info:
                await asyncio.wait_for(send(sock, file), 0.5)
        head = first.result()
        sent = bytes_sent(info.value)
        assert READ_FIRST <= sent < len(PAYLOAD) - offset
        if name == "sendfile":
            # Like the stdlib: the file is left just past the last byte sent.
            assert file.tell() == offset + sent
        sock.shutdown(stdlib.SHUT_WR)
        rest = Reader(peer).result()
        assert (head + rest)[filled:] == PAYLOAD[offset : offset + sent]


async def test_sendall_timeout_covers_the_whole_call() -> None:
    # A peer that keeps reading slowly makes every single wait short; the
    # timeout still bounds the call as a whole.
    with stalled_pair() as (sock, peer):
        await fill_send_buffer(sock)
        sock.settimeout(0.3)
        stop = False

        async def trickle() -> None:
            peer.setblocking(False)
            while not stop:
                with contextlib.suppress(BlockingIOError):
                    peer.recv(1024)
                await anyio.sleep(0.01)

        async with tasks() as tg:
            reader = tg.spawn(trickle)
            try:
                with pytest.raises(TimeoutError) as info:
                    await sock.sendall(PAYLOAD)
            finally:
                stop = True
                await reader
        assert 0 < bytes_sent(info.value) < len(PAYLOAD)


# -- fairness ------------------------------------------------------------------


async def test_fast_reader_lets_other_tasks_run() -> None:
    a, b = asock.socketpair()
    with a, b:
        total = 100_000
        b._sock.sendall(b"x" * total)  # pre-filled: every recv completes at once
        ran_at: list[int] = []
        got = 0

        async def other() -> None:
            ran_at.append(got)

        async with tasks() as tg:
            task = tg.spawn(other)
            while got < total:
                got += len(await a.recv(100))
            await task
        assert ran_at and ran_at[0] < total, "the reader starved the other task"


async def test_fast_writer_lets_other_tasks_run() -> None:
    # UDP over loopback never waits to send (a full receiver drops instead),
    # so every sendall completes at once.
    with asock.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM) as a, stdlib.socket(
        stdlib.AF_INET, stdlib.SOCK_DGRAM
    ) as b:
        b.bind(("127.0.0.1", 0))
        await a.connect(b.getsockname())
        ran_at: list[int] = []
        sent = 0

        async def other() -> None:
            ran_at.append(sent)

        async with tasks() as tg:
            task = tg.spawn(other)
            while not ran_at and sent < 100_000:
                await a.sendall(b"y")
                sent += 1
            await task
        assert ran_at and ran_at[0] < 100_000, "the writer starved the other task"
        assert b.recv(10) == b"y"


async def test_busy_is_per_direction_and_across_operations() -> None:
    a, b = asock.socketpair()
    with a, b:
        async with tasks() as tg:
            receiving = tg.spawn(a.recv, 10)
            await settle(receiving)
            # The message names both the refused call and the one in progress.
            with pytest.raises(asock.BusyError, match=r"recvmsg_into\(\).*waiting in recv\(\) to receive"):
                await a.recvmsg_into([bytearray(4)])
            # The other direction is free: a waiting reader does not block a send.
            await a.sendall(b"ping")
            assert await b.recv(10) == b"ping"
            await fill_send_buffer(a)
            sending = tg.spawn(a.sendall, b"x" * 1000)
            await settle(sending)
            with pytest.raises(asock.BusyError, match=r"sendmsg\(\).*waiting in sendall\(\) to send"):
                await a.sendmsg([b"y"])
            await b.sendall(b"pong")
            assert await wait_for(receiving, 5) == b"pong"
            sending.cancel()
            with pytest.raises(cancelled_exc()):
                await sending


# -- close ---------------------------------------------------------------------


def test_close_is_idempotent_and_fileno_is_minus_one() -> None:
    sock = asock.socket()
    assert sock.fileno() >= 0
    sock.close()
    sock.close()
    assert sock.fileno() == -1


PLAIN_CALLS = [
    ("getsockname", ()),
    ("getpeername", ()),
    ("bind", (("127.0.0.1", 0),)),
    ("listen", ()),
    ("shutdown", (stdlib.SHUT_RDWR,)),
    ("getsockopt", (stdlib.SOL_SOCKET, stdlib.SO_TYPE)),
    ("setsockopt", (stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR, 1)),
    ("get_inheritable", ()),
    ("set_inheritable", (False,)),
    ("dup", ()),
]


@pytest.mark.parametrize(("name", "args"), PLAIN_CALLS, ids=[c[0] for c in PLAIN_CALLS])
def test_plain_call_on_closed_socket_is_ebadf(name: str, args: tuple[Any, ...]) -> None:
    sock = asock.socket()
    sock.close()
    with pytest.raises(OSError) as info:
        getattr(sock, name)(*args)
    assert info.value.errno == errno.EBADF
    reference = stdlib.socket()
    reference.close()
    with pytest.raises(OSError) as expected:
        getattr(reference, name)(*args)
    assert type(info.value) is type(expected.value)
    assert str(info.value) == str(expected.value)


def _default_loop() -> asyncio.BaseEventLoop | None:
    """The running loop if it is asyncio's default one (whose selector can be asked about a descriptor)."""
    if backend() != "asyncio":
        return None
    loop = asyncio.get_running_loop()
    return loop if isinstance(loop, asyncio.BaseEventLoop) else None


def _trio_waits() -> tuple[int, int] | None:
    """Under trio, how many tasks wait to read and to write (trio's own statistics; trio
    waits on a descriptor of its own too), else None."""
    if backend() != "trio":
        return None
    import trio

    io = trio.lowlevel.current_statistics().io_statistics
    return io.tasks_waiting_read, io.tasks_waiting_write


async def test_close_unregisters_the_descriptor() -> None:
    a, b = asock.socketpair()
    waits = _trio_waits()
    with b:
        fd = a.fileno()
        async with tasks() as tg:
            reader = tg.spawn(a.recv, 10)
            await fill_send_buffer(a)
            writer = tg.spawn(a.send, b"z")
            await settle(reader, writer)
            a.close()
            for task in (reader, writer):
                with pytest.raises(OSError) as info:
                    await task
                assert info.value.errno == errno.EBADF
        # Nothing of the old socket is left in the loop's selector (only the
        # default loop reports whether there was something to remove).  Under
        # trio, no wait of it is left in trio's I/O manager: trio's count of
        # waiting tasks is back where it was (that trio is told before the
        # descriptor closes: test_unregistered_before_os_close_trio).
        loop = _default_loop()
        if loop is not None:
            assert loop.remove_reader(fd) is False
            assert loop.remove_writer(fd) is False
        assert _trio_waits() == waits


async def test_reused_descriptor_gets_no_stale_events() -> None:
    a, b = asock.socketpair()
    keep = a.dup()  # keeps the old open file alive after close
    with b, keep:
        old_fd = a.fileno()
        async with tasks() as tg:
            waiter = tg.spawn(a.recv, 10)
            await settle(waiter)
            a.close()
            with pytest.raises(OSError):
                await waiter
        c, d = asock.socketpair()
        with c, d:
            if old_fd not in (c.fileno(), d.fileno()):
                pytest.skip("the kernel did not reuse the descriptor number")
            new = c if c.fileno() == old_fd else d
            other = d if new is c else c
            async with tasks() as tg:
                fresh = tg.spawn(new.recv, 10)
                await settle(fresh)
                b._sock.sendall(b"old")  # readable on the old open file only
                await anyio.sleep(0.05)
                assert not fresh.done(), "the new socket's waiter fired on the old socket's event"
                await other.sendall(b"new")
                assert await wait_for(fresh, 5) == b"new"
        assert keep._sock.recv(10) == b"old"


# asyncio_only: under trio, asock keeps no registration between waits (each
# wait is trio's own wait_readable / wait_writable), so trio has none to drop.
@pytest.mark.asyncio_only
@pytest.mark.parametrize("drained", [False, True], ids=["try-first", "wait-first"])
async def test_registration_dropped_by_the_loop_is_renewed(drained: bool) -> None:
    """A watch the loop lets go of on its own (uvloop does after POLLERR) is
    never waited on: the next wait registers afresh.  Simulated here by
    removing the reader behind the socket's back, with and without the
    wait-before-trying of a receive that follows a short read."""
    loop = asyncio.get_running_loop()
    a, b = asock.socketpair()
    with a, b:
        first = asyncio.create_task(a.recv(10))
        await settle(first)  # registered, and stays registered after the wake-up
        await b.sendall(b"1")
        assert await first == b"1"
        if not drained:
            a._hint = 0
        loop.remove_reader(a.fileno())
        second = asyncio.create_task(a.recv(10))
        await settle(second)
        await b.sendall(b"2")
        assert await asyncio.wait_for(second, 5) == b"2"


@pytest.mark.asyncio_only  # the default loop's remove_reader; trio: the test below
async def test_unregistered_before_os_close(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.BaseEventLoop):
        pytest.skip("only the default loop's methods can be wrapped")
    states: list[bool] = []
    original = loop.remove_reader

    def remove_reader(fd: int) -> bool:
        try:
            os.fstat(fd)
            states.append(True)
        except OSError:
            states.append(False)
        return original(fd)

    monkeypatch.setattr(loop, "remove_reader", remove_reader)
    a, b = asock.socketpair()
    with b:
        waiter = asyncio.create_task(a.recv(10))
        await settle(waiter)
        a.close()
        with pytest.raises(OSError):
            await waiter
    assert states and all(states), "the descriptor was closed before it left the selector"


async def test_unregistered_before_os_close_trio(monkeypatch: pytest.MonkeyPatch) -> None:
    """trio's counterpart of the test above: trio is told a descriptor is
    closing (``trio.lowlevel.notify_closing``, which wakes its waiters and
    drops it from trio's epoll set) while the descriptor is still open."""
    if backend() != "trio":
        pytest.skip("trio's counterpart of test_unregistered_before_os_close")
    import trio

    states: list[bool] = []
    original = trio.lowlevel.notify_closing

    def notify_closing(fd: Any) -> None:
        try:
            os.fstat(fd)
            states.append(True)
        except OSError:
            states.append(False)
        original(fd)

    monkeypatch.setattr(trio.lowlevel, "notify_closing", notify_closing)
    a, b = asock.socketpair()
    with b:
        async with tasks() as tg:
            waiter = tg.spawn(a.recv, 10)
            await settle(waiter)
            a.close()
            with pytest.raises(OSError):
                await waiter
    assert states and all(states), "the descriptor was closed before trio was told"


async def test_detach_wakes_waiters() -> None:
    a, b = asock.socketpair()
    waits = _trio_waits()
    with b:
        async with tasks() as tg:
            waiter = tg.spawn(a.recv, 10)
            await settle(waiter)
            fd = a.detach()
            try:
                # Two loop iterations: one to wake the waiter, one for it to
                # run.  Under trio too: detach() has trio reschedule the waiter
                # at once, and it runs in the next batch whatever the order.
                await ticks(2)
                assert waiter.done()
                with pytest.raises(OSError) as info:
                    waiter.result()
                assert info.value.errno == errno.EBADF
                assert a.fileno() == -1
                loop = _default_loop()
                if loop is not None:
                    assert loop.remove_reader(fd) is False
                assert _trio_waits() == waits
                # The descriptor itself is intact and still connected, and can
                # be waited on anew.
                with asock.socket(fileno=fd) as again:
                    fd = -1
                    await b.sendall(b"hi")
                    assert await again.recv(10) == b"hi"
                    receiving = tg.spawn(again.recv, 10)
                    await settle(receiving)
                    await b.sendall(b"again")
                    assert await wait_for(receiving, 5) == b"again"
            finally:
                if fd >= 0:
                    os.close(fd)


async def test_async_with_closes() -> None:
    async with asock.socket() as sock:
        assert sock.fileno() >= 0
    assert sock.fileno() == -1


# -- loops ---------------------------------------------------------------------


def _run_in_new(runner: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a new event loop of its own: asyncio's (``asyncio.run``) or a trio run."""
    if runner == "asyncio":
        return asyncio.run(fn(*args))
    import trio

    return trio.run(fn, *args)


#: The event loops a socket can be used from besides the test's own.
RUNNERS = ["asyncio", "trio"]


@pytest.mark.parametrize("second", RUNNERS)
async def test_second_live_loop_is_refused(second: str) -> None:
    # Bound to the test's loop (on each backend), used from another one that
    # runs in another thread meanwhile: an asyncio loop or a trio run.  Under
    # trio with a second trio run, that is two trio runs in two threads.
    a, b = asock.socketpair()
    with a, b:
        async with tasks() as tg:
            waiter = tg.spawn(a.recv, 1)
            await settle(waiter)  # waited on this (running) loop: bound to it
            await b.sendall(b"1")
            assert await waiter == b"1"

        def elsewhere() -> None:
            async def use() -> None:
                await a.recv(1)

            _run_in_new(second, use)

        with pytest.raises(RuntimeError, match="bound to event loop") as info:
            await anyio.to_thread.run_sync(elsewhere)
        assert not isinstance(info.value, asock.BusyError)
        # Still fine on its own loop.
        await b.sendall(b"2")
        assert await a.recv(1) == b"2"


@pytest.mark.parametrize("first_loop", sorted(LOOPS))
@pytest.mark.parametrize("call", ["recv", "sendall"])
def test_open_loop_of_the_same_thread_is_refused(first_loop: str, call: str) -> None:
    """Bound to a loop that is open but not running, in this very thread: another
    loop (or a trio run) is refused, including on paths that never wait (recv
    with data there, a sendall that fits)."""
    a, b = asock.socketpair()
    first = LOOPS[first_loop]()
    try:
        with a, b:

            async def wait_once() -> bytes:
                waiter = asyncio.create_task(a.recv(1))
                await settle(waiter)
                await b.sendall(b"1")
                return await waiter

            assert first.run_until_complete(wait_once()) == b"1"  # a is bound to `first`
            b._sock.sendall(b"2")

            async def use() -> None:
                await (a.recv(1) if call == "recv" else a.sendall(b"x"))

            for other in LOOPS.values():
                with pytest.raises(RuntimeError, match="bound to event loop"):
                    _run_on(other, use())
            # A trio run in this thread meanwhile is refused too.
            with pytest.raises(RuntimeError, match="bound to event loop"):
                _run_in_new("trio", use)
            assert first.run_until_complete(a.recv(1)) == b"2"  # nothing was consumed
            first.run_until_complete(a.sendall(b"y"))
            assert b._sock.recv(1) == b"y"
            a.close()  # unregisters through `first`, which is still open
    finally:
        first.close()


def _run_on(factory: Any, coro: Any) -> Any:
    loop = factory()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@pytest.mark.parametrize("first", RUNNERS)
async def test_socket_moves_on_after_its_loop_closed(first: str) -> None:
    a, b = asock.socketpair()
    with a, b:
        b._sock.sendall(b"1")
        # The first loop (an asyncio loop, or a trio run), run in a thread, then closed.
        assert await anyio.to_thread.run_sync(_run_in_new, first, a.recv, 1) == b"1"
        async with tasks() as tg:
            waiter = tg.spawn(a.recv, 1)
            await settle(waiter)
            await b.sendall(b"2")
            assert await waiter == b"2"


# -- errors --------------------------------------------------------------------


def _closed_port() -> int:
    with stdlib.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_connection_refused() -> None:
    port = _closed_port()
    with asock.socket() as sock, pytest.raises(ConnectionRefusedError) as info:
        await sock.connect(("127.0.0.1", port))
    with stdlib.socket() as reference, pytest.raises(ConnectionRefusedError) as expected:
        reference.connect(("127.0.0.1", port))
    assert info.value.errno == errno.ECONNREFUSED
    assert str(info.value) == str(expected.value)
    with asock.socket() as sock:
        assert await sock.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


@pytest.mark.parametrize("call", ["sendall", "sendfile"])
async def test_a_send_cancelled_before_its_first_byte_carries_bytes_sent(call: str, tmp_path: Any) -> None:
    """Cancelled in the fairness yield a busy socket makes before it sends: the
    exception still says how much went (nothing), as any that ends the call."""
    (tmp_path / "payload").write_bytes(b"z" * 100)
    a, b = asock.socketpair()
    with a, b, open(tmp_path / "payload", "rb") as file:
        a._ticks = 1 << 20  # the budget is spent: the call yields first
        caught: BaseException | None = None
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                if call == "sendall":
                    await a.sendall(b"z" * 100)
                else:
                    await a.sendfile(file)
            except cancelled_exc() as exc:
                caught = exc
                raise
        assert scope.cancelled_caught
        assert caught is not None and bytes_sent(caught) == 0
        assert file.tell() == 0
        await a.sendall(b"next")
        assert await b.recv(100) == b"next"


async def test_oversized_receive_fails_at_once_after_a_short_read() -> None:
    """A short read makes the next receive wait before trying; a size the native
    call refuses must still fail at once (as the stdlib's), not after a wait."""
    a, b = asock.socketpair()
    with a, b:
        await b.sendall(b"x")
        assert await a.recv(10) == b"x"  # short: the next receive would wait first
        with pytest.raises(OverflowError), anyio.fail_after(5):
            await a.recv(sys.maxsize + 1)
        with pytest.raises(OverflowError), anyio.fail_after(5):
            await a.recv_into(bytearray(4), sys.maxsize + 1)


@pytest.mark.parametrize("call", ["send", "sendall", "sendmsg"])
async def test_broken_pipe(call: str) -> None:
    a, b = asock.socketpair()
    with a:
        b.close()
        with pytest.raises(BrokenPipeError) as info:
            if call == "sendmsg":
                await a.sendmsg([b"x"])
            else:
                await getattr(a, call)(b"x")
        assert info.value.errno == errno.EPIPE


@pytest.mark.parametrize("runner", RUNNERS)
def test_broken_pipe_does_not_kill_with_sigpipe(runner: str) -> None:
    # Python ignores SIGPIPE at start-up, but programs that restore the
    # default (command-line tools do) must still get BrokenPipeError.
    program = textwrap.dedent(
        """
        import signal, asock
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        async def main():
            a, b = asock.socketpair()
            b.close()
            for call in (a.send, a.sendall):
                try:
                    await call(b"x" * 100)
                except BrokenPipeError:
                    print("BrokenPipeError")
            a.close()
        """
    ) + ("import asyncio; asyncio.run(main())\n" if runner == "asyncio" else "import trio; trio.run(main)\n")
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, cwd=os.getcwd()
    )
    assert done.returncode == 0, f"died with {done.returncode}: {done.stderr}"
    assert done.stdout.split() == ["BrokenPipeError", "BrokenPipeError"]


BAD_ARGS = [
    ("recv", (-1,)),
    ("recv", ("x",)),
    ("recvfrom", (-1,)),
    ("recvmsg", (-1,)),
    ("recvmsg", (1, -1)),
    ("recv_into", (bytearray(4), -1)),
    ("recv_into", (bytearray(4), 10)),
    ("recv_into", (b"immutable",)),
    ("recvfrom_into", (bytearray(4), 10)),
    ("recvfrom_into", (bytearray(4), -1)),
    ("send", ("text",)),
    ("sendall", ("text",)),
    ("sendmsg", (["text"],)),
    ("sendto", (b"x", "not an address"), stdlib.SOCK_DGRAM),
    ("sendto", (b"x", ("127.0.0.1", -1)), stdlib.SOCK_DGRAM),
    ("sendto", (b"x", "flags", ("127.0.0.1", 9)), stdlib.SOCK_DGRAM),
    ("sendto", (b"x", ("::1", 9)), stdlib.SOCK_DGRAM),
    ("connect", ("not an address",), stdlib.SOCK_STREAM),
    ("connect", (("127.0.0.1", 70000),), stdlib.SOCK_STREAM),
    ("connect_ex", (("127.0.0.1", 70000),), stdlib.SOCK_STREAM),
    ("connect", (("127.0.0.1",),), stdlib.SOCK_STREAM),
]


@pytest.mark.parametrize("case", BAD_ARGS, ids=[f"{c[0]}{c[1]!r}" for c in BAD_ARGS])
async def test_bad_arguments_match_the_stdlib(case: tuple[Any, ...]) -> None:
    name, args, *kind = case

    def pair(module: Any) -> tuple[Any, Any]:
        if kind:  # a fresh AF_INET socket of that type, and a dummy second one
            return module.socket(stdlib.AF_INET, kind[0]), module.socket(stdlib.AF_INET, kind[0])
        return module.socketpair()  # type: ignore[no-any-return]

    a, b = pair(stdlib)
    with a, b:
        a.setblocking(False)
        with pytest.raises(Exception) as expected:
            getattr(a, name)(*args)
    assert isinstance(expected.value, (TypeError, ValueError, OverflowError, OSError))
    c, d = pair(asock)
    with c, d, pytest.raises(type(expected.value)) as info:
        await getattr(c, name)(*args)
    assert type(info.value) is type(expected.value)
    assert str(info.value) == str(expected.value)


@pytest.mark.parametrize("value", [-1, -0.5, math.nan, "1", 1e300, 2**70])
def test_settimeout_rejects_like_the_stdlib(value: Any) -> None:
    with stdlib.socket() as reference, pytest.raises(Exception) as expected:
        reference.settimeout(value)
    with asock.socket() as sock, pytest.raises(type(expected.value)) as info:
        sock.settimeout(value)
    assert str(info.value) == str(expected.value)


def test_timeout_modes() -> None:
    with asock.socket() as sock:
        assert sock.gettimeout() is None and sock.getblocking()
        sock.settimeout(2)
        assert sock.gettimeout() == 2.0 and sock.getblocking()
        sock.setblocking(False)
        assert sock.gettimeout() == 0.0 and not sock.getblocking()
        sock.setblocking(True)
        assert sock.gettimeout() is None
        # The descriptor itself never blocks, whatever the mode.
        assert os.get_blocking(sock.fileno()) is False
        assert sock.get_inheritable() is False


async def test_default_timeout_applies() -> None:
    previous = stdlib.getdefaulttimeout()
    asock.setdefaulttimeout(0.05)
    try:
        a, b = asock.socketpair()
    finally:
        asock.setdefaulttimeout(previous)
    with a, b:
        assert a.gettimeout() == 0.05
        with pytest.raises(TimeoutError, match="timed out"):
            await a.recv(1)
        await b.sendall(b"late")
        assert await a.recv(10) == b"late"


# -- ResourceWarning, repr ---------------------------------------------------------


def test_unclosed_socket_warns() -> None:
    sock = asock.socket()
    fd = sock.fileno()
    with pytest.warns(ResourceWarning, match="unclosed"):
        del sock
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)  # ... and the descriptor was closed


def _normalise(text: str) -> str:
    text = text.replace("<socket.socket", "<asock.socket", 1)
    text = re.sub(r"fd=-?\d+", "fd=N", text)
    return re.sub(r"'127\.0\.0\.1', \d+", "'127.0.0.1', PORT", text)


async def test_repr_like_the_stdlib() -> None:
    # The same sockets made the same way with the stdlib give the same repr.
    with stdlib.create_server(("127.0.0.1", 0)) as ref_server, stdlib.socket() as ref_client:
        ref_client.connect(ref_server.getsockname())
        ref_conn, _ = ref_server.accept()
        with ref_conn, asock.create_server(("127.0.0.1", 0)) as server, asock.socket() as client:
            await client.connect(server.getsockname())
            conn, _ = await server.accept()
            with conn:
                for ours, theirs in ((server, ref_server), (client, ref_client), (conn, ref_conn)):
                    assert _normalise(repr(ours)) == _normalise(repr(theirs))
                    assert f"fd={ours.fileno()}," in repr(ours)
                assert "raddr=" in repr(client) and "laddr=" in repr(client)
                assert repr(client).startswith("<asock.socket fd=")
        ref_client.close()
        assert _normalise(repr(client)) == _normalise(repr(ref_client))
        assert repr(client).startswith("<asock.socket [closed] fd=-1, ")


def test_pickling_refused_like_the_stdlib() -> None:
    import pickle

    with stdlib.socket() as reference, pytest.raises(TypeError) as expected:
        pickle.dumps(reference)
    with asock.socket() as sock, pytest.raises(TypeError) as info:
        pickle.dumps(sock)
    assert str(info.value) == str(expected.value)


@pytest.mark.asyncio_only  # about asyncio's loop.sock_* methods
async def test_needs_none_of_the_loops_sock_methods(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # uvloop lacks several loop.sock_* methods; asock must work without any.
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.BaseEventLoop):
        pytest.skip("only the default loop's methods can be replaced")

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("asock used a loop.sock_* method")

    for name in dir(loop):
        if name.startswith("sock_"):
            monkeypatch.setattr(loop, name, forbidden)
    with asock.create_server(("127.0.0.1", 0)) as server, asock.socket() as client:
        accepting = asyncio.create_task(server.accept())
        await settle(accepting)
        await client.connect(server.getsockname())
        conn, _ = await accepting
        with conn:
            receiving = asyncio.create_task(conn.recv(100))
            await settle(receiving)
            await client.sendall(b"hello")
            assert await receiving == b"hello"
            (tmp_path / "f").write_bytes(b"file body")
            with open(tmp_path / "f", "rb") as file:
                assert await client.sendfile(file) == 9
            assert await conn.recv(100) == b"file body"
    with asock.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM) as a, asock.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        receiving = asyncio.create_task(a.recvfrom(100))
        await settle(receiving)
        await b.sendto(b"dgram", a.getsockname())
        data, _ = await receiving
        assert data == b"dgram"
