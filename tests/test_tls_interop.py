"""asock's TLS against other implementations: the stdlib's blocking ``ssl``
module (in threads) and the ``openssl s_server`` / ``s_client`` commands
(skipped if ``openssl`` is not installed), both ways, on every backend."""

from __future__ import annotations

import re
import socket as stdlib
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from helpers import gather, tasks, wait_for
from tlshelpers import (
    ThreadPeer,
    ca,
    client_context,
    needs_openssl,
    pattern,
    read_exactly,
    server_cert,
    server_context,
    tcp_pair,
)

import asock
from asock._tls import RECEIVER, SENDER, TLSState

VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1_2, id="tls1.2"),
    pytest.param(ssl.TLSVersion.TLSv1_3, id="tls1.3"),
]


def _stdlib_pair() -> tuple[stdlib.socket, asock.socket]:
    """A blocking stdlib socket and an asock socket, connected over loopback."""
    theirs, ours = tcp_pair()
    return stdlib.socket(fileno=theirs.detach()), ours


def _recv_exactly(tls: ssl.SSLSocket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = tls.recv(min(65536, n - len(data)))
        assert chunk, f"end of stream after {len(data)} of {n} bytes"
        data += chunk
    return bytes(data)


# -- the stdlib's ssl module ----------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_asock_client_stdlib_server_and_back_to_cleartext(version: ssl.TLSVersion) -> None:
    payload = pattern(1_000_000)

    def server(tls: ssl.SSLSocket) -> bytes:
        got = bytearray()
        while data := tls.recv(65536):  # b"" at the client's close_notify
            got += data
            tls.sendall(data)
        plain = tls.unwrap()  # answers close_notify
        plain.sendall(b"clear from the stdlib")
        return bytes(got)

    theirs, ours = _stdlib_pair()
    peer = ThreadPeer(theirs, server_context(version=version), True, server)
    with ours:
        tls = await asock.start_tls(ours, client_context(version=version), server_hostname="localhost")
        with tls:
            assert tls.version() == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
            async with tasks() as tg:
                echoed = tg.spawn(read_exactly, tls, len(payload))
                await tls.sendall(payload)
                assert await echoed == payload
            plain = await tls.unwrap()
        with plain:
            assert await read_exactly(plain, 21) == b"clear from the stdlib"
    assert await anyio.to_thread.run_sync(peer.outcome) == payload


@pytest.mark.parametrize("version", VERSIONS)
async def test_stdlib_client_asock_server(version: ssl.TLSVersion) -> None:
    payload = pattern(1_000_000, 3)

    async def echo(conn: asock.socket) -> None:
        while data := await conn.recv(65536):
            await conn.sendall(data)

    def client(address: tuple[str, int]) -> tuple[bytes, str | None, bytes]:
        with stdlib.create_connection(address, timeout=20) as raw:
            context = client_context(version=version)
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                negotiated = tls.version()
                echoed = bytearray()
                # One thread, in turns: an OpenSSL connection is not safe to
                # read and write from two threads at once.
                for start in range(0, len(payload), 65536):
                    block = payload[start : start + 65536]
                    tls.sendall(block)
                    echoed += _recv_exactly(tls, len(block))
                plain = tls.unwrap()  # waits for the server's close_notify, sent when the handler returns
                return bytes(echoed), negotiated, plain.recv(10)

    async with await asock.start_server(echo, ("127.0.0.1", 0), ssl=server_context(version=version)) as server:
        echoed, negotiated, after = await anyio.to_thread.run_sync(client, server.sockets[0].getsockname())
    assert echoed == payload
    assert negotiated == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
    assert after == b""  # the server closed after its close_notify


async def test_starttls_with_a_stdlib_client_that_downgrades_first() -> None:
    def client(raw: stdlib.socket) -> bytes:
        raw.settimeout(20)
        raw.sendall(b"STARTTLS\r\n")
        assert raw.recv(100) == b"220 ready\r\n"
        with client_context().wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"inside")
            assert _recv_exactly(tls, 6) == b"INSIDE"
            plain = tls.unwrap()  # the client ends TLS; the server answers
            # (The stdlib's unwrap() returns the same object, now in the clear.)
            plain.sendall(b"clear again")
            return _recv_exactly(plain, 16)  # type: ignore[arg-type]

    theirs, ours = _stdlib_pair()
    result: list[bytes] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(client(theirs))
        except BaseException as exc:
            errors.append(exc)
        finally:
            theirs.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    with ours:
        assert await ours.recv(100) == b"STARTTLS\r\n"
        await ours.sendall(b"220 ready\r\n")
        tls = await asock.start_tls(ours, server_context(), server_side=True)
    with tls:
        assert await read_exactly(tls, 6) == b"inside"
        await tls.sendall(b"INSIDE")
        assert await tls.recv(10) == b""  # the client's close_notify
        plain = await tls.unwrap()
    with plain:
        assert await read_exactly(plain, 11) == b"clear again"
        await plain.sendall(b"and clear back\r\n")
    await anyio.to_thread.run_sync(thread.join, 20)
    assert not errors, errors
    assert result == [b"and clear back\r\n"]


async def test_full_duplex_from_the_start_with_a_stdlib_server_sending_tickets() -> None:
    payload = pattern(2_000_000, 7)
    server_ctx = server_context(version=ssl.TLSVersion.TLSv1_3)
    server_ctx.num_tickets = 4  # four NewSessionTicket messages right behind the handshake

    def server(tls: ssl.SSLSocket) -> None:
        while data := tls.recv(65536):
            tls.sendall(data)

    theirs, ours = _stdlib_pair()
    peer = ThreadPeer(theirs, server_ctx, True, server)
    with ours:
        tls = await asock.start_tls(ours, client_context(), server_hostname="localhost")
    async with tls:
        # The receive meets the tickets while the send is under way.
        async with tasks() as tg:
            sending = tg.spawn(tls.sendall, payload)
            assert await read_exactly(tls, len(payload)) == payload
            await sending
        assert tls.session is not None and tls.session.has_ticket
    await anyio.to_thread.run_sync(peer.outcome)


# -- openssl s_server / s_client ---------------------------------------------------------


class _Process:
    """An openssl command whose output a thread collects, so its pipe never fills."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            with self._lock:
                self._output += chunk

    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def wait_for(self, pattern: bytes, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while pattern not in self.output():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{pattern!r} not seen; output: {self.output()[-2000:]!r}")
            time.sleep(0.01)

    def wait_for_count(self, pattern: bytes, count: int, timeout: float = 10) -> None:
        """Wait until ``pattern`` has appeared ``count`` times in the output."""
        deadline = time.monotonic() + timeout
        while self.output().count(pattern) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{pattern!r} not seen {count} times; output: {self.output()[-2000:]!r}")
            time.sleep(0.01)

    def command(self, command: bytes, done: bytes) -> None:
        """Write a one-letter command alone and wait until ``done`` shows it was run
        (written with more, it would be read as data)."""
        count = self.output().count(done)
        self.write(command)
        self.wait_for_count(done, count + 1)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def stop(self, grace: float = 0) -> bytes:
        """End the process (after ``grace`` seconds to end by itself) and return all its output."""
        if grace:
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.output()


def _free_port() -> int:
    with stdlib.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _s_server(tmp_path: Path, *options: str) -> Iterator[tuple[_Process, int]]:
    pem = tmp_path / "server.pem"
    server_cert().private_key_and_cert_chain_pem.write_to_path(str(pem))
    for _ in range(3):  # the port was free a moment ago; another process may take it first
        port = _free_port()
        server = _Process(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pem),
                           "-naccept", "1", "-msg", *options])  # fmt: skip
        try:
            server.wait_for(b"ACCEPT")
        except AssertionError:
            server.stop()
            continue
        try:
            yield server, port
        finally:
            server.stop()
        return
    pytest.fail("openssl s_server did not start")


async def _duplex_with_commands(server: _Process, tls: asock.SSLSocket, commands: list[bytes]) -> tuple[int, int]:
    """Our send and our receive run at once while s_server sends lines and runs ``commands``
    in between (each alone on stdin, as s_server reads them); returns the line counts."""
    ours: list[bytes] = []
    theirs = [b"s%05d\n" % i for i in range(60)]
    feeding = True

    async def send() -> None:
        # At least 300 lines, and on until the last command has run: s_server
        # runs each in a blocking SSL_do_handshake that returns only once a
        # record of ours arrives, and until then it sends nothing.
        while len(ours) < 300 or feeding:
            line = b"c%05d\n" % len(ours)
            await tls.sendall(line)  # a record each: s_server prints each whole
            ours.append(line)
            await anyio.sleep(0.002)

    received = bytearray()

    async def feed() -> None:
        nonlocal feeding
        try:
            await feed_lines()
        finally:
            feeding = False

    async def feed_lines() -> None:
        for i, line in enumerate(theirs):
            await anyio.to_thread.run_sync(server.write, line)
            await anyio.sleep(0.01)
            if i % 10 == 5 and commands:
                # A command must reach s_server's stdin alone: once the lines
                # written so far have come back, it has read them all.
                fed = sum(map(len, theirs[: i + 1]))
                while len(received) < fed:
                    await anyio.sleep(0.005)
                # s_server reports each command it runs with this line.
                command = commands[(i // 10) % len(commands)]
                await anyio.to_thread.run_sync(server.command, command, b"SSL_do_handshake -> ")

    async def receive() -> bytes:
        total = sum(map(len, theirs))
        while len(received) < total:
            chunk = await tls.recv(total - len(received))
            assert chunk, "the connection ended early"
            received.extend(chunk)
        return bytes(received)

    received, _, _ = await wait_for(gather(receive(), send(), feed()), 30)
    assert received == b"".join(theirs)
    await anyio.to_thread.run_sync(server.wait_for, ours[-1])
    output = server.output()
    positions = [output.find(line) for line in ours]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), "client lines lost or reordered"
    return len(ours), len(theirs)


@needs_openssl
async def test_key_updates_from_openssl_s_server_during_full_duplex(tmp_path: Path) -> None:
    with _s_server(tmp_path, "-tls1_3") as (server, port):
        tls = await asock.create_connection(("127.0.0.1", port), timeout=10, ssl=client_context(),
                                            server_hostname="localhost")  # fmt: skip
        assert isinstance(tls, asock.SSLSocket)
        async with tls:
            assert tls.version() == "TLSv1.3"
            await _duplex_with_commands(server, tls, [b"K\n", b"k\n"])
        output = server.stop(grace=5)  # it ends with the connection (-naccept 1)
    sent = len(re.findall(rb">>> TLS 1.3, Handshake \[length 0005\], KeyUpdate", output))
    received = len(re.findall(rb"<<< TLS 1.3, Handshake \[length 0005\], KeyUpdate", output))
    assert sent == 6  # three of each command
    # Our answers to the three that asked for one.
    assert received >= 3


@needs_openssl
async def test_renegotiation_by_openssl_s_server_during_full_duplex(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Count the sends that needed input while the receive was waiting for
    # it (SSL_write in the middle of a renegotiation): they wait for the
    # receive's progress instead of for the descriptor.
    sends_waiting_for_the_receive = 0
    original = TLSState._input

    def counting(self: TLSState, role: int, first: bool = False) -> Any:
        nonlocal sends_waiting_for_the_receive
        if role == SENDER and self.reading == RECEIVER:
            sends_waiting_for_the_receive += 1
        return original(self, role, first)

    monkeypatch.setattr(TLSState, "_input", counting)
    with _s_server(tmp_path, "-tls1_2") as (server, port):
        tls = await asock.create_connection(("127.0.0.1", port), timeout=10, ssl=client_context(),
                                            server_hostname="localhost")  # fmt: skip
        assert isinstance(tls, asock.SSLSocket)
        async with tls:
            assert tls.version() == "TLSv1.2"
            await _duplex_with_commands(server, tls, [b"r\n"])
        output = server.stop(grace=5)  # it ends with the connection (-naccept 1), printing its counts
    finished = re.search(rb"(\d+) server accepts that finished", output)
    assert finished and int(finished.group(1)) >= 4  # the handshake and three renegotiations
    assert sends_waiting_for_the_receive > 0


@needs_openssl
async def test_openssl_s_client_with_key_updates_against_an_asock_server(tmp_path: Path) -> None:
    async def echo(conn: asock.socket) -> None:
        while data := await conn.recv(65536):
            await conn.sendall(data)

    cafile = tmp_path / "ca.pem"
    ca().cert_pem.write_to_path(str(cafile))
    async with await asock.start_server(echo, ("127.0.0.1", 0), ssl=server_context()) as server:
        port = server.sockets[0].getsockname()[1]
        client = _Process(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                           "-CAfile", str(cafile), "-verify_return_error", "-brief", "-msg"])  # fmt: skip
        try:
            await anyio.to_thread.run_sync(client.wait_for, b"CONNECTION ESTABLISHED")
            for i in range(5):
                line = b"line %d through s_client\n" % i
                await anyio.to_thread.run_sync(client.write, line)
                await anyio.to_thread.run_sync(client.wait_for, line)  # the echo
                # A key update, asking for ours (which comes with the next echo).
                update = b">>> TLS 1.3, Handshake [length 0005], KeyUpdate"
                await anyio.to_thread.run_sync(client.command, b"K\n", update)
            await anyio.to_thread.run_sync(client.write, b"last\n")
            await anyio.to_thread.run_sync(client.wait_for, b"last\n")
        finally:
            output = client.stop()
    assert b"Verification: OK" in output
    assert len(re.findall(rb">>> TLS 1.3, Handshake \[length 0005\], KeyUpdate", output)) == 5
    # The server answered each request before its next echo.
    assert len(re.findall(rb"<<< TLS 1.3, Handshake \[length 0005\], KeyUpdate", output)) == 5
