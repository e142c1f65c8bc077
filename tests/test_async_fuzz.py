"""Cancellation fuzz: a peer streams random data while the reader's calls are
cancelled or time out at random moments.  Whatever the interleaving, the bytes
(or datagrams) received must be exactly those sent.

The calls are cut short by a socket timeout, by non-blocking mode, and by the
running backend's own cancellers (asyncio: ``wait_for`` and ``task.cancel``;
trio: a deadline and a cancel scope cancelled by another task) and anyio's,
which run on every backend."""

from __future__ import annotations

import asyncio
import random
import socket as stdlib
import struct
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import anyio
import pytest
from helpers import backend, tasks, ticks

import asock

FUZZ_SECONDS = 1.2

#: A receive coroutine, normalised to return the bytes it got.
Receiver = Callable[[], Awaitable[bytes]]


def _receivers(sock: asock.socket, rng: random.Random, sizes: tuple[int, ...]) -> list[Receiver]:
    """Every receive coroutine, normalised to return the bytes it got."""

    def size() -> int:
        return rng.choice(sizes)

    async def recv() -> bytes:
        return await sock.recv(size())

    async def recv_into() -> bytes:
        buf = bytearray(size())
        n = await sock.recv_into(buf)
        return bytes(buf[:n])

    async def recvfrom() -> bytes:
        return (await sock.recvfrom(size()))[0]

    async def recvfrom_into() -> bytes:
        buf = bytearray(size())
        n, _ = await sock.recvfrom_into(buf)
        return bytes(buf[:n])

    async def recvmsg() -> bytes:
        return (await sock.recvmsg(size()))[0]

    async def recvmsg_into() -> bytes:
        a, b = bytearray(rng.randint(1, 50)), bytearray(size())
        n = (await sock.recvmsg_into([a, b]))[0]
        return bytes((a + b)[:n])

    return [recv, recv_into, recvfrom, recvfrom_into, recvmsg, recvmsg_into]


#: Delays before a deadline cuts a call short (0: before it even starts).
DEADLINES = [0, 0.0005, 0.002]


# -- the cancellers: each runs one receive and cuts it short at a random moment ------
#
# Each returns the bytes the call got, or None when it was cut short; a
# cancellation that is not its own (the test itself being cancelled) goes on.


async def anyio_deadline(call: Receiver, rng: random.Random) -> bytes | None:
    try:
        with anyio.fail_after(rng.choice(DEADLINES)):
            return await call()
    except TimeoutError:  # fail_after raises it only for its own deadline
        return None


async def anyio_scope_cancelled(call: Receiver, rng: random.Random) -> bytes | None:
    """The call runs in a task whose cancel scope the caller cancels 0-3 loop iterations later."""
    got: list[bytes] = []
    scope = anyio.CancelScope()

    async def receive() -> None:
        with scope:
            got.append(await call())

    async with anyio.create_task_group() as group:
        group.start_soon(receive)
        await ticks(rng.randrange(4))
        scope.cancel()
    return got[0] if got else None


async def asyncio_wait_for(call: Receiver, rng: random.Random) -> bytes | None:
    try:
        return await asyncio.wait_for(call(), rng.choice(DEADLINES))
    # asyncio.TimeoutError is wait_for's, a class of its own before Python 3.11.
    except (asyncio.CancelledError, TimeoutError, asyncio.TimeoutError):
        if _test_cancelled():
            raise
        return None


async def asyncio_task_cancel(call: Receiver, rng: random.Random) -> bytes | None:
    task = asyncio.create_task(call())
    for _ in range(rng.randrange(4)):
        await asyncio.sleep(0)
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        if _test_cancelled():
            raise
        return None


def _test_cancelled() -> bool:
    """Whether the test itself is being cancelled (then its cancellation must go on).

    Before Python 3.11 there is no ``Task.cancelling()`` to tell (a backport's
    count is never decremented by 3.10's ``wait_for`` nor by anyio's scopes).
    """
    if sys.version_info < (3, 11):
        return False
    task = asyncio.current_task()
    assert task is not None
    return task.cancelling() > 0


async def trio_move_on_after(call: Receiver, rng: random.Random) -> bytes | None:
    import trio

    with trio.move_on_after(rng.choice(DEADLINES)):
        return await call()
    return None


async def trio_scope_cancelled(call: Receiver, rng: random.Random) -> bytes | None:
    """The call runs in a nursery task whose cancel scope the caller cancels 0-3 schedule points later."""
    import trio

    got: list[bytes] = []
    scope = trio.CancelScope()

    async def receive() -> None:
        with scope:
            got.append(await call())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        for _ in range(rng.randrange(4)):
            await trio.lowlevel.checkpoint()
        scope.cancel()
    return got[0] if got else None


Canceller = Callable[[Receiver, random.Random], Awaitable[bytes | None]]

#: The backend's own cancellers, then anyio's, which run on every backend.
CANCELLERS: dict[str, list[Canceller]] = {
    "asyncio": [asyncio_wait_for, asyncio_task_cancel],
    "trio": [trio_move_on_after, trio_scope_cancelled],
}
ANYIO_CANCELLERS: list[Canceller] = [anyio_deadline, anyio_scope_cancelled]


class Interrupter:
    """Runs each receive plainly, with a socket timeout, non-blocking, or under a
    canceller, drawn at random; counts the calls each way cut short."""

    def __init__(self, rng: random.Random, sock: asock.socket) -> None:
        self.rng = rng
        self.sock = sock
        native = CANCELLERS["trio" if backend() == "trio" else "asyncio"]
        self.cancellers = [*native, *ANYIO_CANCELLERS]
        self.interrupted: Counter[str] = Counter()

    async def receive(self, call: Receiver) -> bytes | None:
        """One receive, interrupted at random; None when it was cut short."""
        how = self.rng.randrange(3 + len(self.cancellers))
        if how == 0:
            return await call()
        if how == 1:
            self.sock.settimeout(self.rng.choice([0.0005, 0.001, 0.003]))
            try:
                return await call()
            except TimeoutError:
                return self._cut("socket timeout")
            finally:
                self.sock.settimeout(None)
        if how == 2:
            self.sock.setblocking(False)
            try:
                return await call()
            except BlockingIOError:
                return self._cut("non-blocking")
            finally:
                self.sock.setblocking(True)
        canceller = self.cancellers[how - 3]
        data = await canceller(call, self.rng)
        return self._cut(canceller.__name__) if data is None else data

    def _cut(self, how: str) -> None:
        self.interrupted[how] += 1

    def check(self) -> None:
        total = sum(self.interrupted.values())
        assert total > 20, "the fuzz did not interrupt enough calls to mean anything"
        # Every way of cutting a call short did so at least once.
        ways = {"socket timeout", "non-blocking", *(c.__name__ for c in self.cancellers)}
        assert set(self.interrupted) == ways, self.interrupted


@pytest.mark.parametrize("seed", [1, 2])
async def test_stream_fuzz(seed: int) -> None:
    rng = random.Random(seed)
    a, b = asock.socketpair()
    with a, b:
        sent = bytearray()
        deadline = time.monotonic() + FUZZ_SECONDS

        async def writer() -> None:
            while time.monotonic() < deadline:
                chunk = rng.randbytes(rng.choice([1, 10, 500, 4000, 70000]))
                sent.extend(chunk)
                await b.sendall(chunk)
                if rng.random() < 0.3:
                    await anyio.sleep(rng.choice([0, 0.0005, 0.002]))
            b.shutdown(stdlib.SHUT_WR)

        async with tasks() as tg:
            writing = tg.spawn(writer)
            received = bytearray()
            receivers = _receivers(a, rng, (1, 7, 100, 1500, 65536))
            interrupter = Interrupter(rng, a)
            while True:
                data = await interrupter.receive(rng.choice(receivers))
                if data is None:
                    continue
                if not data:
                    break
                received.extend(data)
            await writing
        interrupter.check()
        assert len(received) == len(sent)
        assert received == sent


async def _datagram_fuzz(a: asock.socket, send: Callable[[bytes], Awaitable[int]], seed: int) -> None:
    rng = random.Random(seed)
    window = anyio.Semaphore(32)  # loopback UDP drops what the receiver has no room for
    deadline = time.monotonic() + FUZZ_SECONDS
    sent: list[bytes] = []

    async def writer() -> None:
        while time.monotonic() < deadline:
            await window.acquire()
            datagram = struct.pack("!I", len(sent)) + rng.randbytes(rng.randrange(0, 1200))
            sent.append(datagram)
            assert await send(datagram) == len(datagram)
            if rng.random() < 0.3:
                await anyio.sleep(rng.choice([0, 0.0005, 0.002]))
        await send(b"")  # the end marker

    async with tasks() as tg:
        writing = tg.spawn(writer)
        received: list[bytes] = []
        receivers = _receivers(a, rng, (2048,))  # never truncates a datagram
        interrupter = Interrupter(rng, a)
        while True:
            data = await interrupter.receive(rng.choice(receivers))
            if data is None:
                continue
            if not data:
                break
            received.append(data)
            window.release()
        await writing
    interrupter.check()
    assert len(received) == len(sent)  # nothing lost, nothing twice
    assert received == sent


async def test_udp_fuzz() -> None:
    with asock.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM) as a, asock.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        target = a.getsockname()
        await _datagram_fuzz(a, lambda datagram: b.sendto(datagram, target), 3)


async def test_unix_datagram_fuzz() -> None:
    a, b = asock.socketpair(type=stdlib.SOCK_DGRAM)
    with a, b:
        await _datagram_fuzz(a, b.send, 4)
