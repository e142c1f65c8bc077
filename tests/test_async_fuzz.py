"""Cancellation fuzz: a peer streams random data while the reader's calls are
cancelled or time out at random moments.  Whatever the interleaving, the bytes
(or datagrams) received must be exactly those sent."""

from __future__ import annotations

import asyncio
import random
import socket as stdlib
import struct
import time
from collections.abc import Awaitable, Callable

import pytest

import asock

FUZZ_SECONDS = 1.2


def _receivers(
    sock: asock.socket, rng: random.Random, sizes: tuple[int, ...]
) -> list[Callable[[], Awaitable[bytes]]]:
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


async def _interrupted(call: Callable[[], Awaitable[bytes]], rng: random.Random, sock: asock.socket) -> bytes | None:
    """One receive, interrupted at random; None when it was cut short."""
    how = rng.randrange(5)
    try:
        if how == 0:
            return await call()
        if how == 1:
            return await asyncio.wait_for(call(), rng.choice([0, 0.0005, 0.002]))
        if how == 2:
            sock.settimeout(rng.choice([0.0005, 0.001, 0.003]))
            try:
                return await call()
            finally:
                sock.settimeout(None)
        if how == 3:
            sock.setblocking(False)
            try:
                return await call()
            finally:
                sock.setblocking(True)
        task = asyncio.create_task(call())
        for _ in range(rng.randrange(4)):
            await asyncio.sleep(0)
        task.cancel()
        return await task
    # asyncio.TimeoutError is wait_for's, a class of its own before Python 3.11.
    except (asyncio.CancelledError, TimeoutError, asyncio.TimeoutError, BlockingIOError):
        task = asyncio.current_task()
        assert task is not None
        if getattr(task, "cancelling", lambda: 0)():  # the test itself is being cancelled: let it go
            raise
        return None


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
                    await asyncio.sleep(rng.choice([0, 0.0005, 0.002]))
            b.shutdown(stdlib.SHUT_WR)

        writing = asyncio.create_task(writer())
        received = bytearray()
        receivers = _receivers(a, rng, (1, 7, 100, 1500, 65536))
        interrupted = 0
        while True:
            data = await _interrupted(rng.choice(receivers), rng, a)
            if data is None:
                interrupted += 1
                continue
            if not data:
                break
            received.extend(data)
        await writing
        assert interrupted > 20, "the fuzz did not interrupt enough calls to mean anything"
        assert len(received) == len(sent)
        assert received == sent


async def _datagram_fuzz(a: asock.socket, send: Callable[[bytes], Awaitable[int]], seed: int) -> None:
    rng = random.Random(seed)
    window = asyncio.Semaphore(32)  # loopback UDP drops what the receiver has no room for
    deadline = time.monotonic() + FUZZ_SECONDS
    sent: list[bytes] = []

    async def writer() -> None:
        while time.monotonic() < deadline:
            await window.acquire()
            datagram = struct.pack("!I", len(sent)) + rng.randbytes(rng.randrange(0, 1200))
            sent.append(datagram)
            assert await send(datagram) == len(datagram)
            if rng.random() < 0.3:
                await asyncio.sleep(rng.choice([0, 0.0005, 0.002]))
        await send(b"")  # the end marker

    writing = asyncio.create_task(writer())
    received: list[bytes] = []
    receivers = _receivers(a, rng, (2048,))  # never truncates a datagram
    interrupted = 0
    while True:
        data = await _interrupted(rng.choice(receivers), rng, a)
        if data is None:
            interrupted += 1
            continue
        if not data:
            break
        received.append(data)
        window.release()
    await writing
    assert interrupted > 20, "the fuzz did not interrupt enough calls to mean anything"
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
