"""asock.sync: the stdlib's blocking, non-blocking and timeout modes, reproduced
over a descriptor that stays non-blocking; deadlines; signals (PEP 475)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import asock.sync as socket

pytestmark = pytest.mark.timeout(30)


def _nonblocking_fd(sock: socket.socket) -> bool:
    return bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


def _full_unix_listener(stack: contextlib.ExitStack, path: str) -> socket.socket:
    """An AF_UNIX listener whose accept queue is full: a connect to it has nowhere to go."""
    srv = stack.enter_context(socket.socket(socket.AF_UNIX))
    srv.bind(path)
    srv.listen(0)
    while True:
        filler = stack.enter_context(socket.socket(socket.AF_UNIX))
        filler.setblocking(False)
        if filler.connect_ex(path) != 0:
            return srv


def _later(delay: float, action: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# -- modes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "timeout", "blocking"),
    [
        (lambda s: s.setblocking(True), None, True),
        (lambda s: s.setblocking(False), 0.0, False),
        (lambda s: s.settimeout(None), None, True),
        (lambda s: s.settimeout(0), 0.0, False),
        (lambda s: s.settimeout(2.5), 2.5, True),
        (lambda s: s.setblocking(2**40), None, True),
    ],
)
def test_mode_switches_keep_descriptor_nonblocking(
    pair: tuple[socket.socket, socket.socket], change: Callable[[socket.socket], None], timeout: float | None,
    blocking: bool,
) -> None:
    a, _ = pair
    change(a)
    assert a.gettimeout() == timeout
    assert a.timeout == timeout
    assert a.getblocking() is blocking
    assert _nonblocking_fd(a)


def test_new_sockets_start_in_the_default_mode_and_nonblocking_fd() -> None:
    assert socket.getdefaulttimeout() is None
    with socket.socket() as s:
        assert s.gettimeout() is None
        assert _nonblocking_fd(s)
    socket.setdefaulttimeout(2.5)
    try:
        with socket.socket() as s:
            assert s.gettimeout() == 2.5
    finally:
        socket.setdefaulttimeout(None)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as s:
        assert s.gettimeout() == 0.0
        assert s.type == socket.SOCK_STREAM


def test_blocking_fd_handed_in_is_made_nonblocking() -> None:
    import socket as stdlib

    raw = stdlib.socket()
    raw.setblocking(True)
    with socket.socket(fileno=raw.detach()) as s:
        assert _nonblocking_fd(s)
        assert s.gettimeout() is None


def test_settimeout_rejects_bad_values_like_the_stdlib(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    import socket as stdlib

    with stdlib.socket() as ref:
        for bad in (-1, -0.5, float("nan"), "1", 1e300):
            with pytest.raises(Exception) as expected:
                ref.settimeout(bad)
            with pytest.raises(type(expected.value)):
                a.settimeout(bad)
    a.close()
    with pytest.raises(OSError) as err:
        a.settimeout(1)
    assert err.value.errno == errno.EBADF


def test_blocking_recv_waits_for_data(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sender = _later(0.1, lambda: b.sendall(b"late"))
    try:
        assert a.recv(10) == b"late"
    finally:
        sender.join()


def test_nonblocking_calls_raise_blockingioerror_at_once(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    a.setblocking(False)
    for call in (lambda: a.recv(1), lambda: a.recv_into(bytearray(1)), lambda: a.recvfrom(1), lambda: a.recvmsg(1)):
        with pytest.raises(BlockingIOError):
            call()
    with pytest.raises(BlockingIOError) as err:
        while True:
            a.send(b"x" * 65536)
    assert err.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)


def test_nonblocking_accept_and_connect() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv, socket.socket() as cli:
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.accept()
        cli.setblocking(False)
        assert cli.connect_ex(srv.getsockname()) in (0, errno.EINPROGRESS)
        srv.settimeout(5)
        conn, _ = srv.accept()
        with conn:
            assert type(conn) is socket.socket
            assert conn.gettimeout() is None  # the default timeout, not the listener's


@pytest.mark.parametrize("method", ["recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into"])
def test_timeout_mode_receive_times_out(pair: tuple[socket.socket, socket.socket], method: str) -> None:
    a, b = pair
    a.settimeout(0.05)
    args: dict[str, tuple[Any, ...]] = {
        "recv": (1,), "recvfrom": (1,), "recvmsg": (1,),
        "recv_into": (bytearray(1),), "recvfrom_into": (bytearray(1),), "recvmsg_into": ([bytearray(1)],),
    }
    with pytest.raises(TimeoutError) as err:
        getattr(a, method)(*args[method])
    assert err.value.args == ("timed out",)
    assert err.value.errno is None
    # Nothing was lost and the socket still works.
    b.sendall(b"z")
    assert a.recv(1) == b"z"


def test_timeout_mode_accept_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(0.05)
        with pytest.raises(TimeoutError, match="timed out"):
            srv.accept()


def test_msg_dontwait_never_waits_in_blocking_mode(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(BlockingIOError):
        a.recv(1, socket.MSG_DONTWAIT)
    with pytest.raises(BlockingIOError):
        while True:
            a.sendall(b"x" * 65536, socket.MSG_DONTWAIT)


def test_sendall_deadline_covers_the_whole_call(pair: tuple[socket.socket, socket.socket]) -> None:
    """A slow reader frees space every few ms, so no single wait is long; the
    call as a whole must still stop at its deadline, and report exactly how
    much the kernel took."""
    a, b = pair
    received = 0
    stop = threading.Event()

    def slow_reader() -> None:
        nonlocal received
        while not stop.is_set():
            received += len(b.recv(16384))
            time.sleep(0.01)

    reader = threading.Thread(target=slow_reader)
    reader.start()
    total = 16 * 2**20
    a.settimeout(0.3)
    try:
        with pytest.raises(TimeoutError) as err:
            a.sendall(b"x" * total)
    finally:
        stop.set()
        reader.join()
    sent = err.value.bytes_sent  # type: ignore[attr-defined]
    assert 0 < sent < total
    a.shutdown(socket.SHUT_WR)
    b.settimeout(5)
    while chunk := b.recv(65536):
        received += len(chunk)
    assert received == sent


def test_connect_timeout_on_a_full_unix_backlog(tmp_path: Any) -> None:
    path = str(tmp_path / "full.sock")
    with contextlib.ExitStack() as stack:
        _full_unix_listener(stack, path)
        with socket.socket(socket.AF_UNIX) as cli:
            cli.settimeout(0.1)
            with pytest.raises(TimeoutError, match="timed out"):
                cli.connect(path)
        with socket.socket(socket.AF_UNIX) as cli:
            cli.settimeout(0.1)
            assert cli.connect_ex(path) == errno.EWOULDBLOCK


def test_connect_refused_and_connect_ex() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    with socket.socket() as cli:
        assert cli.connect_ex(address) == errno.ECONNREFUSED
    with socket.socket() as cli, pytest.raises(ConnectionRefusedError):
        cli.settimeout(5)
        cli.connect(address)


# -- signals (PEP 475) -----------------------------------------------------------


@contextlib.contextmanager
def alarms(handler: Callable[[int, Any], None], every: float = 0.02) -> Iterator[list[int]]:
    """SIGALRM every ``every`` seconds, restoring whatever used it before (pytest-timeout)."""
    calls: list[int] = []

    def counting(signum: int, frame: Any) -> None:
        calls.append(signum)
        handler(signum, frame)

    old_handler = signal.signal(signal.SIGALRM, counting)
    old_timer = signal.setitimer(signal.ITIMER_REAL, every, every)
    try:
        yield calls
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_timer[0]:
            signal.setitimer(signal.ITIMER_REAL, *old_timer)


def _ignore(signum: int, frame: Any) -> None:
    pass


class Interrupted(Exception):
    pass


def _raise(signum: int, frame: Any) -> None:
    raise Interrupted


def test_signal_during_blocking_recv_resumes(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sender = _later(0.3, lambda: b.sendall(b"done"))
    try:
        with alarms(_ignore) as calls:
            assert a.recv(10) == b"done"
    finally:
        sender.join()
    assert calls, "no signal arrived during the wait"


def test_signal_during_timed_recv_keeps_the_deadline(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    a.settimeout(0.3)
    start = time.monotonic()
    with alarms(_ignore) as calls, pytest.raises(TimeoutError):
        a.recv(10)
    elapsed = time.monotonic() - start
    assert len(calls) >= 2
    # Neither cut short by the signals nor restarted after each of them.
    assert 0.29 <= elapsed < 3


def test_signal_during_timed_connect_keeps_the_deadline(tmp_path: Any) -> None:
    path = str(tmp_path / "full.sock")
    with contextlib.ExitStack() as stack:
        _full_unix_listener(stack, path)
        with socket.socket(socket.AF_UNIX) as cli:
            cli.settimeout(0.3)
            start = time.monotonic()
            with alarms(_ignore) as calls, pytest.raises(TimeoutError):
                cli.connect(path)
            assert calls
            assert 0.29 <= time.monotonic() - start < 3


def test_raising_signal_handler_aborts_blocking_recv(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    with alarms(_raise), pytest.raises(Interrupted):
        a.recv(10)
    # The socket is intact: nothing was consumed.
    b.sendall(b"after")
    assert a.recv(10) == b"after"


def test_raising_signal_handler_aborts_sendall_with_progress(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    payload = b"x" * (64 * 2**20)
    with alarms(_raise, every=0.05), pytest.raises(Interrupted) as err:
        a.sendall(payload)
    sent = err.value.bytes_sent  # type: ignore[attr-defined]
    a.shutdown(socket.SHUT_WR)
    received = 0
    while chunk := b.recv(2**20):
        received += len(chunk)
    assert received == sent > 0


# -- threads ----------------------------------------------------------------------


def test_several_threads_wait_on_one_socket() -> None:
    """A pre-threaded server: each thread blocks in accept() on one listener."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        results: list[bytes] = []

        def worker() -> None:
            conn, _ = srv.accept()
            with conn:
                results.append(conn.recv(10))

        workers = [threading.Thread(target=worker) for _ in range(3)]
        for w in workers:
            w.start()
        time.sleep(0.05)
        for i in range(3):
            with socket.create_connection(srv.getsockname(), timeout=5) as c:
                c.sendall(b"%d" % i)
        for w in workers:
            w.join(10)
        assert sorted(results) == [b"0", b"1", b"2"]


def test_full_duplex_from_two_threads(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    payload = os.urandom(4 * 2**20)
    echoed = bytearray()

    def echo() -> None:
        while data := b.recv(65536):
            b.sendall(data)
        b.shutdown(socket.SHUT_WR)

    def read_back() -> None:
        while data := a.recv(65536):
            echoed.extend(data)

    threads = [threading.Thread(target=echo), threading.Thread(target=read_back)]
    for t in threads:
        t.start()
    a.sendall(payload)
    a.shutdown(socket.SHUT_WR)
    for t in threads:
        t.join(20)
    assert bytes(echoed) == payload


# -- receives right after a short read (they wait before trying) -----------------


def _drain_once(a: socket.socket, b: socket.socket) -> None:
    b.sendall(b"1")
    assert a.recv(10) == b"1"  # a short read: the next receive waits first


@pytest.mark.parametrize("method", ["recv", "recv_into"])
def test_after_short_read_blocking_receive_waits_for_data(
    pair: tuple[socket.socket, socket.socket], method: str
) -> None:
    a, b = pair
    _drain_once(a, b)
    sender = _later(0.1, lambda: b.sendall(b"late"))
    try:
        if method == "recv":
            assert a.recv(10) == b"late"
        else:
            buf = bytearray(10)
            assert a.recv_into(buf) == 4
            assert buf[:4] == b"late"
    finally:
        sender.join()


def test_after_short_read_data_already_there_is_returned(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    _drain_once(a, b)
    b.sendall(b"ready")
    a.settimeout(0.5)
    assert a.recv(5) == b"ready"
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        a.recv(5)


@pytest.mark.parametrize("method", ["recv", "recv_into"])
def test_after_short_read_timeout_and_signals_keep_one_deadline(
    pair: tuple[socket.socket, socket.socket], method: str
) -> None:
    a, b = pair
    _drain_once(a, b)
    a.settimeout(0.3)
    start = time.monotonic()
    with alarms(_ignore) as calls, pytest.raises(TimeoutError, match="timed out"):
        if method == "recv":
            a.recv(10)
        else:
            a.recv_into(bytearray(10))
    assert calls
    assert 0.29 <= time.monotonic() - start < 3
    b.sendall(b"kept")
    assert a.recv(10) == b"kept"


def test_after_short_read_raising_handler_aborts(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    _drain_once(a, b)
    with alarms(_raise), pytest.raises(Interrupted):
        a.recv(10)
    b.sendall(b"intact")
    assert a.recv(10) == b"intact"


def test_after_short_read_msg_dontwait_does_not_wait(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    _drain_once(a, b)
    with pytest.raises(BlockingIOError):
        a.recv(10, socket.MSG_DONTWAIT)


@pytest.mark.parametrize(
    "bad_call",
    [
        lambda a: a.recv(-1),
        lambda a: a.recv("1"),
        lambda a: a.recv(1, None),
        lambda a: a.recv_into(bytearray(1), 5),
        lambda a: a.recv_into(b"read-only"),
        lambda a: a.recv_into(memoryview(b"read-only")),
        lambda a: a.recv_into(bytearray(1), -1),
    ],
)
def test_after_short_read_bad_arguments_fail_at_once(
    pair: tuple[socket.socket, socket.socket], bad_call: Callable[[socket.socket], object]
) -> None:
    """Blocking mode, nothing to read: a receive that waited before checking
    its arguments would hang here instead of raising."""
    a, b = pair
    _drain_once(a, b)
    with pytest.raises((TypeError, ValueError)):
        bad_call(a)


def test_nonblocking_sendall_reports_what_it_sent(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.setblocking(False)
    with pytest.raises(BlockingIOError) as err:
        a.sendall(b"x" * (8 * 2**20))
    sent = err.value.bytes_sent  # type: ignore[attr-defined]
    assert 0 < sent < 8 * 2**20
    a.shutdown(socket.SHUT_WR)
    received = 0
    while chunk := b.recv(2**20):
        received += len(chunk)
    assert received == sent
