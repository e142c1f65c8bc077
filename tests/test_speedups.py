"""The optional C extension (``asock._speedups``) against the pure-Python methods it replaces.

``asock.sync.socket``'s ``recv``, ``recv_into``, ``send`` and ``sendall``
are the extension's when it was built and ``ASOCK_NO_EXTENSIONS`` is not set,
else the pure-Python ones, which stay the reference
(``asock._sync_socket.REFERENCE``).  Checked here:

- which implementation is in use, and that the environment variable selects
  it at import time (``ASOCK_REQUIRE_EXTENSIONS=1`` makes a missing extension
  a failure, for CI, where it must have been built);
- that the C methods look like methods to ``inspect`` and ``help``;
- differential: the same call on two sockets in the same state, one through
  the C method, one through the Python method, must end the same way (the
  same result and state afterwards, or the same exception: type, arguments,
  errno, ``bytes_sent``, nothing chained);
- the facade's own suites (modes, timeouts, signals, close, bad arguments,
  bare exceptions, CPython's ``test_socket`` and ``test_timeout``), run once
  more in a subprocess with the other implementation.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import importlib.util
import inspect
import os
import pydoc
import signal
import socket as stdlib
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import asock.sync
from asock import _sync_socket

pytestmark = pytest.mark.timeout(60)

METHODS = ("recv", "recv_into", "send", "sendall")
ROOT = Path(__file__).resolve().parent.parent
BUILT = importlib.util.find_spec("asock._speedups") is not None
DISABLED = os.environ.get("ASOCK_NO_EXTENSIONS", "") not in ("", "0")

needs_extension = pytest.mark.skipif(not _sync_socket.EXTENSION, reason="the C extension is not in use")


# -- which implementation -------------------------------------------------------------


def test_the_extension_is_in_use_when_built_and_not_disabled() -> None:
    methods = {name: asock.sync.socket.__dict__[name] for name in METHODS}
    if DISABLED or not BUILT:
        if os.environ.get("ASOCK_REQUIRE_EXTENSIONS") and not DISABLED:
            pytest.fail("ASOCK_REQUIRE_EXTENSIONS is set, but asock._speedups was not built")
        assert _sync_socket.EXTENSION is False
        assert methods == _sync_socket.REFERENCE
        return
    assert _sync_socket.EXTENSION is True
    for name, method in methods.items():
        assert type(method).__name__ == "method_descriptor", name
        assert method.__objclass__ is asock.sync.socket
        assert method is not _sync_socket.REFERENCE[name]
    # One class: the stdlib-facing one, whose subclasses inherit the C methods.
    assert asock.sync.socket is _sync_socket.socket

    class Sub(asock.sync.socket):
        pass

    assert Sub.recv is asock.sync.socket.recv


def _implementation_in_a_fresh_process(value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ASOCK_NO_EXTENSIONS"}
    if value is not None:
        env["ASOCK_NO_EXTENSIONS"] = value
    code = (
        "import asock.sync, asock._sync_socket as m;"
        "print(m.EXTENSION, type(asock.sync.socket.__dict__['recv']).__name__)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()


@pytest.mark.parametrize("value", [None, "", "0", "1", "yes"])
def test_the_environment_selects_the_implementation_at_import(value: str | None) -> None:
    disabled = value not in (None, "", "0")
    if disabled or not BUILT:
        assert _implementation_in_a_fresh_process(value) == "False function"
    else:
        assert _implementation_in_a_fresh_process(value) == "True method_descriptor"


# -- what inspect and help see ----------------------------------------------------------


@needs_extension
@pytest.mark.parametrize("name", METHODS)
def test_c_methods_introspect_like_the_python_ones(name: str) -> None:
    method = getattr(asock.sync.socket, name)
    reference = _sync_socket.REFERENCE[name]
    assert method.__name__ == name
    assert method.__qualname__ == f"socket.{name}"
    # The stdlib's own docstring.
    assert method.__doc__ == getattr(_socket.socket, name).__doc__.replace(
        "it's impossible\nto tell how much data has been sent.",
        "the exception it\nraises carries bytes_sent, how many bytes were sent.",
    )
    ours = list(inspect.signature(method).parameters.values())
    theirs = list(inspect.signature(reference).parameters.values())
    assert [(p.name, p.default) for p in ours] == [(p.name, p.default) for p in theirs]
    assert [p.kind for p in ours[1:]] == [p.kind for p in theirs[1:]]
    with asock.sync.socket() as sock:
        bound = getattr(sock, name)
        assert bound.__self__ is sock
        assert list(inspect.signature(bound).parameters) == [p.name for p in theirs[1:]]
    assert f"{name}(self, " in pydoc.render_doc(asock.sync.socket, renderer=pydoc.plaintext)


# -- differential: C method and Python method on twin sockets ----------------------------


class Twin:
    """One side of the comparison: a socketpair whose ``a`` end is driven, and how to call a method."""

    def __init__(self, use_c: bool, timeout: float | None, hint: int, pending: bytes, state: str) -> None:
        self.use_c = use_c
        self.a, self.b = asock.sync.socketpair()
        self.a.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, 16384)
        self.a.settimeout(timeout)
        self.a._hint = hint
        if pending:
            self.b.sendall(pending)
        if state == "peer closed":
            self.b.close()
        elif state == "closed":
            self.a.close()
        elif state == "send buffer full":
            self.a.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    self.a.send(b"f" * 65536)
            self.a.settimeout(timeout)

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        method = getattr(asock.sync.socket, name) if self.use_c else _sync_socket.REFERENCE[name]
        return method(self.a, *args, **kwargs)

    def close(self) -> None:
        self.a.close()
        self.b.close()


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:
        return "raised", exc


def _describe(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc),
        "args": exc.args,
        "str": str(exc),
        "errno": getattr(exc, "errno", None),
        "bytes_sent": getattr(exc, "bytes_sent", "absent"),
        "context": exc.__context__,
        "cause": exc.__cause__,
        "suppress_context": exc.__suppress_context__,
    }


def _copy(value: Any) -> Any:
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, memoryview):
        with contextlib.suppress(ValueError):  # a released one goes as it is
            if not value.readonly and value.c_contiguous:
                return memoryview(bytearray(value.tobytes()))
    return value


def _contents(value: Any) -> Any:
    """What a buffer argument holds afterwards (None for anything else)."""
    if isinstance(value, (bytearray, memoryview)):
        with contextlib.suppress(ValueError):  # released
            return bytes(value)
    return None


def compare(
    name: str,
    *args: Any,
    timeout: float | None = 0.0,
    hint: int = 0,
    pending: bytes = b"",
    state: str = "open",
    **kwargs: Any,
) -> tuple[str, Any]:
    """Make the call through both implementations on twin sockets; they must end the same way."""
    twins = [Twin(use_c, timeout, hint, pending, state) for use_c in (True, False)]
    try:
        outcomes = []
        arguments = []
        for twin in twins:
            own_args = tuple(_copy(a) for a in args)
            own_kwargs = {k: _copy(v) for k, v in kwargs.items()}
            outcomes.append(_outcome(lambda twin=twin, a=own_args, k=own_kwargs: twin.call(name, a, k)))
            arguments.append((own_args, own_kwargs))
        (c_kind, c_value), (py_kind, py_value) = outcomes
        where = f"{name}{args!r}{kwargs!r} (timeout={timeout}, hint={hint}, state={state})"
        assert c_kind == py_kind, f"{where}: C {c_value!r}, Python {py_value!r}"
        if c_kind == "raised":
            assert _describe(c_value) == _describe(py_value), where
        else:
            assert c_value == py_value, where
        # The same state afterwards: the hint, the mode, what the buffers got.
        c_twin, py_twin = twins
        if state != "closed":
            assert c_twin.a._hint == py_twin.a._hint, where
            assert c_twin.a.gettimeout() == py_twin.a.gettimeout(), where
        c_bufs, py_bufs = ([_contents(a) for a in own] for own, _ in arguments)
        assert c_bufs == py_bufs, where
        return outcomes[0]
    finally:
        for twin in twins:
            twin.close()


MODES = [None, 0.0, 0.05]
MODE_IDS = ["blocking", "non-blocking", "timeout"]


@needs_extension
@pytest.mark.parametrize("timeout", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("hint", [0, 1, 8])
@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("recv", (10,), {}),
        ("recv", (4,), {}),
        ("recv", (10, 0), {}),
        ("recv", (10, stdlib.MSG_PEEK), {}),
        ("recv", (True,), {}),
        ("recv_into", (bytearray(10),), {}),
        ("recv_into", (bytearray(10), 4), {}),
        ("recv_into", (memoryview(bytearray(10)),), {}),
        ("recv_into", (memoryview(bytearray(10))[2:],), {"flags": 0}),
        ("recv_into", (), {"buffer": bytearray(10), "nbytes": 3}),
        ("recv_into", (bytearray(10),), {"flags": stdlib.MSG_PEEK}),
        ("send", (b"data",), {}),
        ("send", (bytearray(b"data"), 0), {}),
        ("sendall", (b"data",), {}),
        ("sendall", (memoryview(b"data"),), {}),
        ("sendall", (b"",), {}),
    ],
)
def test_calls_that_complete(
    timeout: float | None, hint: int, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    compare(name, *args, timeout=timeout, hint=hint, pending=b"0123456789abcdef", **kwargs)


@needs_extension
@pytest.mark.parametrize("timeout", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("hint", [0, 8])
@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        # Bad arguments fail at once, before any wait (nothing is pending:
        # a call that waited first would hang in blocking mode).
        ("recv", (-1,), {}),
        ("recv", ("1",), {}),
        ("recv", (1, None), {}),
        ("recv", (1.5,), {}),
        ("recv", (), {}),
        ("recv", (1, 0, 0), {}),
        ("recv", tuple(range(1, 12)), {}),
        ("recv", (), {"bufsize": 1}),
        ("recv_into", (bytearray(1), 5), {}),
        ("recv_into", (b"read-only",), {}),
        ("recv_into", (memoryview(b"read-only"),), {}),
        ("recv_into", (bytearray(1), -1), {}),
        ("recv_into", (memoryview(bytearray(8))[::2],), {}),
        ("recv_into", ("text",), {}),
        ("recv_into", (), {}),
        ("recv_into", (bytearray(1), 0, 0, 0), {}),
        ("recv_into", (bytearray(1),), {"buffer": bytearray(1)}),
        ("recv_into", (), {"buf": bytearray(1)}),
        ("recv_into", (bytearray(1),), {"nbytes": "1"}),
        ("send", ("text",), {}),
        ("send", (b"x", "0"), {}),
        ("send", (), {}),
        ("send", (), {"data": b"x"}),
        ("send", (memoryview(b"abcdefgh")[::2],), {}),
        ("sendall", ("text",), {}),
        ("sendall", (b"x", None), {}),
        ("sendall", (), {}),
        ("sendall", (b"x",), {"flags": 0}),
        ("sendall", (memoryview(b"abcdefgh")[::2],), {}),
        ("sendall", (object(),), {}),
    ],
)
def test_bad_arguments(
    timeout: float | None, hint: int, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    kind, _ = compare(name, *args, timeout=timeout, hint=hint, **kwargs)
    assert kind == "raised"


@needs_extension
@pytest.mark.parametrize("hint", [0, 8])
def test_a_released_memoryview(hint: int) -> None:
    view = memoryview(bytearray(4))
    view.release()
    kind, exc = compare("recv_into", view, timeout=None, hint=hint)
    assert kind == "raised" and isinstance(exc, ValueError)


@needs_extension
@pytest.mark.parametrize("timeout", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("hint", [0, 8])
@pytest.mark.parametrize(
    ("name", "args"),
    [("recv", (10,)), ("recv_into", (bytearray(10),)), ("send", (b"x",)), ("sendall", (b"x",))],
)
def test_on_a_closed_socket(timeout: float | None, hint: int, name: str, args: tuple[Any, ...]) -> None:
    kind, exc = compare(name, *args, timeout=timeout, hint=hint, state="closed")
    assert kind == "raised" and exc.errno == errno.EBADF


@needs_extension
@pytest.mark.parametrize("hint", [0, 8])
@pytest.mark.parametrize(("name", "args"), [("recv", (10,)), ("recv_into", (bytearray(10),))])
def test_at_the_end_of_the_stream(hint: int, name: str, args: tuple[Any, ...]) -> None:
    for timeout in MODES:
        kind, value = compare(name, *args, timeout=timeout, hint=hint, state="peer closed")
        assert (kind, value) in (("ok", b""), ("ok", 0))


@needs_extension
@pytest.mark.parametrize("hint", [0, 8])
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("recv", (10,)),
        ("recv_into", (bytearray(10),)),
        ("recv", (10, stdlib.MSG_PEEK)),
    ],
)
def test_receives_that_would_block(hint: int, name: str, args: tuple[Any, ...]) -> None:
    kind, exc = compare(name, *args, timeout=0.0, hint=hint)
    assert kind == "raised" and type(exc) is BlockingIOError
    kind, exc = compare(name, *args, timeout=0.05, hint=hint)
    assert kind == "raised" and type(exc) is TimeoutError
    # MSG_DONTWAIT in blocking mode: the kernel decides, at once.
    dontwait = (args[0], stdlib.MSG_DONTWAIT) if name == "recv" else (args[0], 0, stdlib.MSG_DONTWAIT)
    kind, exc = compare(name, *dontwait, timeout=None, hint=hint)
    assert kind == "raised" and type(exc) is BlockingIOError


@needs_extension
@pytest.mark.parametrize("name", ["send", "sendall"])
def test_sends_that_would_block(name: str) -> None:
    kind, exc = compare(name, b"x" * 100, timeout=0.0, state="send buffer full")
    assert kind == "raised" and type(exc) is BlockingIOError
    kind, exc = compare(name, b"x" * 100, timeout=0.05, state="send buffer full")
    assert kind == "raised" and type(exc) is TimeoutError
    kind, exc = compare(name, b"x" * 100, stdlib.MSG_DONTWAIT, timeout=None, state="send buffer full")
    assert kind == "raised" and type(exc) is BlockingIOError


@needs_extension
@pytest.mark.parametrize("timeout", [0.0, 0.05], ids=["non-blocking", "timeout"])
def test_sendall_cut_short_reports_bytes_sent(timeout: float) -> None:
    """Nobody reads: the send buffer fills part way through; both report the same progress."""
    kind, exc = compare("sendall", b"x" * (4 * 2**20), timeout=timeout)
    assert kind == "raised"
    assert 0 < exc.bytes_sent < 4 * 2**20


# -- what needs a peer or a signal: each implementation on its own ---------------------------


IMPLEMENTATIONS = pytest.mark.parametrize(
    "use_c", [pytest.param(True, marks=needs_extension), False], ids=["C", "Python"]
)


def _method(sock: Any, name: str, use_c: bool) -> Any:
    """``sock``'s method ``name``: the C one (the class's) or the Python one (the reference)."""
    return getattr(sock, name) if use_c else _sync_socket.REFERENCE[name].__get__(sock)


@IMPLEMENTATIONS
@pytest.mark.parametrize("name", ["recv", "recv_into"])
def test_wait_first_then_data_arrives(use_c: bool, name: str) -> None:
    a, b = asock.sync.socketpair()
    with a, b:
        a._hint = 8
        sender = threading.Timer(0.05, b.sendall, (b"late",))
        sender.start()
        try:
            if name == "recv":
                assert _method(a, name, use_c)(10) == b"late"
            else:
                buf = bytearray(10)
                assert _method(a, name, use_c)(buf) == 4
                assert buf[:4] == b"late"
        finally:
            sender.join()
        assert a._hint == 8  # a short read: the next receive waits first again


@IMPLEMENTATIONS
def test_full_reads_count_the_hint_down(use_c: bool) -> None:
    a, b = asock.sync.socketpair()
    with a, b:
        a._hint = 3
        b.sendall(b"x" * 100)
        recv = _method(a, "recv", use_c)
        assert [len(recv(10)) for _ in range(4)] == [10] * 4
        assert a._hint == 0
        assert len(recv(100)) == 60
        assert a._hint == 8


@IMPLEMENTATIONS
def test_a_subclass_s_attributes_are_honoured(use_c: bool) -> None:
    """On a subclass, the mode is read as an attribute, whatever the subclass makes of it."""
    seen: list[str] = []

    class NonBlocking(asock.sync.socket):
        __slots__ = ()

        @property
        def _timeout(self) -> float:  # type: ignore[override]
            seen.append("read")
            return 0.0

        @_timeout.setter
        def _timeout(self, value: float | None) -> None:
            pass

    x, y = stdlib.socketpair()
    with y, NonBlocking(fileno=x.detach()) as a:
        a._hint = 8
        with pytest.raises(BlockingIOError):  # no wait: the mode it reads is non-blocking
            _method(a, "recv", use_c)(1)
        assert seen
        y.sendall(b"abc")
        assert _method(a, "recv", use_c)(10) == b"abc"
        assert a._hint == 8


@needs_extension
@pytest.mark.parametrize("timeout", [0.0, 0.05], ids=["non-blocking", "timeout"])
def test_a_bufsize_too_large_for_the_native_call(timeout: float) -> None:
    """An int too large for the native call's bufsize: OverflowError.  After a short read, in
    blocking or timeout mode, both implementations wait for readiness before finding out
    (``_core.wait_first`` takes any positive int), as this shows in timeout mode."""
    kind, exc = compare("recv", 2**70, timeout=timeout, hint=8)
    assert kind == "raised" and type(exc) is OverflowError


@IMPLEMENTATIONS
@pytest.mark.parametrize("hint", [0, 8])
def test_a_timeout_longer_than_poll_takes(use_c: bool, hint: int) -> None:
    """35 days: more milliseconds than poll() takes at once; the wait is cut to what it takes."""
    a, b = asock.sync.socketpair()
    with a, b:
        a.settimeout(35 * 86400.0)
        a._hint = hint
        sender = threading.Timer(0.05, b.sendall, (b"late",))
        sender.start()
        try:
            assert _method(a, "recv", use_c)(10) == b"late"
        finally:
            sender.join()


@IMPLEMENTATIONS
@pytest.mark.parametrize("hint", [0, 8])
def test_a_mode_that_is_an_int(use_c: bool, hint: int) -> None:
    """``_timeout`` holds what settimeout() stores (None or a float); an int is taken as its float."""
    a, b = asock.sync.socketpair()
    with a, b:
        a._hint = hint
        a._timeout = 0  # type: ignore[assignment]
        with pytest.raises(BlockingIOError):
            _method(a, "recv", use_c)(10)
        a._timeout = 1  # type: ignore[assignment]
        a._hint = hint
        sender = threading.Timer(0.05, b.sendall, (b"late",))
        sender.start()
        try:
            assert _method(a, "recv", use_c)(10) == b"late"
        finally:
            sender.join()


@IMPLEMENTATIONS
def test_a_reset_during_the_wait_before_a_receive(use_c: bool) -> None:
    """The error the kernel reports after the wait is the errno's own exception."""
    with asock.sync.create_server(("127.0.0.1", 0)) as srv, asock.sync.create_connection(
        srv.getsockname(), timeout=5
    ) as cli:
        conn, _ = srv.accept()
        conn.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_LINGER, struct.pack("ii", 1, 0))
        cli._hint = 8
        closer = threading.Timer(0.05, conn.close)
        closer.start()
        try:
            with pytest.raises(ConnectionResetError) as err:
                _method(cli, "recv", use_c)(10)
        finally:
            closer.join()
            conn.close()
        assert err.value.errno == errno.ECONNRESET
        assert err.value.__context__ is None
        assert cli._hint == 8


@IMPLEMENTATIONS
def test_threads_waiting_first_on_one_socket_each_get_a_message(use_c: bool) -> None:
    """Each wake-up reaches every waiter; the ones that find nothing wait again."""
    a, b = asock.sync.socketpair(stdlib.AF_UNIX, stdlib.SOCK_DGRAM)
    with a, b:
        a.settimeout(5)
        got: list[bytes] = []

        def receive() -> None:
            a._hint = 8
            got.append(_method(a, "recv", use_c)(100))

        threads = [threading.Thread(target=receive) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(3):
            time.sleep(0.05)
            b.send(b"%d" % i)
        for t in threads:
            t.join(10)
        assert sorted(got) == [b"0", b"1", b"2"]


@IMPLEMENTATIONS
def test_the_peer_closing_during_sendall(use_c: bool) -> None:
    a, b = asock.sync.socketpair()
    with a, b:
        received = 0

        def read_some_then_close() -> None:
            nonlocal received
            while received < 2**20:
                received += len(b.recv(65536))
            b.close()

        reader = threading.Thread(target=read_some_then_close)
        reader.start()
        try:
            with pytest.raises((BrokenPipeError, ConnectionResetError)) as err:
                _method(a, "sendall", use_c)(b"x" * (64 * 2**20))
        finally:
            reader.join()
        assert err.value.bytes_sent >= received  # type: ignore[attr-defined]
        assert err.value.__context__ is None


class IntLike:
    """Flags that are not an int: the C method takes them through __index__ on every call."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


@IMPLEMENTATIONS
def test_sendall_with_flags_that_are_not_an_int(use_c: bool) -> None:
    a, b = asock.sync.socketpair()
    with a, b:
        a.settimeout(0.05)
        with pytest.raises(TimeoutError) as err:
            _method(a, "sendall", use_c)(b"x" * (8 * 2**20), IntLike(0))
        sent = err.value.bytes_sent  # type: ignore[attr-defined]
        a.shutdown(stdlib.SHUT_WR)
        received = 0
        while chunk := b.recv(2**20):
            received += len(chunk)
        assert received == sent > 0


@IMPLEMENTATIONS
def test_a_deadline_survives_signals_and_a_raising_handler_ends_the_wait(use_c: bool) -> None:
    if not hasattr(signal, "setitimer"):
        pytest.skip("needs signal.setitimer")
    calls: list[int] = []
    raising: list[bool] = []

    class Stop(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        calls.append(signum)
        if raising:
            raise Stop

    old = signal.signal(signal.SIGALRM, handler)
    try:
        a, b = asock.sync.socketpair()
        with a, b:
            # Signals every 10 ms during a timed wait: it ends at its deadline.
            a.settimeout(0.1)
            a._hint = 8
            signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
            start = time.monotonic()
            with pytest.raises(TimeoutError) as timed_out:
                _method(a, "recv", use_c)(10)
            assert 0.1 <= time.monotonic() - start < 2
            signal.setitimer(signal.ITIMER_REAL, 0)
            assert timed_out.value.__context__ is None
            assert len(calls) >= 3
            # A handler that raises ends a wait with its exception (one
            # signal, well after the call has started waiting).
            raising.append(True)
            a.settimeout(None)
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            with pytest.raises(Stop):
                _method(a, "recv_into", use_c)(bytearray(10))
            payload = b"x" * (64 * 2**20)  # made first: the signal must find the call waiting
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(Stop) as stopped:
                _method(a, "sendall", use_c)(payload)
            assert stopped.value.bytes_sent > 0  # type: ignore[attr-defined]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- the facade's suites on the other implementation -------------------------------------

FACADE_SUITES = [
    "tests/test_sync_modes.py",
    "tests/test_sync_socket.py",
    "tests/test_signals.py",
    "tests/test_unchained_and_busy.py",
    "tests/test_cpython_conformance.py",
]


@pytest.mark.timeout(600)
@pytest.mark.skipif(
    os.environ.get("ASOCK_SKIP_OTHER_IMPLEMENTATION", "") not in ("", "0"),
    reason="ASOCK_SKIP_OTHER_IMPLEMENTATION is set: the other implementation has a whole run of its own",
)
def test_the_facade_suites_pass_on_the_other_implementation() -> None:
    """The modes, timeouts, signals, close, bare-exception and conformance suites, once more:
    on the pure-Python methods where this run uses the C ones, and the other way round."""
    env = {k: v for k, v in os.environ.items() if k not in ("ASOCK_NO_EXTENSIONS", "PYTEST_ADDOPTS")}
    if _sync_socket.EXTENSION:
        env["ASOCK_NO_EXTENSIONS"] = "1"
        expected = "False"
    elif BUILT and DISABLED:
        expected = "True"
    else:
        pytest.skip("the C extension was not built: there is no other implementation")
    suites = [s for s in FACADE_SUITES if (ROOT / s).exists()]
    check = subprocess.run(
        [sys.executable, "-c", "import asock._sync_socket as m; print(m.EXTENSION)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert check.stdout.strip() == expected
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
