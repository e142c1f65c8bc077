"""Moving a connection between the sync facade and the async socket and back.

The async tests run on every backend the suite runs (tests/conftest.py).
A sync socket waiting in another thread must not block the loop, so the sync
side of each exchange runs in a worker thread.
"""

from __future__ import annotations

import fcntl
import os

import anyio
import anyio.to_thread
import pytest
from helpers import tasks, wait_for

import asock
import asock.sync

pytestmark = pytest.mark.timeout(30)


def _nonblocking(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


async def test_sync_to_async_and_back() -> None:
    s1, s2 = asock.sync.socketpair()
    with s2:
        s1.settimeout(7)
        s2.sendall(b"queued before the move")
        a = asock.socket(fileno=s1.detach())
        assert s1.fileno() == -1
        async with a:
            assert a.gettimeout() is None  # the default mode, as for any new socket
            assert await a.recv(100) == b"queued before the move"
            # The sync peer answers from a thread while the loop waits.
            async with tasks() as tg:
                reply = tg.spawn(anyio.to_thread.run_sync, s2.sendall, b"from sync")
                assert await wait_for(a.recv(100), 10) == b"from sync"
                await reply
            await a.sendall(b"from async")
            assert s2.recv(100) == b"from async"
            back = asock.sync.socket(fileno=a.detach())
        assert a.fileno() == -1
        with back:
            assert type(back) is asock.sync.socket
            assert back.gettimeout() is None
            assert _nonblocking(back.fileno())
            back.sendall(b"sync again")
            assert s2.recv(100) == b"sync again"
            s2.sendall(b"reply")
            back.settimeout(5)
            assert back.recv(100) == b"reply"


async def test_listener_moves_and_accepts_in_the_other_world() -> None:
    with asock.sync.create_server(("127.0.0.1", 0)) as srv:
        address = srv.getsockname()
        listener = asock.socket(fileno=srv.detach())
    async with listener:
        client = await asock.create_connection(address)
        async with client:
            conn, _ = await listener.accept()
            sync_conn = asock.sync.socket(fileno=conn.detach())
            with sync_conn:
                await client.sendall(b"ping")
                sync_conn.settimeout(5)
                assert sync_conn.recv(10) == b"ping"
                sync_conn.sendall(b"pong")
                assert await wait_for(client.recv(10), 10) == b"pong"


async def test_fromfd_across_worlds_keeps_both_usable() -> None:
    s1, s2 = asock.sync.socketpair()
    with s1, s2:
        a = asock.fromfd(s1.fileno(), s1.family, s1.type)
        async with a:
            assert a.fileno() != s1.fileno()
            s2.sendall(b"one")
            assert await a.recv(10) == b"one"
            s2.sendall(b"two")
            s1.settimeout(5)
            assert s1.recv(10) == b"two"
