"""Address families and socket kinds end to end: TCP over IPv4/IPv6, AF_UNIX,
UDP, descriptor passing, sendfile, and the ways to make and move sockets."""

from __future__ import annotations

import hashlib
import io
import os
import socket as stdlib
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import abstract_name, needs_ipv6, tasks, wait_for

import asock

BULK = os.urandom(1 << 20)


async def _exchange(a: asock.socket, b: asock.socket) -> None:
    """Send BULK both ways at once and check it arrives intact."""

    async def pump(src: asock.socket, dst: asock.socket) -> bytes:
        async def send() -> None:
            await src.sendall(BULK)
            src.shutdown(stdlib.SHUT_WR)

        chunks = []
        async with tasks() as tg:
            sender = tg.spawn(send)
            while data := await dst.recv(65536):
                chunks.append(data)
            await sender
        return b"".join(chunks)

    with anyio.fail_after(30):
        async with tasks() as tg:
            there = tg.spawn(pump, a, b)
            back = tg.spawn(pump, b, a)
            assert await there == BULK
            assert await back == BULK


async def _connected_pair(listener: asock.socket, family: int) -> tuple[asock.socket, asock.socket]:
    client = asock.socket(family, stdlib.SOCK_STREAM)
    try:
        async with tasks() as tg:
            accepting = tg.spawn(listener.accept)
            await client.connect(listener.getsockname())
            conn, address = await accepting
    except BaseException:
        client.close()
        raise
    if family != stdlib.AF_UNIX:
        assert address == client.getsockname()
    return client, conn


async def test_tcp_ipv4() -> None:
    with asock.create_server(("127.0.0.1", 0)) as server:
        client, conn = await _connected_pair(server, stdlib.AF_INET)
        with client, conn:
            assert conn.family == stdlib.AF_INET and conn.type == stdlib.SOCK_STREAM
            await _exchange(client, conn)


@needs_ipv6
async def test_tcp_ipv6() -> None:
    with asock.create_server(("::1", 0), family=stdlib.AF_INET6) as server:
        client, conn = await _connected_pair(server, stdlib.AF_INET6)
        with client, conn:
            assert len(conn.getpeername()) == 4  # (host, port, flowinfo, scope_id)
            assert conn.family == stdlib.AF_INET6
            await _exchange(client, conn)


@pytest.mark.parametrize("where", ["path", "abstract"])
async def test_unix_stream(where: str, tmp_path: Path) -> None:
    address = str(tmp_path / "sock") if where == "path" else abstract_name()
    with asock.socket(stdlib.AF_UNIX, stdlib.SOCK_STREAM) as server:
        server.bind(address)
        server.listen()
        assert server.getsockname() == (address if where == "path" else address.encode())
        client, conn = await _connected_pair(server, stdlib.AF_UNIX)
        with client, conn:
            await _exchange(client, conn)


UDP_FAMILIES = [
    pytest.param(stdlib.AF_INET, "127.0.0.1", id="ipv4"),
    pytest.param(stdlib.AF_INET6, "::1", id="ipv6", marks=needs_ipv6),
]


@pytest.mark.parametrize(("family", "host"), UDP_FAMILIES)
async def test_udp_sendto_recvfrom(family: int, host: str) -> None:
    with asock.socket(family, stdlib.SOCK_DGRAM) as a, asock.socket(family, stdlib.SOCK_DGRAM) as b:
        a.bind((host, 0))
        b.bind((host, 0))
        async with tasks() as tg:
            waiting = tg.spawn(b.recvfrom, 2048)
            await anyio.sleep(0.01)
            assert await a.sendto(b"ping", b.getsockname()) == 4
            data, address = await wait_for(waiting, 5)
        assert (data, address) == (b"ping", a.getsockname())
        # Reply with the flags form, receive into a buffer.
        assert await b.sendto(b"pong!", 0, address) == 5
        buf = bytearray(16)
        n, source = await wait_for(a.recvfrom_into(buf), 5)
        assert (bytes(buf[:n]), source) == (b"pong!", b.getsockname())
        # Datagram boundaries are kept: a short buffer truncates one datagram.
        await a.sendto(b"0123456789", b.getsockname())
        await a.sendto(b"next", b.getsockname())
        assert await b.recv(4) == b"0123"
        data, _, msg_flags, _ = await b.recvmsg(100)
        assert data == b"next" and not msg_flags & stdlib.MSG_TRUNC


async def test_udp_sendto_resolves_names_off_the_loop() -> None:
    with asock.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM) as a, asock.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM) as b:
        b.bind(("127.0.0.1", 0))
        port = b.getsockname()[1]
        await a.sendto(b"by name", ("localhost", port))
        data, _ = await wait_for(b.recvfrom(100), 5)
        assert data == b"by name"


async def test_fd_passing() -> None:
    a, b = asock.socketpair()
    with a, b, tempfile.TemporaryFile() as file:
        file.write(b"shared contents")
        file.flush()
        assert await asock.send_fds(a, [b"here", b" you go"], [file.fileno(), file.fileno()]) == 11
        data, fds, msg_flags, _ = await wait_for(asock.recv_fds(b, 100, 4), 5)
        try:
            assert data == b"here you go"
            assert len(fds) == 2 and msg_flags == 0
            for fd in fds:
                assert fd != file.fileno()
                assert os.path.sameopenfile(fd, file.fileno())
                assert os.get_inheritable(fd) is False
                assert os.pread(fd, 6, 0) == b"shared"
        finally:
            for fd in fds:
                os.close(fd)


async def test_fd_passing_waits_for_the_message() -> None:
    a, b = asock.socketpair()
    with a, b:
        r, w = os.pipe()
        try:
            async with tasks() as tg:
                receiving = tg.spawn(asock.recv_fds, b, 10, 1)
                await anyio.sleep(0.01)
                assert not receiving.done()
                await asock.send_fds(a, [b"p"], [w])
                data, fds, _, _ = await wait_for(receiving, 5)
            assert data == b"p" and len(fds) == 1
            os.write(fds[0], b"through the passed fd")
            os.close(fds[0])
            assert os.read(r, 100) == b"through the passed fd"
        finally:
            os.close(r)
            os.close(w)


# -- sendfile ------------------------------------------------------------------

FILE_SIZE = 6 * 1024 * 1024 + 123


@pytest.fixture(scope="module")
def big_file() -> Any:
    with tempfile.NamedTemporaryFile() as file:
        file.write(os.urandom(FILE_SIZE))
        file.flush()
        yield file.name


async def _receive_all(sock: asock.socket) -> bytes:
    chunks = []
    while data := await sock.recv(1 << 16):
        chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("offset", "count"),
    [(0, None), (12345, None), (777, 3 * 1024 * 1024), (FILE_SIZE - 10, 100), (0, 1)],
)
async def test_sendfile_over_tcp(big_file: str, offset: int, count: int | None) -> None:
    with open(big_file, "rb") as file:
        content = file.read()
    expected = content[offset:] if count is None else content[offset : offset + count]
    with asock.create_server(("127.0.0.1", 0)) as server:
        client, conn = await _connected_pair(server, stdlib.AF_INET)
        with client, conn, open(big_file, "rb") as file:
            async with tasks() as tg:
                receiving = tg.spawn(_receive_all, conn)
                sent = await wait_for(client.sendfile(file, offset, count), 30)
                client.shutdown(stdlib.SHUT_WR)
                got = await wait_for(receiving, 30)
            assert sent == len(expected)
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest()
            assert file.tell() == offset + sent  # the stdlib's rule for the file position


async def test_sendfile_falls_back_for_non_regular_files() -> None:
    data = os.urandom(300_000)
    a, b = asock.socketpair()
    with a, b:
        async with tasks() as tg:
            receiving = tg.spawn(_receive_all, b)
            file = io.BytesIO(data)
            assert await wait_for(a.sendfile(file, 5), 30) == len(data) - 5
            a.shutdown(stdlib.SHUT_WR)
            assert await wait_for(receiving, 30) == data[5:]
        assert file.tell() == len(data)


@pytest.mark.parametrize(
    ("mode", "args", "error", "message"),
    [
        ("rb", (0, 0), ValueError, "count must be a positive integer (got 0)"),
        ("rb", (0, -5), ValueError, "count must be a positive integer (got -5)"),
        ("rb", (0, "1"), TypeError, "count must be a positive integer (got '1')"),
        ("r", (), ValueError, "file should be opened in binary mode"),
    ],
)
async def test_sendfile_arguments(
    tmp_path: Path, mode: str, args: tuple[Any, ...], error: type[Exception], message: str
) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"contents")
    a, b = asock.socketpair()
    with a, b, open(path, mode) as file:
        with pytest.raises(error) as info:
            await a.sendfile(file, *args)
        assert str(info.value) == message
        with stdlib.socket() as reference, pytest.raises(error) as expected:
            reference.sendfile(file, *args)
        assert str(expected.value) == message


async def test_sendfile_needs_a_stream_socket(tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(b"contents")
    with (
        asock.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM) as udp,
        open(tmp_path / "data", "rb") as file,
        pytest.raises(ValueError) as info,
    ):
        await udp.sendfile(file)
    assert str(info.value) == "only SOCK_STREAM type sockets are supported"


# -- making and moving sockets -------------------------------------------------------


@pytest.mark.parametrize("kind", [stdlib.SOCK_STREAM, stdlib.SOCK_DGRAM])
async def test_socketpair(kind: int) -> None:
    a, b = asock.socketpair(type=kind)
    with a, b:
        assert isinstance(a, asock.socket) and isinstance(b, asock.socket)
        assert a.family == stdlib.AF_UNIX and a.type == kind
        assert not a.get_inheritable() and a.gettimeout() is None
        await a.sendall(b"one")
        assert await b.recv(10) == b"one"


async def test_socketpair_inet_as_the_stdlib() -> None:
    # Linux has no AF_INET socketpair(); asock reports it as the stdlib does.
    with pytest.raises(OSError) as expected:
        stdlib.socketpair(stdlib.AF_INET)
    with pytest.raises(type(expected.value)) as info:
        asock.socketpair(stdlib.AF_INET)
    assert str(info.value) == str(expected.value)


async def test_fromfd_duplicates() -> None:
    x, y = stdlib.socketpair()
    with x, y:
        sock = asock.fromfd(x.fileno(), stdlib.AF_UNIX, stdlib.SOCK_STREAM)
        with sock:
            assert sock.fileno() != x.fileno()
            assert not sock.get_inheritable()
            y.sendall(b"via dup")
            assert await sock.recv(10) == b"via dup"
        # The original descriptor was left open.
        x.sendall(b"still open")
        assert y.recv(20) == b"still open"


async def test_dup_is_independent() -> None:
    a, b = asock.socketpair()
    with a, b:
        a.settimeout(3.5)
        twin = a.dup()
        with twin:
            assert isinstance(twin, asock.socket)
            assert twin.fileno() != a.fileno() and twin.gettimeout() == 3.5
            assert not twin.get_inheritable()
        assert twin.fileno() == -1
        await b.sendall(b"x")
        assert await a.recv(1) == b"x"  # closing the dup left a working


async def test_detach_and_adopt() -> None:
    with asock.create_server(("127.0.0.1", 0)) as server:
        client, conn = await _connected_pair(server, stdlib.AF_INET)
        with conn:
            peer = client.getpeername()
            fd = client.detach()
            assert client.fileno() == -1
            client.close()  # nothing left to close
            with asock.socket(fileno=fd) as again:
                assert again.family == stdlib.AF_INET and again.type == stdlib.SOCK_STREAM
                assert again.getpeername() == peer
                await again.sendall(b"after detach")
                assert await conn.recv(100) == b"after detach"
                # To the stdlib and back.
                native = stdlib.socket(fileno=again.detach())
            with native:
                native.sendall(b"native")
                assert await conn.recv(100) == b"native"
                back = asock.socket(fileno=native.detach())
            with back:
                assert os.get_blocking(back.fileno()) is False
                await conn.sendall(b"back")
                assert await back.recv(100) == b"back"


# -- flags and sizes are honoured ------------------------------------------------------


async def test_receive_flags_and_sizes() -> None:
    a, b = asock.socketpair()
    with a, b:
        # A peek that has to wait first still leaves the data in place.
        async with tasks() as tg:
            peeking = tg.spawn(a.recv, 3, stdlib.MSG_PEEK)
            await anyio.sleep(0.01)
            await b.sendall(b"abcdefgh")
            assert await wait_for(peeking, 5) == b"abc"
        buf = bytearray(10)
        assert await a.recv_into(buf, 2) == 2 and buf[:2] == b"ab"
        data, _ = await a.recvfrom(2, stdlib.MSG_PEEK)
        assert data == b"cd"
        n, _ = await a.recvfrom_into(buf, 1)
        assert buf[:n] == b"c"
        data, ancdata, msg_flags, _ = await a.recvmsg(1, 0, stdlib.MSG_PEEK)
        assert (data, ancdata, msg_flags) == (b"d", [], 0)
        first, second = bytearray(1), bytearray(2)
        n, _, _, _ = await a.recvmsg_into([first, second], 0, stdlib.MSG_PEEK)
        assert (n, first + second) == (3, b"def")
        assert await a.recv(100, 0) == b"defgh"


async def test_send_flags_are_passed_on() -> None:
    with asock.create_server(("127.0.0.1", 0)) as server, asock.socket() as client:
        await client.connect(server.getsockname())
        conn, _ = await server.accept()
        with conn:
            await client.sendall(b"normal")
            assert await client.send(b"!", stdlib.MSG_OOB) == 1
            await anyio.sleep(0.05)
            assert await conn.recv(1, stdlib.MSG_OOB) == b"!"
            assert await conn.recv(100) == b"normal"
            # sendmsg passes its flags on too.
            assert await client.sendmsg([b"more"], [], stdlib.MSG_DONTWAIT) == 4
            assert await conn.recv(100) == b"more"


async def test_msg_dontwait_does_not_wait() -> None:
    a, b = asock.socketpair()
    with a, b:
        with pytest.raises(BlockingIOError):
            await wait_for(a.recv(1, stdlib.MSG_DONTWAIT), 1)
        # Also after a drained read, when receives otherwise wait first.
        await b.sendall(b"x")
        assert await a.recv(10) == b"x"
        with pytest.raises(BlockingIOError):
            await wait_for(a.recv(1, stdlib.MSG_DONTWAIT), 1)
        a.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, 4096)
        with pytest.raises(BlockingIOError):
            await wait_for(a.sendall(b"y" * (1 << 22), stdlib.MSG_DONTWAIT), 1)
