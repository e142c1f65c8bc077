"""Load: thousands of concurrent TCP connections in one process, on every loop.

Client and server are both asock sockets on the same loop, so every
connection costs this process two descriptors.  The test raises the soft
RLIMIT_NOFILE up to the hard limit; it cannot raise the hard limit itself
(that needs privileges most machines, containers included, withhold).
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from collections.abc import Iterator

import pytest

import asock

TARGET = 10_000
# Descriptors besides the connections: stdio, pytest's capture files, the
# loop's selector and self-pipe, the listening socket, /proc/self/fd itself.
RESERVE = 64
# Connects in flight at once: far below the listen backlog (somaxconn is
# often 4096) and tcp_max_syn_backlog, so no SYN is dropped and retried a
# second later.
CONNECTS_IN_FLIGHT = 256
BACKLOG = 4096


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def socket_fds() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
        except OSError:
            pass  # closed meanwhile (the listing's own descriptor)
    return count


@pytest.fixture
def nofile() -> Iterator[int]:
    """Raise the soft descriptor limit to the hard one; yield how many connections fit."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to count descriptors")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield (limit - fd_count() - RESERVE) // 2
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class EchoServer:
    """An asock echo server, a task per connection, counting the connections it holds."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.handlers: set[asyncio.Task[None]] = set()
        self.live = self.peak = 0

    async def handle(self, conn: asock.socket) -> None:
        self.live += 1
        self.peak = max(self.peak, self.live)
        try:
            async with conn:
                while data := await conn.recv(4096):
                    await conn.sendall(data)
        except BaseException as exc:  # collected, then asserted empty
            self.errors.append(exc)
        finally:
            self.live -= 1

    async def accept_forever(self, server: asock.socket) -> None:
        while True:
            conn, _ = await server.accept()
            task = asyncio.create_task(self.handle(conn))
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)

    async def drain(self) -> None:
        """Wait until every connection's task has ended."""
        while self.handlers:
            await asyncio.gather(*self.handlers, return_exceptions=True)


async def hold_and_echo(count: int) -> None:
    """Open ``count`` connections, echo on each twice while all are open, close them all."""
    start_fds = fd_count()
    echo = EchoServer()
    errors = echo.errors

    with asock.create_server(("127.0.0.1", 0), backlog=BACKLOG) as server:
        address = server.getsockname()
        acceptor = asyncio.create_task(echo.accept_forever(server))
        gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        clients: list[asock.socket] = []

        async def exchange(sock: asock.socket, message: bytes) -> None:
            await sock.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = await sock.recv(len(message) - len(got))
                if not chunk:
                    raise ConnectionError(f"EOF after {len(got)} of {len(message)} bytes")
                got += chunk
            if got != message:
                raise AssertionError(f"echo mismatch: sent {message!r}, got {got!r}")

        async def open_one(i: int) -> None:
            async with gate:
                sock = await asock.create_connection(address)
                clients.append(sock)
                await exchange(sock, b"hello %d\n" % i)

        async def load() -> None:
            results = await asyncio.gather(*(open_one(i) for i in range(count)), return_exceptions=True)
            errors.extend(r for r in results if isinstance(r, BaseException))
            assert not errors, f"{len(errors)} errors while connecting, first: {errors[0]!r}"
            # Every connection is open at once, on both sides.
            assert len(clients) == count
            while echo.live < count and not acceptor.done():
                await asyncio.sleep(0.01)
            assert echo.live == count

            # A second exchange on every connection while all are held.
            results = await asyncio.gather(
                *(exchange(sock, b"%d" % i * 100) for i, sock in enumerate(clients)), return_exceptions=True
            )
            errors.extend(r for r in results if isinstance(r, BaseException))
            assert not errors, f"{len(errors)} errors on open connections, first: {errors[0]!r}"

        try:
            await asyncio.wait_for(load(), 50)
        finally:
            for sock in clients:
                sock.close()
            await asyncio.wait_for(echo.drain(), 30)
            acceptor.cancel()
            await asyncio.gather(acceptor, return_exceptions=True)

    assert not errors, f"{len(errors)} handler errors, first: {errors[0]!r}"
    assert echo.peak == count
    assert fd_count() == start_fds


@pytest.mark.timeout(120)
async def test_ten_thousand_connections(nofile: int) -> None:
    if nofile < TARGET:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        pytest.skip(
            f"{TARGET} connections need about {2 * TARGET + RESERVE} descriptors in one process; "
            f"the hard RLIMIT_NOFILE is {hard} and cannot be raised here (test_as_many_as_fit runs {nofile})"
        )
    await hold_and_echo(TARGET)


@pytest.mark.timeout(120)
async def test_as_many_as_fit(nofile: int) -> None:
    """As many connections as the hard limit allows (at most TARGET), so a low limit still gets load."""
    count = min(TARGET, nofile)
    if count < 1000:
        pytest.skip(f"the hard RLIMIT_NOFILE allows only {count} connections in one process")
    if count == TARGET:
        pytest.skip("test_ten_thousand_connections runs the full count")
    await hold_and_echo(count)


# The client side of test_ten_thousand_from_a_client_process: opens N
# connections (all held at once), waits for the go line, echoes a distinct
# message on every one, closes them all and reports the number of errors.
_CLIENT = r"""
import asyncio, resource, sys
import asock

port, count = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

async def main():
    gate = asyncio.Semaphore(256)
    socks = []

    async def open_one():
        async with gate:
            sock = asock.socket()
            try:
                await sock.connect(("127.0.0.1", port))
            except BaseException:
                sock.close()
                raise
            socks.append(sock)

    async def echo(sock, i):
        message = b"connection %d\n" % i
        await sock.sendall(message)
        got = b""
        while len(got) < len(message):
            chunk = await sock.recv(64)
            if not chunk:
                raise ConnectionError("EOF")
            got += chunk
        if got != message:
            raise AssertionError(got)

    results = await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
    print("OPEN", len(socks), sum(r is not None for r in results), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    results = await asyncio.gather(*(echo(s, i) for i, s in enumerate(socks)), return_exceptions=True)
    for sock in socks:
        sock.close()
    print("DONE", sum(r is not None for r in results), flush=True)

asyncio.run(main())
"""


@pytest.mark.timeout(120)
async def test_ten_thousand_from_a_client_process(nofile: int) -> None:
    """10,000 connections held at once by this process's asock server.

    The client runs in a second process, so each process needs about 10,000
    descriptors: within reach where one process cannot hold both ends.
    """
    if nofile * 2 < TARGET + RESERVE:
        pytest.skip(f"the hard RLIMIT_NOFILE cannot hold {TARGET} server connections")
    start_sockets = socket_fds()
    echo = EchoServer()
    errors = echo.errors

    with asock.create_server(("127.0.0.1", 0), backlog=BACKLOG) as server:
        acceptor = asyncio.create_task(echo.accept_forever(server))
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CLIENT,
            str(server.getsockname()[1]),
            str(TARGET),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        try:
            assert client.stdin is not None and client.stdout is not None
            opened = (await asyncio.wait_for(client.stdout.readline(), 60)).split()
            assert opened == [b"OPEN", str(TARGET).encode(), b"0"], opened
            while echo.live < TARGET:
                await asyncio.sleep(0.01)
            assert echo.live == TARGET  # every connection held at once
            client.stdin.write(b"go\n")
            await client.stdin.drain()
            done = (await asyncio.wait_for(client.stdout.readline(), 60)).split()
            assert done == [b"DONE", b"0"], done
            assert await asyncio.wait_for(client.wait(), 30) == 0
            await asyncio.wait_for(echo.drain(), 30)
        finally:
            if client.returncode is None:
                client.kill()
                await client.wait()
            acceptor.cancel()
            await asyncio.gather(acceptor, return_exceptions=True)
    assert not errors, f"{len(errors)} handler errors, first: {errors[0]!r}"
    assert echo.peak == TARGET
    # Sockets only: uvloop keeps a pipe for child processes once one has run.
    assert socket_fds() == start_sockets
