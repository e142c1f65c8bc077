"""Security defaults: non-inheritable descriptors, no surprise port sharing,
and no memory committed to an untrusted length before data arrives."""

from __future__ import annotations

import array
import functools
import gc
import os
import socket as stdlib
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest
from conftest import LOOPS
from helpers import settle, tasks

import asock

#: The tests that measure memory around a whole run start the event loop themselves, on each backend.
BACKENDS = pytest.mark.parametrize("backend", [*LOOPS, "trio"])


def run_on(backend: str, main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` to completion on a fresh event loop of ``backend`` (asyncio's, uvloop or trio)."""
    if backend == "trio":
        import trio

        trio.run(main)
        return
    loop = LOOPS[backend]()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


async def send_later(sock: stdlib.socket, data: bytes, delay: float = 0.05) -> None:
    await anyio.sleep(delay)
    sock.send(data)


def mixed_pair() -> tuple[asock.socket, stdlib.socket]:
    """An asock socket and a plain stdlib peer that can send without a loop."""
    a, b = stdlib.socketpair()
    return asock.socket(fileno=a.detach()), b


# -- descriptors are created non-inheritable -----------------------------------


async def test_new_socket_non_inheritable() -> None:
    for family, kind in [
        (asock.AF_INET, asock.SOCK_STREAM),
        (asock.AF_INET, asock.SOCK_DGRAM),
        (asock.AF_UNIX, asock.SOCK_STREAM),
    ]:
        with asock.socket(family, kind) as sock:
            assert sock.get_inheritable() is False
            assert os.get_inheritable(sock.fileno()) is False


async def test_accepted_and_connected_non_inheritable() -> None:
    with asock.create_server(("127.0.0.1", 0)) as server:
        assert server.get_inheritable() is False
        client = await asock.create_connection(server.getsockname())
        conn, _ = await server.accept()
        with client, conn:
            assert client.get_inheritable() is False
            assert conn.get_inheritable() is False


async def test_socketpair_dup_fromfd_non_inheritable() -> None:
    a, b = asock.socketpair()
    with a, b:
        assert (a.get_inheritable(), b.get_inheritable()) == (False, False)
        with a.dup() as c:
            assert c.get_inheritable() is False
        # fromfd duplicates even an inheritable descriptor into a private one.
        a.set_inheritable(True)
        with asock.fromfd(a.fileno(), asock.AF_UNIX, asock.SOCK_STREAM) as d:
            assert d.get_inheritable() is False
        a.set_inheritable(False)


async def test_received_fds_non_inheritable() -> None:
    a, b = asock.socketpair()
    r, w = os.pipe()
    try:
        os.set_inheritable(r, True)
        with a, b:
            await asock.send_fds(a, [b"x"], [r])
            data, fds, _, _ = await asock.recv_fds(b, 10, 4)
            try:
                assert data == b"x" and len(fds) == 1
                # The sender's copy was inheritable; the received one is not.
                assert os.get_inheritable(fds[0]) is False
            finally:
                for fd in fds:
                    os.close(fd)
    finally:
        os.close(r)
        os.close(w)


async def test_child_process_does_not_inherit() -> None:
    """The real consequence: a child started without closing fds sees none of ours."""
    with asock.create_server(("127.0.0.1", 0)) as server:
        client = await asock.create_connection(server.getsockname())
        conn, _ = await server.accept()
        with client, conn:
            fds = [server.fileno(), client.fileno(), conn.fileno()]
            code = (
                "import os, sys\n"
                "for fd in map(int, sys.argv[1:]):\n"
                "    try:\n"
                "        os.fstat(fd)\n"
                "    except OSError:\n"
                "        continue\n"
                "    print(fd)\n"
            )
            # subprocess.run in a thread, on every backend: the child must start with
            # close_fds=False, which anyio's open_process does not offer.
            done = await anyio.to_thread.run_sync(
                functools.partial(
                    subprocess.run,
                    [sys.executable, "-c", code, *map(str, fds)],
                    stdout=subprocess.PIPE,
                    close_fds=False,
                    timeout=30,
                    check=False,
                )
            )
    assert done.returncode == 0
    assert done.stdout.split() == []


@pytest.fixture
def sync() -> Any:
    return pytest.importorskip("asock.sync")


def test_sync_sockets_non_inheritable(sync: Any) -> None:
    with (
        sync.create_server(("127.0.0.1", 0)) as server,
        sync.create_connection(server.getsockname(), timeout=5) as client,
    ):
        conn, _ = server.accept()
        with conn, client.dup() as dup, sync.fromfd(client.fileno(), sync.AF_INET, sync.SOCK_STREAM) as fromfd:
            for sock in (server, client, conn, dup, fromfd):
                assert sock.get_inheritable() is False, sock
    a, b = sync.socketpair()
    with a, b, sync.socket() as plain:
        assert (a.get_inheritable(), b.get_inheritable(), plain.get_inheritable()) == (False, False, False)
    if hasattr(sync, "recv_fds"):
        a, b = sync.socketpair()
        r, w = os.pipe()
        try:
            with a, b:
                sync.send_fds(a, [b"x"], [r])
                _, fds, _, _ = sync.recv_fds(b, 10, 4)
                try:
                    # The stdlib's recv_fds does not ask for close-on-exec;
                    # the facade keeps the stdlib's behaviour, so only record it.
                    assert len(fds) == 1
                finally:
                    for fd in fds:
                        os.close(fd)
        finally:
            os.close(r)
            os.close(w)


# -- create_server: SO_REUSEADDR yes, SO_REUSEPORT only when asked ------------------


def servers() -> Iterator[tuple[str, Callable[..., Any]]]:
    yield "asock", asock.create_server
    try:
        import asock.sync as facade
    except ImportError:
        return
    yield "asock.sync", facade.create_server


@pytest.mark.parametrize("family,host", [(stdlib.AF_INET, "127.0.0.1"), (stdlib.AF_INET6, "::1")])
def test_create_server_reuse_options(family: int, host: str) -> None:
    if family == stdlib.AF_INET6 and not stdlib.has_ipv6:
        pytest.skip("no IPv6")
    for name, create_server in servers():
        with create_server((host, 0), family=family) as server:
            assert server.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR) != 0, name
            assert server.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEPORT) == 0, name
            if family == stdlib.AF_INET6:
                # Dual-stack only on request: an IPv6 server does not silently take IPv4 too.
                assert server.getsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY) == 1, name
            port = server.getsockname()[1]
            # Without SO_REUSEPORT a second server cannot take the same port.
            with pytest.raises(OSError) as info:
                create_server((host, port), family=family, reuse_port=True).close()
            assert info.value.errno == 98  # EADDRINUSE
        with create_server((host, 0), family=family, reuse_port=True) as server:
            assert server.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEPORT) != 0, name
            with create_server(server.getsockname()[:2], family=family, reuse_port=True) as twin:
                assert twin.getsockname() == server.getsockname()


def test_plain_socket_has_no_reuse_options() -> None:
    with asock.socket() as sock:
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR) == 0
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEPORT) == 0


# -- memory: an untrusted length costs no more than in the stdlib --------------------

HUGE = 2**28  # 256 MiB: what a peer-supplied length might ask for
DATA = b"0123456789"


def peak_while(run: Callable[[], None]) -> int:
    """Peak traced memory (all threads) while ``run`` runs, above the starting point."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def peak_on(backend: str, main: Callable[[], Awaitable[None]]) -> int:
    """Peak traced memory while ``main`` runs on a fresh loop of ``backend``, above the starting point."""
    if backend not in _warm:
        # What a first run sets up once per process (trio's and anyio's backend
        # modules, asock's trio waiter: megabytes) is not what is measured.
        _warm.add(backend)
        run_on(backend, _warm_up)
    return peak_while(lambda: run_on(backend, main))


_warm: set[str] = set()


async def _warm_up() -> None:
    a, b = asock.socketpair()
    with a, b:
        async with tasks() as tg:
            reader = tg.spawn(b.recv, 1)
            await settle(reader)
            await a.sendall(b"x")
            assert await reader == b"x"


RECEIVERS = pytest.mark.parametrize("method", ["recv", "recvfrom", "recvmsg"])


def first(result: Any) -> bytes:
    """The data of a recv/recvfrom/recvmsg result."""
    return result if isinstance(result, bytes) else result[0]  # type: ignore[no-any-return]


def stdlib_recv_peak(bufsize: int, method: str = "recv") -> int:
    a, b = stdlib.socketpair()
    with a, b:
        timer = threading.Timer(0.05, b.send, (DATA,))

        def run() -> None:
            timer.start()
            assert first(getattr(a, method)(bufsize)) == DATA

        try:
            return peak_while(run)
        finally:
            timer.join()


@RECEIVERS
@BACKENDS
def test_recv_huge_bufsize_not_worse_than_stdlib(backend: str, method: str) -> None:
    """recv(HUGE) on an idle socket that then gets 10 bytes: the buffer lives no longer than in the stdlib.

    The stdlib allocates ``bufsize`` up front and shrinks it to what arrived;
    asock may allocate it on every attempt, but never holds it while waiting
    and never more than one at a time.
    """
    reference = stdlib_recv_peak(HUGE, method)
    assert reference >= HUGE  # the stdlib does commit to the length

    async def main() -> None:
        a, b = mixed_pair()
        with a, b:
            async with anyio.create_task_group() as group:
                group.start_soon(send_later, b, DATA)
                assert first(await getattr(a, method)(HUGE)) == DATA

    peak = peak_on(backend, main)
    # Slack for the loop itself; a second live buffer would double the peak.
    assert peak < reference + 8 * 2**20, (peak, reference)


@BACKENDS
def test_recv_waiting_holds_no_buffer(backend: str) -> None:
    """While a huge recv waits, nothing of its size is allocated."""
    waiting_peak: list[int] = []

    async def main() -> None:
        a, b = asock.socketpair()
        with a, b:
            async with tasks() as tg:
                task = tg.spawn(a.recv, HUGE)
                await settle(task)  # the task is now waiting for data
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                await anyio.sleep(0.05)
                waiting_peak.append(tracemalloc.get_traced_memory()[1] - base)
                await b.send(DATA)
                assert await task == DATA

    tracemalloc.start()
    try:
        run_on(backend, main)
    finally:
        tracemalloc.stop()
    assert waiting_peak[0] < 2**20


@RECEIVERS
def test_sync_recv_huge_bufsize_not_worse_than_stdlib(sync: Any, method: str) -> None:
    reference = stdlib_recv_peak(HUGE, method)
    a, b = sync.socketpair()
    with a, b:
        a.settimeout(5)
        timer = threading.Timer(0.05, b.send, (DATA,))

        def run() -> None:
            timer.start()
            assert first(getattr(a, method)(HUGE)) == DATA

        try:
            peak = peak_while(run)
        finally:
            timer.join()
    assert peak < reference + 8 * 2**20, (peak, reference)


@BACKENDS
def test_recvmsg_and_recv_fds_huge_ancillary_not_worse_than_stdlib(backend: str) -> None:
    """Ancillary buffers sized by the caller: same cost as the stdlib's recvmsg."""
    maxfds = 2**20
    a, b = stdlib.socketpair()
    with a, b:
        timer = threading.Timer(0.05, b.send, (DATA,))

        def run() -> None:
            timer.start()
            data, _, _, _ = a.recvmsg(16, stdlib.CMSG_LEN(maxfds * array.array("i").itemsize))
            assert data == DATA

        try:
            reference = peak_while(run)
        finally:
            timer.join()

    async def main() -> None:
        a, b = mixed_pair()
        with a, b:
            async with anyio.create_task_group() as group:
                group.start_soon(send_later, b, DATA)
                data, fds, _, _ = await asock.recv_fds(a, 16, maxfds)
            assert (data, fds) == (DATA, [])

    peak = peak_on(backend, main)
    assert peak < reference + 8 * 2**20, (peak, reference)


@BACKENDS
def test_sendall_does_not_copy_the_payload(backend: str) -> None:
    """sendall of a large buffer to a slow reader slices views, never copies the rest."""
    size = 32 * 2**20
    payload = bytes(size)

    async def main() -> None:
        a, b = asock.socketpair()
        with a, b:

            async def drain() -> int:
                total = 0
                while total < size:
                    chunk = await b.recv(65536)
                    assert chunk
                    total += len(chunk)
                return total

            async with tasks() as tg:
                reader = tg.spawn(drain)
                await a.sendall(payload)
                assert await reader == size

    peak = peak_on(backend, main)
    assert peak < size // 4, peak
