"""Bad input: property tests over every public function and method.

Each example makes the same call on an asock object and on its stdlib twin
(same family, type and state: fresh, bound, listening, connected with data
pending, closed, detached) and checks that both raise the same exception
type, with the same message for argument errors and the same errno for
``OSError``, or both succeed with equal results where results are
deterministic.  Every example also checks that asock leaked no descriptor
(the stdlib's own leaks on bad arguments are cleaned up, not counted).

The few deliberate differences are accepted, each where ``compare`` says
why: asock attempts a call before waiting (the stdlib in timeout mode polls
first, so it may time out where asock reports the real error), its
``create_connection`` timeout bounds name resolution too, a closed socket's
``sendfile`` raises EBADF, and the stdlib's ``send_fds``/``recv_fds`` ignore
the flags asock honours (left out of the differential).

Safety: both sockets run in non-blocking mode or with a 20 ms timeout, so
no call waits for long;
addresses are numeric loopback (or invalid) so nothing leaves the machine and
no name reaches DNS; AF_UNIX paths land in a temporary directory.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import gc
import inspect
import os
import socket as stdlib
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import LOOPS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asock

EXAMPLES = int(os.environ.get("ASOCK_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
ARG_ERRORS = (TypeError, ValueError, OverflowError, OSError)

# -- strategies ----------------------------------------------------------------

HUGE_INTS = [2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**31) - 1, -(2**63) - 1, 10**30]
ints = st.one_of(st.integers(-3, 70_000), st.sampled_from(HUGE_INTS), st.integers(-(2**70), 2**70), st.booleans())
sizes = st.one_of(st.integers(-2, 4096), st.sampled_from([-(2**31), 2**31, 2**40, 2**63, 2**64]), st.booleans())
flags = st.one_of(
    st.sampled_from(
        [0, stdlib.MSG_PEEK, stdlib.MSG_DONTWAIT, stdlib.MSG_OOB, stdlib.MSG_TRUNC, stdlib.MSG_WAITALL, -1, 2**31]
    ),
    ints,
)
# Numeric hosts only: a name (even "localhost" for AF_INET6) would go to DNS.
hosts = st.sampled_from(
    ["127.0.0.1", "::1", "", "<broadcast>", "0.0.0.0", "::", "127.1", "::ffff:127.0.0.1", "fe80::1%lo"]
)
ports = st.one_of(st.sampled_from([0, 9, 65535, 65536, -1, 2**32, 2**64]), st.just("9"), st.none())
unix_paths = st.one_of(
    st.sampled_from(["", "/nonexistent-dir/sock", "\0asock-bad-input", b"\0asock-bad-input", "x" * 200, b"p"]),
    st.text(alphabet="abc", min_size=1, max_size=5),
)
addresses = st.one_of(
    st.tuples(hosts, ports),
    st.tuples(hosts, ports, ints, ints),
    st.tuples(hosts),
    st.tuples(hosts, ports, ints),
    unix_paths,
    st.tuples(),
)
# Anything at all that cannot turn into a DNS query: no tuple has a string host.
junk = st.one_of(
    st.none(),
    ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(-1, 3), max_size=3),
    st.tuples(ints, ints),
    st.just(object()),
)
buffers = st.one_of(
    st.integers(0, 64).map(bytearray),
    st.integers(0, 64).map(lambda n: memoryview(bytearray(n))),
    st.integers(0, 8).map(lambda n: array.array("i", [0] * n)),
    st.binary(max_size=8),  # read-only
    st.builds(lambda: memoryview(bytearray(16))[::2]),  # not contiguous
)
data = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(bytearray),
    st.binary(max_size=64).map(memoryview),
    st.just(array.array("d", [1.5, 2.5])),
    st.text(max_size=4),
    st.builds(lambda: memoryview(b"abcdefgh")[::2]),  # not contiguous
)
levels = st.one_of(
    st.sampled_from([stdlib.SOL_SOCKET, stdlib.IPPROTO_TCP, stdlib.IPPROTO_IP, stdlib.IPPROTO_IPV6, -1]), ints
)
options = st.one_of(
    st.sampled_from(
        [
            stdlib.SO_REUSEADDR,
            stdlib.SO_RCVBUF,
            stdlib.SO_TYPE,
            stdlib.SO_ERROR,
            stdlib.SO_LINGER,
            stdlib.TCP_NODELAY,
            stdlib.SO_BINDTODEVICE,
            -1,
        ]
    ),
    ints,
)
option_values = st.one_of(ints, st.binary(max_size=16), st.none())
timeouts = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), ints, st.sampled_from([0, 0.0, -1, 1e300, "1"])
)
hows = st.one_of(st.sampled_from([stdlib.SHUT_RD, stdlib.SHUT_WR, stdlib.SHUT_RDWR, 3, -1]), ints)


# Strategies never mixed with junk: a random small int as a descriptor would
# name (and, adopted by socket(fileno=...), close) one of pytest's own.
NEVER_JUNK: set[st.SearchStrategy[Any]] = set()


def mix(specific: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible values of the right kind, sometimes anything at all."""
    if specific in NEVER_JUNK:
        return specific
    return st.one_of(specific, specific, junk)


def args_of(*params: st.SearchStrategy[Any], required: int | None = None) -> st.SearchStrategy[tuple[Any, ...]]:
    """Positional arguments: every required one, then any prefix of the optional ones."""
    need = len(params) if required is None else required
    return st.integers(need, len(params)).flatmap(lambda n: st.tuples(*(mix(p) for p in params[:n])))


# Method name -> strategy for its positional arguments.
METHODS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "accept": st.just(()),
    "connect": args_of(addresses),
    "connect_ex": args_of(addresses),
    "recv": args_of(sizes, flags, required=1),
    "recv_into": args_of(buffers, sizes, flags, required=1),
    "recvfrom": args_of(sizes, flags, required=1),
    "recvfrom_into": args_of(buffers, sizes, flags, required=1),
    "recvmsg": args_of(sizes, sizes, flags, required=1),
    "recvmsg_into": args_of(st.lists(buffers, max_size=3), sizes, flags, required=1),
    "send": args_of(data, flags, required=1),
    "sendall": args_of(data, flags, required=1),
    "sendto": st.one_of(args_of(data, addresses), args_of(data, flags, addresses)),
    "sendmsg": args_of(
        st.lists(data, max_size=3),
        st.lists(st.tuples(levels, options, data), max_size=2),
        flags,
        addresses,
        required=1,
    ),
    "bind": args_of(addresses),
    "listen": args_of(ints, required=0),
    "shutdown": args_of(hows),
    "getsockopt": args_of(levels, options, sizes, required=2),
    "setsockopt": st.one_of(args_of(levels, options, option_values), args_of(levels, options, st.none(), sizes)),
    "set_inheritable": args_of(junk),
    "setblocking": args_of(junk),
    "settimeout": args_of(timeouts),
    "getpeername": st.just(()),
    "getsockname": st.just(()),
    "fileno": st.just(()),
    "get_inheritable": st.just(()),
    "getblocking": st.just(()),
    "gettimeout": st.just(()),
    "dup": st.just(()),
    "detach": st.just(()),
    "close": st.just(()),
    "sendfile": args_of(
        st.sampled_from(["<binary file>", "<text file>", "<empty file>"]),
        st.integers(-2, 5000),
        st.one_of(st.none(), st.integers(-2, 5000)),
        required=1,
    ),
}
# Results that are the same on both twins whenever the call succeeds.
DETERMINISTIC = {
    "recv",
    "recv_into",
    "send",
    "sendall",
    "connect_ex",
    "gettimeout",
    "getblocking",
    "get_inheritable",
    "close",
    "shutdown",
    "setblocking",
    "settimeout",
    "bind",
    "listen",
    "setsockopt",
}
KINDS = [
    (stdlib.AF_INET, stdlib.SOCK_STREAM),
    (stdlib.AF_INET, stdlib.SOCK_DGRAM),
    (stdlib.AF_INET6, stdlib.SOCK_STREAM),
    (stdlib.AF_INET6, stdlib.SOCK_DGRAM),
    (stdlib.AF_UNIX, stdlib.SOCK_STREAM),
    (stdlib.AF_UNIX, stdlib.SOCK_DGRAM),
]
STATES = ["fresh", "bound", "listening", "connected", "closed", "detached"]
# The stdlib's non-blocking mode, or its timeout mode with a short timeout
# (sendfile refuses non-blocking sockets, so it always gets the timeout).
MODES = [0.0, 0.0, 0.0, 0.02]
PENDING = b"pending data"


# -- twins ----------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def in_temp_dir() -> Iterator[None]:
    """AF_UNIX paths from the examples are relative: keep their files out of the checkout."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        for side in SIDES:
            os.mkdir(os.path.join(tmp, side))
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(previous)


SIDES = ("theirs", "ours")


@contextlib.contextmanager
def side(name: str) -> Iterator[None]:
    """Each twin binds its relative AF_UNIX paths in a directory of its own, emptied afterwards."""
    os.chdir(name)
    try:
        yield
    finally:
        os.chdir("..")
        for entry in os.listdir(name):
            os.unlink(os.path.join(name, entry))


def open_fds() -> set[int]:
    """Open descriptors, without the one listdir itself used (closed by now, so readlink fails)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.readlink("/proc/self/fd/" + name)
        except OSError:
            continue
        fds.add(int(name))
    return fds


def bind_any(sock: stdlib.socket, family: int, name: str) -> None:
    if family == stdlib.AF_UNIX:
        sock.bind("\0asock-bad-input-" + name + str(os.getpid()) + "-" + str(id(sock)))
    else:
        sock.bind(("127.0.0.1" if family == stdlib.AF_INET else "::1", 0))


def native_in_state(family: int, kind: int, state: str, timeout: float, keep: list[Any]) -> stdlib.socket:
    """A stdlib socket in ``state`` with ``timeout`` (0.0: non-blocking); helpers it needs go to ``keep``."""
    if state == "connected":
        if family == stdlib.AF_UNIX:
            sock, peer = stdlib.socketpair(family, kind)
        elif kind == stdlib.SOCK_STREAM:
            with stdlib.socket(family, kind) as listener:
                bind_any(listener, family, "l")
                listener.listen()
                sock = stdlib.socket(family, kind)
                sock.connect(listener.getsockname())
                peer, _ = listener.accept()
        else:
            sock, peer = stdlib.socket(family, kind), stdlib.socket(family, kind)
            bind_any(sock, family, "a")
            bind_any(peer, family, "b")
            sock.connect(peer.getsockname())
            peer.connect(sock.getsockname())
        keep.append(peer)
        peer.send(PENDING)
    else:
        sock = stdlib.socket(family, kind)
        if state in ("bound", "listening"):
            bind_any(sock, family, "s")
        if state == "listening" and kind == stdlib.SOCK_STREAM:
            sock.listen()
    sock.settimeout(timeout)
    return sock


def finish_state(sock: Any, state: str) -> None:
    """Close or detach (closing the descriptor behind its back) for the dead states."""
    if state == "closed":
        sock.close()
    elif state == "detached":
        os.close(sock.detach())


@contextlib.contextmanager
def no_leak() -> Iterator[None]:
    before = open_fds()
    yield
    assert open_fds() == before, "descriptor leak"


@contextlib.contextmanager
def twins(
    make_ours: Callable[[stdlib.socket], Any], family: int, kind: int, state: str, timeout: float
) -> Iterator[tuple[Any, Any]]:
    """(stdlib socket, our socket) in the same state; everything closed afterwards, leaks checked."""
    keep: list[Any] = []
    with no_leak():
        try:
            theirs = native_in_state(family, kind, state, timeout, keep)
            keep.append(theirs)
            ours = make_ours(native_in_state(family, kind, state, timeout, keep))
            keep.append(ours)
            finish_state(theirs, state)
            finish_state(ours, state)
            yield theirs, ours
        finally:
            for sock in keep:
                sock.close()


def twin_of(cls: Any) -> Callable[[stdlib.socket], Any]:
    """Move a stdlib socket's descriptor (and timeout) into a ``cls`` socket."""

    def make(native: stdlib.socket) -> Any:
        timeout = native.gettimeout()
        sock = cls(native.family, native.type, native.proto, native.detach())
        sock.settimeout(timeout)
        return sock

    return make


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:
        # Drop the frames: they can hold sockets the call failed to close.
        return "raised", exc.with_traceback(None)


def stdlib_outcome(name: str, call: Callable[[], Any]) -> tuple[str, Any]:
    """The stdlib's outcome; descriptors it leaks are closed, so only asock's leaks count.

    The stdlib leaks on some bad arguments: ``fromfd`` its duplicate when the
    family is not an int, ``create_server`` and ``create_connection`` their
    socket when ``bind``/``settimeout`` raise something other than ``OSError``.
    """
    before = open_fds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        result = outcome(call)
        dispose(name, result)
        if open_fds() != before:
            gc.collect()  # a leaked socket object closes its descriptor when collected
    for fd in open_fds() - before:
        with contextlib.suppress(OSError):
            os.close(fd)
    return result


def dispose(name: str, result: tuple[str, Any]) -> None:
    """Close whatever a successful call handed out (sockets, descriptors)."""
    if result[0] != "ok":
        return
    value = result[1]
    if name == "accept":
        value[0].close()
    elif name in ("dup", "socket", "fromfd", "create_server", "create_connection"):
        value.close()
    elif name == "socketpair":
        value[0].close()
        value[1].close()
    elif name == "detach" and value >= 0:
        os.close(value)  # nothing else owns it now
    elif name == "recv_fds":
        for fd in value[1]:
            os.close(fd)


def normalize(value: Any) -> Any:
    if isinstance(value, (bytearray, memoryview, array.array)):
        return bytes(value)
    return value


def compare(name: str, args: tuple[Any, ...], theirs: tuple[str, Any], ours: tuple[str, Any]) -> None:
    where = f"{name}{args!r}"
    if (
        name == "create_connection"
        and isinstance(ours[1], TimeoutError)
        and len(args) > 1
        and isinstance(args[1], (int, float))
        and 0 < args[1] < 0.01
    ):
        # asock's timeout bounds the whole call, name resolution (a round
        # trip through the executor) included; the stdlib's bounds each
        # connect only.  A timeout of a few microseconds runs out before
        # asock's first attempt.
        return
    if theirs[0] == "raised":
        expected = theirs[1]
        if (
            isinstance(expected, TimeoutError)
            and isinstance(ours[1], ARG_ERRORS)
            and not isinstance(ours[1], (TimeoutError, BlockingIOError))
        ):
            # In timeout mode the stdlib polls before its first attempt, so a
            # socket that can never become ready (a UDP accept(), MSG_OOB
            # with no urgent data) times out; asock tries the syscall before
            # waiting and reports the error (the kernel's, or a bad argument's
            # such as sendfile's offset) at once.
            return
        arg_errors = (TypeError, ValueError, OverflowError)
        if (
            name == "create_connection"
            and ours[0] == "raised"
            and (isinstance(expected, arg_errors) or isinstance(ours[1], arg_errors))
        ):
            # asock validates the timeout before resolving (the timeout bounds
            # the lookup too), the stdlib only after: with several bad
            # arguments, which one is reported first may differ.
            assert isinstance(ours[1], ARG_ERRORS), f"{where}: {ours[1]!r}"
            return
        if name == "sendfile" and len(args) > 1 and args[1] is None and isinstance(ours[1], ARG_ERRORS):
            # The stdlib happens to pass offset=None through to os.sendfile
            # (meaning "the file position"); the documented offset is an int.
            return
        if name == "sendfile" and isinstance(expected, OverflowError) and isinstance(ours[1], ARG_ERRORS):
            # The stdlib hands a huge count straight to os.sendfile, which
            # overflows; asock hands os.sendfile at most 1 GiB per call (as the
            # stdlib's own sendfile loop does, which avoids that OverflowError
            # on 32-bit systems), so it gets on to the socket's real error.
            return
        if name == "sendfile" and isinstance(ours[1], OSError) and ours[1].errno == errno.EBADF:
            # A closed socket: asock says so first (EBADF, like every other
            # call); the stdlib's Python sendfile first trips over the file.
            return
        if name == "sendfile" and str(expected) == "Invalid file descriptor: -1":
            # The stdlib's sendfile on a closed socket fails registering -1
            # with a selector; asock raises EBADF like every other call.
            assert isinstance(ours[1], ARG_ERRORS), f"{where}: {ours[1]!r}"
            return
        if name == "sendfile" and isinstance(expected, TimeoutError) and ours == ("ok", 0):
            # The stdlib waits for writability before looking at the file;
            # asock sees first that there is nothing to send (offset at EOF).
            return
        assert ours[0] == "raised", f"{where}: stdlib raised {expected!r}, asock returned {ours[1]!r}"
        got = ours[1]
        assert type(got) is type(expected), f"{where}: stdlib raised {expected!r}, asock raised {got!r}"
        if isinstance(expected, OSError):
            assert got.errno == expected.errno, f"{where}: stdlib {expected!r}, asock {got!r}"
            if expected.errno is None:
                assert str(got) == str(expected), f"{where}: stdlib {expected!r}, asock {got!r}"
        elif name != "sendfile":
            # (The stdlib's sendfile is Python: its TypeErrors name whatever
            # operator first met the bad value, an accident not worth copying.)
            assert str(got) == str(expected), f"{where}: stdlib {expected!r}, asock {got!r}"
    else:
        if name == "sendfile" and theirs[1] == 0 and isinstance(ours[1], ARG_ERRORS):
            # The stdlib returns 0 for any empty file before looking at the
            # offset; asock seeks to it first, and 2**63 or more is refused.
            return
        assert ours[0] == "ok", f"{where}: stdlib returned {theirs[1]!r}, asock raised {ours[1]!r}"
        if name == "recv" and len(args) > 1 and isinstance(args[1], int) and args[1] & stdlib.MSG_TRUNC:
            # TCP discards the bytes: both return uninitialized buffers of the right length.
            assert len(ours[1]) == len(theirs[1]), where
        elif name in DETERMINISTIC:
            assert ours[1] == theirs[1], f"{where}: stdlib returned {theirs[1]!r}, asock {ours[1]!r}"
        elif name not in SOCKET_RESULTS:
            assert type(ours[1]) is type(theirs[1]), f"{where}: stdlib returned {theirs[1]!r}, asock {ours[1]!r}"


# Calls that return sockets (or tuples holding them): a different class by design.
SOCKET_RESULTS = {"accept", "dup", "socket", "fromfd", "socketpair", "create_server", "create_connection"}


@contextlib.contextmanager
def files_for(args: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """Replace file placeholders with real files, closed afterwards."""
    opened: list[Any] = []

    def real(value: Any) -> Any:
        if value == "<binary file>":
            file: Any = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
            file.write(b"file contents " * 100)
            file.seek(0)
        elif value == "<text file>":
            file = tempfile.TemporaryFile("w+")  # noqa: SIM115
            file.write("text")
            file.seek(0)
        elif value == "<empty file>":
            file = tempfile.TemporaryFile()  # noqa: SIM115
        else:
            return value
        opened.append(file)
        return file

    try:
        yield tuple(real(a) for a in args)
    finally:
        for file in opened:
            file.close()


def run_method(run: Callable[[Any], Any], make_ours: Callable[[stdlib.socket], Any], name: str, args_data: Any) -> None:
    family, kind = args_data.draw(st.sampled_from(KINDS), label="kind")
    state = args_data.draw(st.sampled_from(STATES), label="state")
    timeout = 0.5 if name == "sendfile" else args_data.draw(st.sampled_from(MODES), label="timeout")
    args = args_data.draw(METHODS[name], label="args")
    # Buffers are written into: give each twin its own copy.
    their_args = copy_args(args)
    # Whether bind() finds its address free is state outside the two twins
    # (ports and abstract names other tests or processes hold, TIME_WAIT),
    # which can change between the two calls: a bind mismatch is checked once
    # more with fresh twins.  A real difference fails both times.
    tries = 2 if name == "bind" else 1
    for attempt in range(tries):
        with twins(make_ours, family, kind, state, timeout) as (theirs, ours):
            with side("theirs"), files_for(their_args) as real_args:
                expected = stdlib_outcome(name, lambda: getattr(theirs, name)(*real_args))
                # Free whatever it bound (an abstract name, a port) before our turn.
                theirs.close()
            with side("ours"), files_for(args) as real_args:
                got = outcome(lambda: run(getattr(ours, name)(*real_args)))
                dispose(name, got)
            try:
                compare(name, args, expected, got)
            except AssertionError:
                if attempt + 1 < tries:
                    continue
                raise
            if name in ("recv_into", "recvfrom_into", "recvmsg_into") and expected[0] == "ok":
                assert normalize_args(args) == normalize_args(their_args), f"{name}: buffers differ"
            break


def copy_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    def copy(value: Any) -> Any:
        if isinstance(value, bytearray):
            return bytearray(value)
        if isinstance(value, memoryview) and not value.readonly and value.contiguous:
            return memoryview(bytearray(value.tobytes()))
        if isinstance(value, array.array):
            return array.array(value.typecode, value)
        if isinstance(value, list):
            return [copy(v) for v in value]
        return value

    return tuple(copy(a) for a in args)


def normalize_args(args: tuple[Any, ...]) -> list[Any]:
    return [[normalize(v) for v in a] if isinstance(a, list) else normalize(a) for a in args]


# -- asock.socket methods, on every backend ------------------------------------------
#
# asyncio's loops (the default loop, uvloop) run for the whole test; trio gets
# a run per call (a socket binds to the trio run it is first used in, and each
# example's sockets make one call).  No call may wait: each is bounded.

CALL_BOUND = 10


@pytest.fixture(params=[*LOOPS, "trio"])
def runner(request: pytest.FixtureRequest) -> Iterator[Callable[[Any], Any]]:
    """Runs what a call returned to completion if it is a coroutine; passes plain results through."""
    if request.param == "trio":
        yield in_trio
        return
    loop = LOOPS[request.param]()
    try:
        yield awaiting(loop)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def awaiting(loop: asyncio.AbstractEventLoop) -> Callable[[Any], Any]:
    def run(result: Any) -> Any:
        if inspect.iscoroutine(result):
            return loop.run_until_complete(asyncio.wait_for(result, CALL_BOUND))
        return result

    return run


def in_trio(result: Any) -> Any:
    if not inspect.iscoroutine(result):
        return result
    import trio

    async def bounded() -> Any:
        with trio.fail_after(CALL_BOUND):
            return await result

    return trio.run(bounded)


@pytest.mark.parametrize("name", sorted(METHODS))
@SETTINGS
@given(args_data=st.data())
def test_asock_method(runner: Callable[[Any], Any], name: str, args_data: Any) -> None:
    run_method(runner, twin_of(asock.socket), name, args_data)


# -- module-level functions -----------------------------------------------------------

families = st.one_of(
    st.sampled_from([stdlib.AF_INET, stdlib.AF_INET6, stdlib.AF_UNIX, stdlib.AF_UNSPEC, stdlib.AF_PACKET, -1]), ints
)
kinds = st.one_of(st.sampled_from([stdlib.SOCK_STREAM, stdlib.SOCK_DGRAM, stdlib.SOCK_RAW, 0, -1]), ints)
protos = st.one_of(st.sampled_from([0, stdlib.IPPROTO_TCP, stdlib.IPPROTO_UDP, -1]), ints)
# Descriptors: placeholders for ones the example owns, never a random number
# (which could name, and then close, one of pytest's own descriptors).
not_an_fd = st.one_of(
    st.none(),
    st.floats(),
    st.text(max_size=2),
    st.binary(max_size=2),
    st.lists(st.none(), max_size=1),
    st.just(object()),
)
fds = st.one_of(st.sampled_from(["<socket fd>", "<file fd>", -1, -2, 2**31, 2**63, 2**64]), not_an_fd)
NEVER_JUNK.add(fds)
server_hosts = st.sampled_from(["127.0.0.1", "::1", "127.1", "::ffff:127.0.0.1", "fe80::1%lo"])
server_addresses = st.one_of(
    st.tuples(server_hosts, st.sampled_from([0, 65536, -1])), st.tuples(server_hosts), unix_paths, junk
)
# Junk without strings or bytes, for arguments that name a host: "ab" would
# even unpack into a (host, port) pair, and any name not in /etc/hosts is a
# DNS query leaving the machine.
textless_junk = st.one_of(st.none(), ints, st.floats(), st.lists(st.integers(-1, 3), max_size=3), st.just(object()))
connect_addresses = st.one_of(
    st.tuples(server_hosts, st.sampled_from([9, "<listener port>", 65536, -1, "9", None])),
    st.tuples(server_hosts, st.sampled_from([9, "<listener port>"]), ints, ints),
    st.tuples(server_hosts),
    st.tuples(ints, ints),
    textless_junk,
)
gai_hosts = st.one_of(st.sampled_from(["127.0.0.1", "::1", None, "::ffff:127.0.0.1"]), textless_junk)
gai_ports = st.one_of(st.sampled_from([None, 0, 9, "9", "http", b"9", -1, 65536, 2**64]), junk)
gai_numbers = st.one_of(
    st.integers(-1, 64), st.sampled_from([2**31, 2**63]), st.booleans(), st.none(), st.text(max_size=1)
)
# Reverse lookups only of names /etc/hosts answers: anything else goes to DNS.
local_names = st.one_of(st.sampled_from(["127.0.0.1", ""]), textless_junk)
NEVER_JUNK.update((connect_addresses, gai_hosts, local_names))

FUNCTIONS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "socket": args_of(families, kinds, protos, fds, required=0),
    "socketpair": args_of(families, kinds, protos, required=0),
    "fromfd": args_of(fds, families, kinds, protos, required=3),
    "create_server": args_of(server_addresses),
    "create_connection": args_of(
        connect_addresses, timeouts, st.one_of(st.tuples(server_hosts, ints), junk), required=1
    ),
    "getaddrinfo": args_of(gai_hosts, gai_ports, gai_numbers, gai_numbers, gai_numbers, gai_numbers, required=2),
    "getnameinfo": args_of(st.one_of(st.tuples(st.just("127.0.0.1"), ports), junk), gai_numbers),
    "gethostbyname": args_of(local_names),
    "gethostbyname_ex": args_of(local_names),
    "gethostbyaddr": args_of(local_names),
    "getfqdn": args_of(local_names, required=0),
    # The stdlib's send_fds and recv_fds ignore their flags (and send_fds its
    # address); asock honours them, so the differential leaves them out.
    "send_fds": args_of(st.lists(data, max_size=2), st.lists(fds, max_size=3)),
    "recv_fds": args_of(sizes, st.one_of(st.integers(-1, 8), st.sampled_from([2**28, 2**62]))),
}
# create_server keyword arguments, drawn separately.
server_options = st.fixed_dictionaries(
    {},
    optional={
        "family": families,
        "backlog": st.one_of(st.none(), ints),
        "reuse_port": st.one_of(st.booleans(), junk),
        "dualstack_ipv6": st.one_of(st.booleans(), junk),
    },
)


@contextlib.contextmanager
def resources_for(args: tuple[Any, ...], listener_port: int) -> Iterator[tuple[Any, ...]]:
    """Replace placeholders: descriptors the example owns, the live listener's port.

    A call may adopt a descriptor (``socket(fileno=...)``) and close it, so
    each is closed afterwards only if it is still the same open file.
    """
    owned: list[tuple[int, int]] = []

    def adopt(fd: int) -> int:
        owned.append((fd, os.fstat(fd).st_ino))
        return fd

    def real(value: Any) -> Any:
        if value == "<socket fd>":
            return adopt(stdlib.socket().detach())
        if value == "<file fd>":
            return adopt(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        if value == "<listener port>":
            return listener_port
        if isinstance(value, tuple):
            return tuple(real(v) for v in value)
        if isinstance(value, list):
            return [real(v) for v in value]
        return value

    try:
        yield tuple(real(a) for a in args)
    finally:
        for fd, inode in owned:
            try:
                if os.fstat(fd).st_ino != inode:
                    continue
            except OSError:
                continue
            os.close(fd)


def run_function(module: Any, name: str, args_data: Any, run: Callable[[Any], Any], listener: stdlib.socket) -> None:
    args = args_data.draw(FUNCTIONS[name], label="args")
    kwargs = args_data.draw(server_options, label="kwargs") if name == "create_server" else {}
    with no_leak():
        if name in ("send_fds", "recv_fds"):
            # The stdlib takes a stdlib socket here; ours takes ours.
            theirs_pair = stdlib.socketpair()
            ours_pair = stdlib.socketpair()
            ours = twin_of(module.socket)(ours_pair[0])
            theirs_pair[0].setblocking(False)
            for sock in (theirs_pair[1], ours_pair[1]):
                stdlib.send_fds(sock, [PENDING], [sock.fileno()])
            try:
                with resources_for(args, 0) as real_args:
                    expected = stdlib_outcome(name, lambda: getattr(stdlib, name)(theirs_pair[0], *real_args))
                    got = outcome(lambda: run(getattr(module, name)(ours, *real_args)))
                    dispose(name, got)
            finally:
                for sock in (*theirs_pair, ours_pair[1], ours):
                    sock.close()
        else:
            port = listener.getsockname()[1]
            with side("theirs"), resources_for(args, port) as real_args:
                expected = stdlib_outcome(name, lambda: getattr(stdlib, name)(*real_args, **kwargs))
            with side("ours"), resources_for(args, port) as real_args:
                got = outcome(lambda: run(getattr(module, name)(*real_args, **kwargs)))
                dispose(name, got)
    if name == "recv_fds" and expected[0] == got[0] == "ok":
        # Descriptors differ by number; the rest must match.
        expected = ("ok", (expected[1][0], len(expected[1][1]), expected[1][2]))
        got = ("ok", (got[1][0], len(got[1][1]), got[1][2]))
    compare(name, args, expected, got)


@pytest.fixture
def listener() -> Iterator[stdlib.socket]:
    """A live loopback listener that create_connection examples may reach."""
    with stdlib.create_server(("127.0.0.1", 0), backlog=512) as server:
        yield server


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@SETTINGS
@given(args_data=st.data())
def test_asock_function(runner: Callable[[Any], Any], listener: stdlib.socket, name: str, args_data: Any) -> None:
    run_function(asock, name, args_data, runner, listener)
    drain_backlog(listener)


def drain_backlog(listener: stdlib.socket) -> None:
    """Accept and close what create_connection examples left in the backlog."""
    listener.setblocking(False)
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.close()


def test_pure_helpers_are_the_stdlibs() -> None:
    """Constants, exceptions and pure helpers are re-exported, not re-implemented."""
    for name in ["inet_aton", "inet_pton", "inet_ntop", "htons", "ntohl", "CMSG_LEN", "CMSG_SPACE", "gethostname"]:
        assert getattr(asock, name) is getattr(stdlib, name), name
    for name in ["error", "gaierror", "herror", "timeout", "getdefaulttimeout", "setdefaulttimeout"]:
        assert getattr(asock, name) is getattr(stdlib, name), name


# -- the sync facade: the same properties, no loop -----------------------------------


@pytest.fixture
def sync() -> Any:
    return pytest.importorskip("asock.sync")


def as_is(result: Any) -> Any:
    return result


@pytest.mark.parametrize("name", sorted(METHODS))
@SETTINGS
@given(args_data=st.data())
def test_sync_method(sync: Any, name: str, args_data: Any) -> None:
    run_method(as_is, twin_of(sync.socket), name, args_data)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@SETTINGS
@given(args_data=st.data())
def test_sync_function(sync: Any, listener: stdlib.socket, name: str, args_data: Any) -> None:
    run_function(sync, name, args_data, as_is, listener)
    drain_backlog(listener)
