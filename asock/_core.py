"""The operation core: what each I/O operation does, with no idea of how to wait.

Every operation runs against a native socket that is always non-blocking.  A
single-syscall operation is the C method plus the direction it waits for
(``retry``); a multi-step one (``sendall``, ``connect``, ``sendfile``) is a
generator that attempts its syscall and, when that would block, yields a
``Step``: the readiness it needs (``READ`` or ``WRITE``) and the
``BlockingIOError`` the kernel gave.  ``drive`` runs an operation with a
driver's *wait* function between steps, one deadline for the whole call; when
a wait fails (timeout, cancellation, close, non-blocking mode) the exception
is thrown into the operation, which records its progress (``bytes_sent``)
before the exception leaves.

Operations call the C type's methods unbound (``_socket.socket.send(sock,
...)``), so a driver may hand them any ``_socket.socket``, including a
subclass whose own methods wait.  No operation yields inside an ``except``
block: an exception thrown in there would be chained to the would-block
error, and asock's exceptions leave as bare as the stdlib's.

This module imports neither asyncio nor anything that does: the async driver,
the sync facade and any other waiter share it unchanged.
"""

from __future__ import annotations

import _socket
import enum
import errno
import io
import os
import socket as _socket_module
from operator import index
from sys import maxsize as _MAXSIZE
from time import monotonic

# Not ``typing.TYPE_CHECKING``: importing typing would cost ``import
# asock.sync`` as much as the stdlib socket module itself.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator
    from typing import Any, Final, Literal, Protocol, TypeVar

    T = TypeVar("T")

    #: A wait a multi-step operation needs: the direction and the kernel's would-block.
    Step = tuple[int, BlockingIOError]
    #: A multi-step operation: yields ``Step``s, returns its result.
    Op = Generator[Step, None, T]

    class Wait(Protocol):
        """A driver's wait: until the descriptor looks ready in ``direction``.

        ``when`` is the call's deadline on ``time.monotonic()``'s clock (None:
        no limit); past it the wait returns and the operation's next attempt
        decides.  ``what`` names the call (a name, or the native method), for
        error messages.  A close of the socket, a cancellation or any other
        failure of the wait raises.
        """

        def __call__(self, direction: int, when: float | None, what: Any, /) -> Awaitable[None]: ...

# The stdlib's own (private) exception, so its sendfile fallback logic applies to ours.
_GiveupOnSendfile: type[Exception] = getattr(_socket_module, "_GiveupOnSendfile")  # noqa: B009

__all__ = [
    "AGAIN",
    "READ",
    "WRITE",
    "BusyError",
    "attempt",
    "byte_view",
    "check_sendfile",
    "closed_error",
    "connect",
    "connect_errno",
    "deadline",
    "describe",
    "drive",
    "gives_up",
    "native_accept",
    "nbytes",
    "parse_blocking",
    "parse_timeout",
    "receive_hint",
    "replayable",
    "report_sent",
    "retry",
    "run_sync",
    "send_first",
    "sendall",
    "sendfile",
    "sendfile_by_send",
    "sendfile_zero_copy",
    "timed_out",
    "wait_first",
    "would_block",
]

#: Directions, with the values ``selectors.EVENT_READ`` / ``EVENT_WRITE`` use.
READ = 1
WRITE = 2


_c = _socket.socket
_c_send = _c.send
_DONTWAIT: int = getattr(_socket, "MSG_DONTWAIT", 0)

#: The C type's own accept: ``(fd, address)``, never waiting.
native_accept: Callable[[_socket.socket], tuple[int, Any]] = getattr(_c, "_accept")  # noqa: B009  (private)


class _Again(enum.Enum):
    AGAIN = 0


#: What ``attempt`` returns when the syscall would block.
AGAIN: Final = _Again.AGAIN


class BusyError(RuntimeError):
    """Another task is already waiting on this socket in the same direction.

    asyncio's ``add_reader`` keeps a single callback per descriptor, so a
    second waiter would silently replace the first and leave it hanging
    forever.  asock refuses the second waiter instead: at most one task may
    wait to receive (``accept``, ``recv*``) and one to send (``send*``,
    ``connect``) on a socket at any time, and a send that starts while
    another task's send is in progress is refused before it sends a byte.
    """


# -- errors -------------------------------------------------------------------


def closed_error() -> OSError:
    """The error every call on a closed socket raises, as the stdlib's does."""
    return OSError(errno.EBADF, os.strerror(errno.EBADF))


def timed_out() -> TimeoutError:
    """The stdlib's timeout exception: ``TimeoutError("timed out")``."""
    return TimeoutError("timed out")


def would_block() -> BlockingIOError:
    """The kernel's "try again" (EAGAIN), for a wait that comes before the attempt."""
    return BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))


# -- modes and deadlines --------------------------------------------------------


def _parsed(setter: Callable[[_socket.socket, Any], None], value: object) -> _socket.socket:
    """A socket object without a descriptor, after the stdlib's ``setter`` took ``value``.

    The stdlib's own parsing is the reference, and its checks and messages
    differ between Python versions.  Given a valid value, the object stores
    it and then fails to set a descriptor's mode (EBADF): the sign that the
    value was accepted.  An invalid one raises the stdlib's own error.
    """
    probe = _c.__new__(_c)
    try:
        setter(probe, value)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
    return probe


def parse_timeout(value: object) -> float | None:
    """Validate a timeout exactly as ``socket.settimeout`` does (same errors and messages)."""
    return _parsed(_c.settimeout, value).gettimeout()


def parse_blocking(flag: object) -> bool:
    """Validate ``setblocking``'s flag exactly as the stdlib does (3.12 takes any truth value)."""
    return _parsed(_c.setblocking, flag).getblocking()


def gives_up(timeout: float | None, flags: Any) -> bool:
    """Whether a call that would block raises ``BlockingIOError`` instead of waiting.

    So it does in non-blocking mode, and, as in the stdlib, with MSG_DONTWAIT
    in blocking mode (the kernel decides there).  In timeout mode the stdlib
    polls before each attempt, so MSG_DONTWAIT waits like any other call.
    Only called once the native call has accepted ``flags``.
    """
    return timeout == 0.0 or (timeout is None and bool(index(flags) & _DONTWAIT))


def deadline(timeout: float | None, when: float | None) -> float | None:
    """The deadline for a wait about to start in timeout mode or blocking mode (None).

    ``when`` is the call's deadline so far, None before its first wait: one
    deadline per call, however many waits it takes.  Past it, the call times
    out.  (Non-blocking mode never waits: see ``gives_up``.)
    """
    if timeout is None:
        return None
    if when is None:
        return monotonic() + timeout
    if monotonic() >= when:
        raise timed_out()
    return when


#: How many receives in a row that fill their buffer end the waiting before trying.
WAIT_FIRST = 8


def receive_hint(hint: int, short: bool) -> int:
    """How many of the next receives should wait for readiness before trying.

    A plain receive on a byte stream that returned less than it asked for
    has emptied the kernel's buffer, so the next one would most likely fail
    with EAGAIN (a syscall and an exception, the dearer mistake): it waits
    first instead.  That is request/response traffic, where the peer is
    slower than we are.  Receives that fill their buffer count the hint down;
    at zero, receives try first again (a bulk stream that keeps the buffer
    full).  Readiness is only a hint either way: the syscall decides.
    """
    if short:
        return WAIT_FIRST
    return hint - 1 if hint else 0


def wait_first(hint: int, timeout: float | None, flags: Any, want: Any) -> bool:
    """Whether a receive of ``want`` bytes waits for readiness before its first try.

    Only with arguments the native call will accept (bad ones must fail at
    once, not after a wait: a size past ``sys.maxsize`` overflows), never
    with flags (MSG_OOB and MSG_PEEK are signalled differently) and never in
    non-blocking mode.
    """
    return (
        bool(hint)
        and timeout != 0.0
        and type(flags) is int
        and not flags
        and type(want) is int
        and 0 < want <= _MAXSIZE
    )


def into_size(buffer: Any, nbytes: Any) -> int:
    """How many bytes ``recv_into(buffer, nbytes)`` asks for; -1 if the native call would refuse the arguments."""
    if type(nbytes) is not int or nbytes < 0:
        return -1
    if type(buffer) is bytearray:
        size = len(buffer)
    elif type(buffer) is memoryview and not buffer.readonly and buffer.c_contiguous:
        size = buffer.nbytes
    else:
        return -1
    return nbytes or size if nbytes <= size else -1


# -- running an operation ----------------------------------------------------------


def attempt(call: Callable[..., T], args: tuple[Any, ...]) -> T | Literal[_Again.AGAIN]:
    """The syscall, with "would block" returned as ``AGAIN`` rather than raised.

    The exception is raised and dropped inside this frame: kept in a
    coroutine's frame, it would stay alive (with its traceback) for as long
    as the coroutine waits.
    """
    try:
        return call(*args)
    except BlockingIOError:
        return AGAIN


def retry(direction: int, first: BlockingIOError | None, call: Callable[..., T], *args: Any) -> Op[T]:
    """A single syscall: try it, and after every wait try again until it completes.

    Readiness is only a hint, so the syscall always decides.  ``first`` is the
    would-block of an attempt a driver already made itself (or of a wait it
    chose to make before the first attempt): then the operation starts by
    waiting.
    """
    pending = first
    while True:
        if pending is not None:
            yield direction, pending
        try:
            return call(*args)
        except BlockingIOError as exc:
            pending = exc


async def drive(
    op: Op[T], wait: Wait, what: Any, timeout: float | None, flags: Any = 0, when: float | None = None
) -> T:
    """Run ``op``, waiting with ``wait`` between its steps: the one driver loop.

    ``timeout`` is the socket's mode and ``flags`` the call's MSG_* flags
    (see ``gives_up``); ``when`` is the call's deadline if it already has one
    (a driver that waited before the first attempt).  It is a coroutine so
    that every driver shares it: the async socket awaits it, and the sync
    facade, whose ``wait`` blocks in poll and never suspends, runs it to the
    end with ``run_sync``.
    """
    nowait = gives_up(timeout, flags)
    try:
        step = op.send(None)
        while True:
            direction, would_block = step
            try:
                if nowait:
                    raise would_block
                when = deadline(timeout, when)
                await wait(direction, when, what)
            except BaseException as exc:
                # The operation records its progress (bytes_sent) and
                # re-raises the same exception.
                op.throw(exc)
                raise
            step = op.send(None)
    except StopIteration as done:
        result: T = done.value
        return result


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine whose waits all block instead of suspending (the facade's ``drive``)."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError(f"{coro!r} suspended, but it runs without an event loop")


# -- operations -------------------------------------------------------------------


def report_sent(exc: BaseException, sent: int) -> None:
    """Attach a send's progress to the exception that interrupts it (the stdlib cannot tell)."""
    exc.bytes_sent = sent  # type: ignore[attr-defined]  # asock's own attribute, on any exception


def nbytes(data: Any) -> int:
    """The size in bytes of a bytes-like object."""
    if type(data) is bytes or type(data) is bytearray:
        return len(data)
    with memoryview(data) as view:
        return view.nbytes


def send_first(sock: _socket.socket, data: Any, flags: int) -> int:
    """``sendall``'s first attempt, for a driver's fast path: -1 once all of ``data`` is sent,
    else how many bytes went (0: the send would block).  Most sends of a message complete here."""
    try:
        sent = _c_send(sock, data, flags)
    except BlockingIOError:
        return 0
    return -1 if sent == (len(data) if type(data) is bytes else nbytes(data)) else sent


def byte_view(data: Any) -> memoryview:
    """A view of the bytes-like ``data`` to send from, or the stdlib's error for anything else."""
    try:
        view = memoryview(data)
    except TypeError:
        view = None
    if view is None:
        # Raised outside the handler: the stdlib's error, with nothing chained.
        raise TypeError(f"a bytes-like object is required, not {type(data).__name__!r}")
    if not view.c_contiguous:
        view.release()
        raise BufferError("memoryview: underlying buffer is not C-contiguous")  # the stdlib's error
    return view


def sendall(sock: _socket.socket, data: Any, flags: int = 0, sent: int | None = None) -> Op[None]:
    """Send every byte of ``data``; an exception leaving it carries ``bytes_sent``.

    ``sent`` is what the driver's own first attempt (``send_first``) sent,
    0 if it would block; those bytes count in ``bytes_sent`` too.
    """
    view = byte_view(data)
    with view, view.cast("B") as octets:
        total = len(octets)
        done = 0 if sent is None else sent
        # At least one send, even of nothing: like the stdlib, sendall(b"")
        # reports a broken connection instead of succeeding silently.  A
        # short or refused send means the send buffer is full: trying again
        # at once would only fail with EAGAIN, so wait for room first.
        pending = None if sent is None else would_block()
        try:
            while True:
                if pending is not None:
                    yield WRITE, pending
                    pending = None
                try:
                    done += _c_send(sock, octets[done:], flags)
                except BlockingIOError as exc:
                    pending = exc
                    continue
                if done >= total:
                    return
                pending = would_block()
        except BaseException as exc:
            report_sent(exc, done)
            raise


def connect(sock: _socket.socket, address: Any) -> Op[None]:
    """Connect; a connect left in progress is finished through ``SO_ERROR``."""
    while True:
        try:
            _c.connect(sock, address)
            return
        except BlockingIOError as exc:
            pending = exc
        except InterruptedError:
            # A signal interrupted connect(): the attempt carries on in the
            # kernel, so wait for it rather than starting another one.
            pending = BlockingIOError(errno.EINPROGRESS, os.strerror(errno.EINPROGRESS))
        if pending.errno != errno.EAGAIN:
            break
        # An AF_UNIX listener with a full backlog: nothing is in progress,
        # so connect again once there may be room.
        yield WRITE, pending
    while True:
        yield WRITE, pending
        err = _c.getsockopt(sock, _socket.SOL_SOCKET, _socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        # A wake-up is only a hint (a deadline timer or a spurious report
        # also wakes us): the connection is made once it has a peer.
        try:
            _c.getpeername(sock)
            return
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise


def connect_errno(exc: BaseException) -> int:
    """What ``connect_ex`` returns for the exception ``connect`` raised; or raise it.

    Name-resolution errors, argument errors and anything but an ``OSError``
    with an errno leave as they are, argument errors renamed after
    ``connect_ex`` as the stdlib's native call names them.
    """
    if isinstance(exc, (_socket.gaierror, _socket.herror)):
        raise exc
    if isinstance(exc, (TypeError, ValueError, OverflowError)):
        # The native connect() names itself in its argument errors.
        message = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else ""
        if message.startswith("connect():"):
            # (Called after the driver's handler has ended: nothing to chain.)
            raise type(exc)("connect_ex():" + message[len("connect():") :])
        raise exc
    if isinstance(exc, TimeoutError) and exc.errno is None:
        # The stdlib reports its own connect timeout as EWOULDBLOCK.
        return errno.EWOULDBLOCK
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    raise exc


def check_sendfile(sock_type: int, file: Any, count: int | None) -> None:
    """The stdlib's rules for ``sendfile``'s arguments, with its messages, in its order.

    (Its rule for non-blocking mode comes later, in the operations.)
    """
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if not sock_type & _socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")


def _refuse_nonblocking() -> ValueError:
    return ValueError("non-blocking sockets are not supported")


# At most 1 GiB per os.sendfile call, as the stdlib's loop does: a larger
# count can overflow the C type on 32-bit platforms.
_SENDFILE_CHUNK = 2**30
_SEND_CHUNK = 65536


def sendfile(
    sock: _socket.socket, file: Any, offset: int = 0, count: int | None = None, nonblocking: bool = False
) -> Op[int]:
    """Send ``file`` from ``offset`` until EOF or ``count`` bytes (arguments already checked).

    Zero-copy ``os.sendfile`` where the file allows it, otherwise reads and
    ``send``.  The file position ends just past the last byte sent, also when
    an exception (with ``bytes_sent``) leaves the call.  ``nonblocking`` is
    the socket's mode: then, as in the stdlib, only an empty file is sent
    (nothing), and anything else raises ``ValueError``.
    """
    if _c.fileno(sock) < 0:
        # Else os.sendfile's EBADF reads as "not mmap-able" and the fallback
        # "sends" a file already at EOF: 0 bytes, success, on a closed socket.
        raise closed_error()
    # A size of 0 also means "not a regular file" (/proc, pipes): in blocking
    # and timeout mode, read those.
    if nonblocking or _regular_fileno(file) is not None:
        try:
            return (yield from sendfile_zero_copy(sock, file, offset, count, nonblocking))
        except _GiveupOnSendfile:
            pass  # nothing was sent: fall back to read() and send()
    return (yield from sendfile_by_send(sock, file, offset, count, nonblocking))


def sendfile_zero_copy(
    sock: _socket.socket, file: Any, offset: int = 0, count: int | None = None, nonblocking: bool = False
) -> Op[int]:
    """``os.sendfile`` only; raises the stdlib's ``_GiveupOnSendfile`` if the
    file cannot go that way (no descriptor, not mmap-able) before any byte is
    sent.  An empty file sends nothing.
    """
    try:
        fileno = file.fileno()
    except (AttributeError, io.UnsupportedOperation) as err:
        raise _GiveupOnSendfile(err)
    try:
        size = os.fstat(fileno).st_size
    except OSError as err:
        raise _GiveupOnSendfile(err)
    if not size:
        return 0
    if nonblocking:
        raise _refuse_nonblocking()
    sent = 0
    pending = None
    try:
        while count is None or sent < count:
            if pending is not None:
                yield WRITE, pending
                pending = None
            want = _SENDFILE_CHUNK if count is None else min(count - sent, _SENDFILE_CHUNK)
            try:
                n = os.sendfile(_c.fileno(sock), fileno, offset + sent, want)
            except BlockingIOError as exc:
                pending = exc
                continue
            except OSError as err:
                if sent:
                    raise
                raise _GiveupOnSendfile(err)
            if n == 0:
                break  # EOF
            sent += n
        return sent
    except BaseException as exc:
        report_sent(exc, sent)
        raise
    finally:
        if sent and _seekable(file):
            file.seek(offset + sent)


def sendfile_by_send(
    sock: _socket.socket, file: Any, offset: int = 0, count: int | None = None, nonblocking: bool = False
) -> Op[int]:
    """Send ``file`` with ``read()`` and ``send()``, for files ``os.sendfile`` cannot take."""
    if nonblocking:
        raise _refuse_nonblocking()
    sent = 0
    read = False
    try:
        if offset:
            file.seek(offset)
        while count is None or sent < count:
            want = _SEND_CHUNK if count is None else min(count - sent, _SEND_CHUNK)
            block = file.read(want)
            read = True
            if not block:
                break
            with memoryview(block) as view:
                done = 0
                while done < len(view):
                    try:
                        n = _c_send(sock, view[done:])
                    except BlockingIOError as exc:
                        pending = exc
                    else:
                        done += n
                        sent += n
                        continue
                    yield WRITE, pending
        return sent
    except BaseException as exc:
        report_sent(exc, sent)
        raise
    finally:
        # read() ran ahead of what was sent: back to just past the last byte
        # sent (where the file allows it: a pipe cannot go back).
        if read and _seekable(file):
            file.seek(offset + sent)


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return hasattr(file, "seek") and not hasattr(file, "seekable")


def _regular_fileno(file: Any) -> int | None:
    try:
        fileno: int = file.fileno()
        if os.fstat(fileno).st_size == 0:
            return None
    except (AttributeError, io.UnsupportedOperation, OSError):
        return None
    return fileno


# -- small shared rules ------------------------------------------------------------


def replayable(items: Any) -> Any:
    """A one-shot iterable as a list, so a retry after a wait sees it whole.

    Anything that is not iterable goes through unchanged, for the native call
    to reject with the stdlib's own message.
    """
    if isinstance(items, (list, tuple)):
        return items
    try:
        return list(items)
    except TypeError:
        return items


def describe(name: str, sock: Any, closed: bool) -> str:
    """The stdlib's socket repr, under ``name``: fd, family, type, proto, addresses."""
    text = (
        f"<{name}{' [closed]' if closed else ''} fd={sock.fileno()}, "
        f"family={sock.family!s}, type={sock.type!s}, proto={sock.proto}"
    )
    if not closed:
        for label, get in (("laddr", sock.getsockname), ("raddr", sock.getpeername)):
            try:
                address = get()
            except OSError:
                continue
            if address:
                text += f", {label}={address}"
    return text + ">"
