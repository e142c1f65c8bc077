"""asock calls inside anyio cancel scopes and task groups, on every backend
(asyncio's default loop, uvloop, trio): cancelled cleanly, nothing lost."""

from __future__ import annotations

import random
import socket as stdlib

import anyio
import pytest
from helpers import settle, tasks, ticks

import asock


async def test_move_on_after_loses_nothing() -> None:
    a, b = asock.socketpair()
    with a, b:
        with anyio.move_on_after(0.05) as scope:
            await a.recv(100)
        assert scope.cancelled_caught
        await b.sendall(b"after the scope")
        assert await a.recv(100) == b"after the scope"


async def test_fail_after_raises_timeout_error() -> None:
    a, b = asock.socketpair()
    with a, b:
        with pytest.raises(TimeoutError), anyio.fail_after(0.05):
            await a.recv_into(bytearray(10))
        await b.sendall(b"x")
        assert await a.recv(1) == b"x"


@pytest.mark.parametrize("delay", [0, 1, 2, 3])
async def test_scope_cancelled_as_data_arrives(delay: int) -> None:
    # The scope is cancelled 0..3 loop iterations after the data was sent:
    # the receive either returned it or left it for the next receive.
    a, b = asock.socketpair()
    with a, b:
        got: list[bytes] = []
        scopes: list[anyio.CancelScope] = []

        async def reader() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                got.append(await a.recv(100))

        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            await ticks(3)
            await anyio.sleep(0.01)
            await b.sendall(b"payload")
            await ticks(delay)
            scopes[0].cancel()
        if not got:
            got.append(await a.recv(100))
        assert got == [b"payload"]


async def test_task_group_cancellation_of_a_sendall() -> None:
    a, peer = stdlib.socketpair()
    a.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, 4096)
    with asock.socket(fileno=a.detach()) as sock, peer:
        payload = random.Random(5).randbytes(300_000)
        errors: list[BaseException] = []

        async def sender() -> None:
            try:
                await sock.sendall(payload)
            except BaseException as exc:  # anyio's cancellation, with bytes_sent
                errors.append(exc)
                raise

        async with anyio.create_task_group() as group:
            group.start_soon(sender)
            await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        assert errors and isinstance(errors[0], anyio.get_cancelled_exc_class())
        sent = errors[0].bytes_sent  # type: ignore[attr-defined]
        sock.shutdown(stdlib.SHUT_WR)
        peer.settimeout(5)
        received = bytearray()
        while data := peer.recv(65536):
            received.extend(data)
        assert bytes(received) == payload[:sent]


async def test_busy_inside_a_task_group() -> None:
    a, b = asock.socketpair()
    with a, b:
        async with tasks() as tg:
            first = tg.spawn(a.recv, 10)
            await settle(first)
            with pytest.raises(asock.BusyError):
                await a.recv(10)
            await b.sendall(b"ok")
            assert await first == b"ok"
