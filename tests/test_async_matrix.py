"""The path matrix: every I/O coroutine of ``asock.socket`` down every path.

Paths (one test function each): completes at once; would block, then
completes; times out; non-blocking mode; cancelled (the task cancelled, and a
cancel scope's deadline); closed by another task while waiting; a second
waiter in the same direction.  After every interruption the rig checks that nothing
was lost and the socket still works.

``OPS`` is the table: for each coroutine, the *rig* that knows how to make it
block and how to let it complete, and how to call it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket as stdlib
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from helpers import (
    FILLER,
    Reader,
    abstract_name,
    bytes_sent,
    cancelled_exc,
    fill_send_buffer,
    full_backlog_listener,
    settle,
    tasks,
    ticks,
    wait_for,
)

import asock

SMALL = os.urandom(512)  # fits in any send buffer: completes at once
LARGE = os.urandom(256 * 1024)  # many times the send buffer: has to wait


# -- rigs: how to make an operation block, and how to let it complete ---------------


class Rig:
    """One socket under test (``sock``) and the peer that controls it."""

    sock: asock.socket
    payload: bytes = SMALL

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack

    async def open(self, blocked: bool) -> None:
        raise NotImplementedError

    def unblock(self) -> None:
        """Make the blocked operation able to complete."""
        raise NotImplementedError

    async def check(self, result: Any) -> None:
        """The completed operation did what it should."""
        raise NotImplementedError

    async def check_intact(self, exc: BaseException, call: Callable[[Rig], Awaitable[Any]]) -> None:
        """After an interrupted call: nothing lost, the socket still works."""
        raise NotImplementedError


class StreamReceiver(Rig):
    """Blocks: the peer has sent nothing.  Completes: the peer sends ``payload`` (once)."""

    sent = False

    async def open(self, blocked: bool) -> None:
        a, self.peer = stdlib.socketpair()
        self.stack.enter_context(self.peer)
        self.sock = self.stack.enter_context(asock.socket(fileno=a.detach()))
        if not blocked:
            self.unblock()

    def unblock(self) -> None:
        if not self.sent:
            self.peer.sendall(self.payload)
            self.sent = True

    async def check(self, result: Any) -> None:
        assert result == self.payload

    async def check_intact(self, exc: BaseException, call: Callable[[Rig], Awaitable[Any]]) -> None:
        self.unblock()
        assert await call(self) == self.payload
        # ... and exactly once.
        self.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            await call(self)
        self.sock.setblocking(True)


class StreamSender(Rig):
    """Blocks: the send buffer is full.  Completes: the peer reads to EOF."""

    reader: Reader | None = None
    filled = 0

    async def open(self, blocked: bool) -> None:
        a, self.peer = stdlib.socketpair()
        self.stack.enter_context(self.peer)
        a.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, 4096)
        self.sock = self.stack.enter_context(asock.socket(fileno=a.detach()))
        if blocked:
            self.filled = await fill_send_buffer(self.sock)
        self.stack.callback(self._join)

    def _join(self) -> None:
        if self.reader is not None:
            self.peer.shutdown(stdlib.SHUT_RDWR)
            self.reader.join(10)

    def unblock(self) -> None:
        if self.reader is None:
            self.reader = Reader(self.peer)

    def received(self) -> bytes:
        self.unblock()
        self.sock.shutdown(stdlib.SHUT_WR)
        assert self.reader is not None
        data = self.reader.result()
        assert data[: self.filled] == FILLER * self.filled
        return data[self.filled :]

    async def check(self, result: Any) -> None:
        assert 0 < result <= len(self.payload)
        assert self.received() == self.payload[:result]

    async def check_intact(self, exc: BaseException, call: Callable[[Rig], Awaitable[Any]]) -> None:
        # A single send that was interrupted sent nothing; sendall/sendfile
        # report their progress, and the peer must see exactly that much.
        sent = bytes_sent(exc) if isinstance(self, WholeSender) else 0
        self.unblock()
        await self.sock.sendall(b"tail")
        assert self.received() == self.payload[:sent] + b"tail"

    def payload_file(self) -> Any:
        file = self.stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115  (closed with the rig)
        file.write(self.payload)
        file.seek(0)
        return file


class WholeSender(StreamSender):
    """Like StreamSender, for calls that send everything (sendall, sendfile)."""

    async def open(self, blocked: bool) -> None:
        self.payload = LARGE if blocked else SMALL
        await super().open(blocked)

    async def check(self, result: Any) -> None:
        assert result == len(self.payload)
        assert self.received() == self.payload


class DatagramSender(Rig):
    """Blocks: the receiver's datagram queue is full.  Completes: it is drained.

    The sender is connected to the receiver so that poll() reports it writable
    only once the receiver has room (Linux ties that wake-up to the peer).
    """

    filled = 0

    async def open(self, blocked: bool) -> None:
        self.address = abstract_name()
        self.peer = self.stack.enter_context(stdlib.socket(stdlib.AF_UNIX, stdlib.SOCK_DGRAM))
        self.peer.bind(self.address)
        self.sock = self.stack.enter_context(asock.socket(stdlib.AF_UNIX, stdlib.SOCK_DGRAM))
        await self.sock.connect(self.address)
        if blocked:
            self.sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    await self.sock.sendto(FILLER, self.address)
                    self.filled += 1
            self.sock.setblocking(True)

    def unblock(self) -> None:
        self.peer.setblocking(False)
        for _ in range(self.filled):
            assert self.peer.recv(100) == FILLER
        self.filled = 0
        self.peer.setblocking(True)

    async def check(self, result: Any) -> None:
        assert result == len(self.payload)
        self.unblock()
        self.peer.settimeout(5)
        assert self.peer.recv(4096) == self.payload

    async def check_intact(self, exc: BaseException, call: Callable[[Rig], Awaitable[Any]]) -> None:
        self.unblock()  # exactly the filler: the interrupted sendto sent nothing
        with pytest.raises(BlockingIOError):
            self.peer.setblocking(False)
            self.peer.recv(4096)
        await self.sock.sendto(b"tail", self.address)
        self.peer.settimeout(5)
        assert self.peer.recv(4096) == b"tail"


class Acceptor(Rig):
    """Blocks: nobody connects.  Completes: a client connects."""

    async def open(self, blocked: bool) -> None:
        self.sock = self.stack.enter_context(asock.create_server(("127.0.0.1", 0)))
        self.clients: list[stdlib.socket] = []
        if not blocked:
            self.unblock()

    def unblock(self) -> None:
        client = self.stack.enter_context(stdlib.create_connection(self.sock.getsockname()))
        self.clients.append(client)

    async def check(self, result: Any) -> None:
        conn, address = result
        with conn:
            assert isinstance(conn, asock.socket)
            assert address == self.clients[0].getsockname()
            assert conn.getpeername() == address
            assert conn.gettimeout() == stdlib.getdefaulttimeout()

    async def check_intact(self, exc: BaseException, call: Callable[[Rig], Awaitable[Any]]) -> None:
        if not self.clients:
            self.unblock()
        self.sock.settimeout(None)
        await self.check(await wait_for(call(self), 10))


class Connector(Rig):
    """Blocks: the listener's backlog is full.  Completes: the backlog grows.

    Once unblocked, the client's retransmitted SYN gets through about a second
    later (Linux's initial RTO).
    """

    async def open(self, blocked: bool) -> None:
        if blocked:
            self.listener = full_backlog_listener(self.stack)
        else:
            self.listener = self.stack.enter_context(stdlib.socket())
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(8)
        self.address = self.listener.getsockname()
        self.sock = self.stack.enter_context(asock.socket())

    def unblock(self) -> None:
        self.listener.listen(64)

    async def check(self, result: Any) -> None:
        assert result in (None, 0)  # connect() / connect_ex()
        assert self.sock.getpeername() == self.address

    async def check_intact(self, exc: BaseException, call: Callable[[Rig], Awaitable[Any]]) -> None:
        # An interrupted connect has nothing to lose; the socket must still be
        # a live descriptor that closes cleanly.
        assert self.sock.fileno() >= 0
        self.sock.close()
        assert self.sock.fileno() == -1


# -- how to call each operation (normalised: receives return the bytes) --------


async def _recv(r: Rig) -> bytes:
    return await r.sock.recv(65536)


async def _recv_into(r: Rig) -> bytes:
    buf = bytearray(65536)
    n = await r.sock.recv_into(buf)
    return bytes(buf[:n])


async def _recvfrom(r: Rig) -> bytes:
    data, _ = await r.sock.recvfrom(65536)
    return data


async def _recvfrom_into(r: Rig) -> bytes:
    buf = bytearray(65536)
    n, _ = await r.sock.recvfrom_into(buf, 0)
    return bytes(buf[:n])


async def _recvmsg(r: Rig) -> bytes:
    data, ancdata, _flags, _ = await r.sock.recvmsg(65536)
    assert ancdata == []
    return data


async def _recvmsg_into(r: Rig) -> bytes:
    head, tail = bytearray(100), bytearray(65536)
    n, ancdata, _flags, _ = await r.sock.recvmsg_into([head, tail])
    assert ancdata == []
    return bytes((head + tail)[:n])


async def _send(r: Rig) -> int:
    return await r.sock.send(r.payload)


async def _sendall(r: Rig) -> int:
    await r.sock.sendall(r.payload)
    return len(r.payload)


async def _sendmsg(r: Rig) -> int:
    return await r.sock.sendmsg([r.payload[:100], memoryview(r.payload)[100:]])


async def _sendfile(r: Rig) -> int:
    assert isinstance(r, StreamSender)
    return await r.sock.sendfile(r.payload_file())


async def _sendto(r: Rig) -> int:
    assert isinstance(r, DatagramSender)
    return await r.sock.sendto(r.payload, r.address)


async def _accept(r: Rig) -> Any:
    return await r.sock.accept()


async def _connect(r: Rig) -> None:
    assert isinstance(r, Connector)
    await r.sock.connect(r.address)


async def _connect_ex(r: Rig) -> int:
    assert isinstance(r, Connector)
    return await r.sock.connect_ex(r.address)


@dataclass(frozen=True)
class Op:
    name: str
    rig: type[Rig]
    call: Callable[[Rig], Awaitable[Any]]

    @property
    def returns_errno(self) -> bool:
        return self.name == "connect_ex"

    def __str__(self) -> str:
        return self.name


OPS = [
    #  operation        rig               call
    Op("accept",        Acceptor,         _accept),
    Op("connect",       Connector,        _connect),
    Op("connect_ex",    Connector,        _connect_ex),
    Op("recv",          StreamReceiver,   _recv),
    Op("recv_into",     StreamReceiver,   _recv_into),
    Op("recvfrom",      StreamReceiver,   _recvfrom),
    Op("recvfrom_into", StreamReceiver,   _recvfrom_into),
    Op("recvmsg",       StreamReceiver,   _recvmsg),
    Op("recvmsg_into",  StreamReceiver,   _recvmsg_into),
    Op("send",          StreamSender,     _send),
    Op("sendall",       WholeSender,      _sendall),
    Op("sendto",        DatagramSender,   _sendto),
    Op("sendmsg",       StreamSender,     _sendmsg),
    Op("sendfile",      WholeSender,      _sendfile),
]  # fmt: skip

by_op = pytest.mark.parametrize("op", OPS, ids=str)


@contextlib.asynccontextmanager
async def rig_for(op: Op, blocked: bool):  # type: ignore[no-untyped-def]
    with contextlib.ExitStack() as stack:
        rig = op.rig(stack)
        await rig.open(blocked)
        yield rig


async def interrupted(op: Op, rig: Rig, exc: BaseException) -> None:
    """Common tail of every interruption path: nothing lost, still usable."""
    await rig.check_intact(exc, op.call)


# -- the paths ------------------------------------------------------------------


@by_op
async def test_completes_at_once(op: Op) -> None:
    async with rig_for(op, blocked=False) as rig, tasks() as tg:
        yielded: list[bool] = []

        async def other() -> None:
            yielded.append(True)

        # Started now, it runs as soon as the call gives the loop a turn.
        bystander = tg.spawn(other)
        result = await op.call(rig)
        if op.rig is not Connector:  # a TCP handshake always takes a loop turn
            assert not yielded, "a call that could complete at once yielded to the loop"
        await rig.check(result)
        await wait_for(bystander, 5)


@by_op
async def test_waits_then_completes(op: Op) -> None:
    async with rig_for(op, blocked=True) as rig, tasks() as tg:
        task = tg.spawn(op.call, rig)
        await settle(task)
        rig.unblock()
        await rig.check(await wait_for(task, 10))


@by_op
async def test_times_out(op: Op) -> None:
    async with rig_for(op, blocked=True) as rig:
        rig.sock.settimeout(0.1)
        if op.returns_errno:
            assert await op.call(rig) == errno.EWOULDBLOCK  # as the stdlib's connect_ex
            return
        with pytest.raises(TimeoutError) as info:
            await op.call(rig)
        assert type(info.value) is TimeoutError
        assert str(info.value) == "timed out"
        rig.sock.settimeout(None)
        await interrupted(op, rig, info.value)


@by_op
async def test_nonblocking_mode(op: Op) -> None:
    async with rig_for(op, blocked=True) as rig:
        rig.sock.setblocking(False)
        if op.name == "sendfile":
            with pytest.raises(ValueError) as error:
                await op.call(rig)
            assert str(error.value) == "non-blocking sockets are not supported"
            return
        if op.returns_errno:
            assert await op.call(rig) == errno.EINPROGRESS
            return
        with pytest.raises(BlockingIOError) as info:
            await op.call(rig)
        if op.rig is Connector:
            assert info.value.errno == errno.EINPROGRESS
        else:
            assert info.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
        rig.sock.setblocking(True)
        await interrupted(op, rig, info.value)


@by_op
async def test_cancelled_while_waiting(op: Op) -> None:
    async with rig_for(op, blocked=True) as rig, tasks() as tg:
        task = tg.spawn(op.call, rig)
        await settle(task)
        task.cancel()
        with pytest.raises(cancelled_exc()) as info:
            await task
        await interrupted(op, rig, info.value)


@by_op
@pytest.mark.parametrize("delay", [0, 1, 2, 3], ids=lambda n: f"{n}ticks")
async def test_cancelled_as_it_becomes_ready(op: Op, delay: int) -> None:
    # The cancellation lands 0..3 loop iterations after the peer acted: before
    # the readiness event is seen, between the wake-up and the task's step, or
    # after the call finished.  Whichever happened, nothing is lost.
    async with rig_for(op, blocked=True) as rig, tasks() as tg:
        task = tg.spawn(op.call, rig)
        await settle(task)
        rig.unblock()
        await ticks(delay)
        task.cancel()
        try:
            result = await task
        except cancelled_exc() as exc:
            await interrupted(op, rig, exc)
        else:
            await rig.check(result)


@by_op
async def test_cancel_scope_deadline(op: Op) -> None:
    async with rig_for(op, blocked=True) as rig:
        with pytest.raises(TimeoutError) as info, anyio.fail_after(0.1):
            await op.call(rig)
        await interrupted(op, rig, info.value)


@by_op
async def test_closed_while_waiting(op: Op) -> None:
    async with rig_for(op, blocked=True) as rig, tasks() as tg:
        task = tg.spawn(op.call, rig)
        await settle(task)
        rig.sock.close()
        # The waiter learns at the next loop iteration, not after some timeout.
        await ticks(3)
        assert task.done(), "close() did not wake the waiting task"
        if op.returns_errno:
            assert task.result() == errno.EBADF
        else:
            with pytest.raises(OSError) as info:
                task.result()
            assert info.value.errno == errno.EBADF
        if op.returns_errno:
            assert await op.call(rig) == errno.EBADF
        else:
            with pytest.raises(OSError) as again:
                await op.call(rig)
            assert again.value.errno == errno.EBADF


@by_op
async def test_second_waiter_is_busy(op: Op) -> None:
    async with rig_for(op, blocked=True) as rig, tasks() as tg:
        first = tg.spawn(op.call, rig)
        await settle(first)
        with pytest.raises(asock.BusyError) as info:
            await op.call(rig)
        assert isinstance(info.value, RuntimeError)
        direction = "send" if op.rig in (StreamSender, WholeSender, DatagramSender, Connector) else "receive"
        assert direction in str(info.value)
        assert op.name.replace("connect_ex", "connect") + "()" in str(info.value)
        # The refused second call took nothing from the first waiter.
        assert not first.done()
        rig.unblock()
        await rig.check(await wait_for(first, 10))
