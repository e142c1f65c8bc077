"""asock.sync as a drop-in: module surface, makefile, sendfile, lifecycle."""

from __future__ import annotations

import _socket
import gc
import hashlib
import io
import os
import pickle
import socket as stdlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import asock.sync as socket

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


# -- the module -----------------------------------------------------------------


def test_every_stdlib_name_is_there() -> None:
    assert sorted(socket.__all__) == sorted(stdlib.__all__)
    missing = [name for name in stdlib.__all__ if not hasattr(socket, name)]
    assert missing == []


def test_helpers_are_the_stdlibs_own_objects() -> None:
    for name in ("getaddrinfo", "gethostbyname", "getnameinfo", "getfqdn", "inet_pton", "getdefaulttimeout",
                 "setdefaulttimeout", "dup", "error", "timeout", "gaierror", "AF_INET", "SocketIO"):
        assert getattr(socket, name) is getattr(stdlib, name), name
    # As in the stdlib, SocketType is the C base type every socket object is.
    assert socket.SocketType is _socket.socket
    with socket.socket() as s:
        assert isinstance(s, socket.SocketType)


def test_factories_give_facade_sockets(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        assert type(srv) is socket.socket
        assert srv.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        with socket.create_connection(srv.getsockname(), timeout=4) as cli:
            assert type(cli) is socket.socket
            assert cli.gettimeout() == 4
            conn, address = srv.accept()
            with conn:
                assert type(conn) is socket.socket
                assert address == cli.getsockname()
                with socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup:
                    assert type(dup) is socket.socket
                    assert dup.fileno() != conn.fileno()
                    cli.sendall(b"via dup")
                    assert dup.recv(10) == b"via dup"
    a, b = socket.socketpair()
    with a, b:
        assert type(a) is type(b) is socket.socket
        assert a.family == socket.AF_UNIX


def test_create_connection_errors() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port))
    if sys.version_info < (3, 11):
        return  # no ExceptionGroup, and the stdlib has no all_errors
    with pytest.raises(ExceptionGroup) as group:  # noqa: F821
        socket.create_connection(("127.0.0.1", port), all_errors=True)
    assert all(isinstance(e, ConnectionRefusedError) for e in group.value.exceptions)


def test_repr_pickle_and_resource_warning() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    text = repr(s)
    assert text.startswith(f"<asock.sync.socket fd={s.fileno()}, family=")
    assert f"laddr={s.getsockname()}" in text
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(s)
    s.close()
    assert "[closed]" in repr(s)
    leaked = socket.socket()
    fd = leaked.fileno()
    with pytest.warns(ResourceWarning, match="unclosed"):
        del leaked
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)  # the finalizer closed it


def test_close_is_idempotent_and_calls_after_close_fail(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    a.close()
    a.close()
    assert a.fileno() == -1
    with pytest.raises(OSError) as err:
        a.recv(1)
    assert err.value.errno == 9


def test_detach_and_dup(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.settimeout(3)
    twin = a.dup()
    with twin:
        assert type(twin) is socket.socket
        assert twin.gettimeout() == 3
        twin.sendall(b"twin")
        assert b.recv(10) == b"twin"
    fd = a.detach()
    assert a.fileno() == -1
    with socket.socket(fileno=fd) as again:
        again.sendall(b"again")
        assert b.recv(10) == b"again"


# -- makefile -----------------------------------------------------------------------


@pytest.mark.parametrize("buffering", [None, 0, 1, 7])
def test_makefile_binary(pair: tuple[socket.socket, socket.socket], buffering: int | None) -> None:
    a, b = pair
    with a.makefile("wb", buffering=buffering) as w, b.makefile("rb", buffering=buffering) as r:
        w.write(b"first line\nsecond")
        w.flush()
        assert r.readline() == b"first line\n"
        a.shutdown(socket.SHUT_WR)
        assert r.read() == b"second"


def test_makefile_text_and_rw(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    with a.makefile("rw", encoding="utf-8", newline="") as fa, b.makefile("rwb") as fb:
        assert fa.mode == "rw"
        fa.write("héllo\r\n")
        fa.flush()
        assert fb.readline() == "héllo\r\n".encode()
        fb.write(b"back\n")
        fb.flush()
        assert fa.readline() == "back\n"


def test_makefile_mode_rules(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(ValueError, match="invalid mode"):
        a.makefile("rx")
    with pytest.raises(ValueError, match="unbuffered streams must be binary"):
        a.makefile("r", buffering=0)
    assert a._io_refs == 0  # as in the stdlib: the abandoned raw file gave its reference back
    raw = a.makefile("rb", buffering=0)
    assert isinstance(raw, socket.SocketIO)
    raw.close()


def test_makefile_timeout_poisons_the_file(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.settimeout(0.05)
    with a.makefile("rb") as f:
        with pytest.raises(TimeoutError):
            f.read(1)
        b.sendall(b"x")
        with pytest.raises(OSError, match="cannot read from timed out object"):
            f.read(1)


def test_makefile_nonblocking_read_returns_none(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    a.setblocking(False)
    with a.makefile("rb", buffering=0) as f:
        assert f.read(1) is None


def test_close_is_deferred_while_files_are_open(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    f = a.makefile("rb")
    a.close()
    assert a.fileno() != -1  # still open for the file object
    b.sendall(b"still here")
    b.shutdown(socket.SHUT_WR)
    assert f.read() == b"still here"
    f.close()
    assert a.fileno() == -1


# -- sendfile -----------------------------------------------------------------------


def _receive_all(sock: socket.socket, into: list[bytes]) -> threading.Thread:
    def run() -> None:
        while chunk := sock.recv(1 << 16):
            into.append(chunk)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("how", ["sendfile", "_sendfile_use_sendfile", "_sendfile_use_send"])
def test_sendfile_regular_file(pair: tuple[socket.socket, socket.socket], tmp_path: Path, how: str) -> None:
    a, b = pair
    data = os.urandom(3 * 2**20 + 123)
    path = tmp_path / "data"
    path.write_bytes(data)
    got: list[bytes] = []
    reader = _receive_all(b, got)
    with path.open("rb") as f:
        assert getattr(a, how)(f, 100, 2**20) == 2**20
        assert f.tell() == 100 + 2**20
        assert getattr(a, how)(f, 100 + 2**20) == len(data) - 100 - 2**20
    a.shutdown(socket.SHUT_WR)
    reader.join()
    assert hashlib.sha256(b"".join(got)).digest() == hashlib.sha256(data[100:]).digest()


def test_sendfile_file_like_objects(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    data = os.urandom(300_000)
    got: list[bytes] = []
    reader = _receive_all(b, got)
    f = io.BytesIO(data)
    with pytest.raises(socket._GiveupOnSendfile):
        a._sendfile_use_sendfile(f)
    assert a.sendfile(f) == len(data)
    a.shutdown(socket.SHUT_WR)
    reader.join()
    assert b"".join(got) == data


def test_sendfile_rules(pair: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    a, _ = pair
    path = tmp_path / "data"
    path.write_bytes(b"abc")
    with path.open("r") as text, pytest.raises(ValueError, match="binary mode"):
        a.sendfile(text)
    with path.open("rb") as f:
        with pytest.raises(ValueError, match="positive integer"):
            a.sendfile(f, count=0)
        a.setblocking(False)
        with pytest.raises(ValueError, match="non-blocking"):
            a.sendfile(f)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, path.open("rb") as f, pytest.raises(
        ValueError, match="SOCK_STREAM"
    ):
        udp.sendfile(f)


def test_sendfile_timeout_reports_progress(pair: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    a, b = pair
    path = tmp_path / "big"
    path.write_bytes(b"y" * (8 * 2**20))
    a.settimeout(0.1)
    with path.open("rb") as f:
        with pytest.raises(TimeoutError) as err:
            a.sendfile(f)  # nobody reads: the socket buffer fills up
        sent = err.value.bytes_sent  # type: ignore[attr-defined]
        assert 0 < sent < 8 * 2**20
        assert f.tell() == sent
    a.shutdown(socket.SHUT_WR)
    received = 0
    while chunk := b.recv(1 << 20):
        received += len(chunk)
    assert received == sent


@pytest.mark.parametrize(("timeout", "fd_blocking"), [(None, True), (0.0, False), (2.0, False)])
def test_detach_hands_over_the_descriptor_as_the_stdlib_would(timeout: float | None, fd_blocking: bool) -> None:
    a, b = socket.socketpair()
    with b:
        a.settimeout(timeout)
        fd = a.detach()
        assert os.get_blocking(fd) is fd_blocking
        # A stdlib socket adopting it in blocking mode really blocks.
        with stdlib.socket(fileno=fd) as plain:
            if fd_blocking:
                sender = threading.Timer(0.1, b.sendall, (b"late",))
                sender.start()
                assert plain.recv(10) == b"late"
                sender.join()


def test_selectors_and_select_take_facade_sockets(pair: tuple[socket.socket, socket.socket]) -> None:
    import select
    import selectors

    a, b = pair
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, "a")
        assert sel.select(0) == []
        b.sendall(b"x")
        [(key, events)] = sel.select(5)
        assert key.fileobj is a and events == selectors.EVENT_READ
    assert select.select([a], [], [], 5)[0] == [a]


def test_shutdown_from_another_thread_wakes_a_blocked_receive(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    closer = threading.Timer(0.1, a.shutdown, (socket.SHUT_RDWR,))
    closer.start()
    try:
        assert a.recv(10) == b""
    finally:
        closer.join()
