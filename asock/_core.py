"""The operation core: what each I/O operation does, with no idea of how to wait.

Every operation here runs against a native socket that is always non-blocking.
A single-syscall operation is just the native method plus the direction it
waits for; a multi-step one (``sendall``, ``connect``, ``sendfile``) is a
generator that attempts its syscall and, when that would block, yields a
``Step``: the readiness it needs (``READ`` or ``WRITE``) and the
``BlockingIOError`` the kernel gave.  The caller (a *driver*) waits however it
likes, then resumes the generator, which retries.  When the driver gives up
(timeout, cancellation, close, non-blocking mode) it throws the exception into
the generator, so the operation can record its progress (``bytes_sent``)
before the exception leaves.

This module never imports asyncio: the async driver and the sync facade share
it unchanged.
"""

from __future__ import annotations

import _socket
import errno
import io
import os
from collections.abc import Callable, Generator
from socket import _GiveupOnSendfile  # type: ignore[attr-defined]
from time import monotonic
from typing import Any, TypeVar

__all__ = [
    "READ",
    "WRITE",
    "BusyError",
    "Op",
    "Step",
    "check_sendfile_args",
    "closed_error",
    "connect",
    "deadline",
    "describe",
    "parse_blocking",
    "parse_timeout",
    "replayable",
    "retry",
    "sendall",
    "sendfile",
    "sendfile_by_send",
    "sendfile_zero_copy",
    "timed_out",
]

T = TypeVar("T")

#: Directions, with the values ``selectors.EVENT_READ`` / ``EVENT_WRITE`` use.
READ = 1
WRITE = 2

Step = tuple[int, BlockingIOError]
Op = Generator[Step, None, T]


class BusyError(RuntimeError):
    """Another task is already waiting on this socket in the same direction.

    asyncio's ``add_reader`` keeps a single callback per descriptor, so a
    second waiter would silently replace the first and leave it hanging
    forever.  asock refuses the second waiter instead: at most one task may
    wait to receive (``accept``, ``recv*``) and one to send (``send*``,
    ``connect``) on a socket at any time.
    """


def closed_error() -> OSError:
    """The error every call on a closed socket raises, as the stdlib's does."""
    return OSError(errno.EBADF, os.strerror(errno.EBADF))


def timed_out() -> TimeoutError:
    """The stdlib's timeout exception: ``TimeoutError("timed out")``."""
    return TimeoutError("timed out")


def deadline(timeout: float | None, when: float | None, would_block: BlockingIOError) -> float | None:
    """The deadline for a wait about to start (None: as long as it takes).

    ``when`` is the call's deadline so far, None before its first wait: one
    deadline per call, however many waits it takes.  With ``timeout`` 0.0
    (non-blocking) the would-block is final and raised; past the deadline,
    the call times out.
    """
    if timeout is None:
        return None
    if timeout == 0.0:
        raise would_block
    if when is None:
        return monotonic() + timeout
    if monotonic() >= when:
        raise timed_out()
    return when


def _parsed(setter: Callable[[_socket.socket, Any], None], value: object) -> _socket.socket:
    """A socket object without a descriptor, after the stdlib's ``setter`` took ``value``.

    The stdlib's own parsing is the reference, and its checks and messages
    differ between Python versions.  Given a valid value, the object stores
    it and then fails to set a descriptor's mode (EBADF): the sign that the
    value was accepted.  An invalid one raises the stdlib's own error.
    """
    probe = _socket.socket.__new__(_socket.socket)
    try:
        setter(probe, value)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
    return probe


def parse_timeout(value: object) -> float | None:
    """Validate a timeout exactly as ``socket.settimeout`` does (same errors and messages)."""
    return _parsed(_socket.socket.settimeout, value).gettimeout()


def parse_blocking(flag: object) -> bool:
    """Validate ``setblocking``'s flag exactly as the stdlib does (3.12 takes any truth value)."""
    return _parsed(_socket.socket.setblocking, flag).getblocking()


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


def retry(direction: int, would_block: BlockingIOError, call: Callable[..., T], *args: Any) -> Op[T]:
    """A single syscall whose first try would block: wait, retry, until it completes.

    A driver's fast path makes the first try itself and hands over here
    without repeating the syscall that just failed.
    """
    yield direction, would_block
    while True:
        try:
            return call(*args)
        except BlockingIOError as exc:
            yield direction, exc


def sendall(sock: _socket.socket, data: Any, flags: int = 0) -> Op[None]:
    """Send every byte of ``data``; an exception leaving it has ``bytes_sent``."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not {type(data).__name__!r}") from None
    if not view.c_contiguous:
        view.release()
        raise BufferError("memoryview: underlying buffer is not C-contiguous")  # the stdlib's error
    with view, view.cast("B") as octets:
        total = len(octets)
        sent = 0
        try:
            # At least one send, even of nothing: like the stdlib, sendall(b"")
            # reports a broken connection instead of succeeding silently.
            while True:
                try:
                    sent += sock.send(octets[sent:], flags)
                except BlockingIOError as exc:
                    yield WRITE, exc
                    continue
                if sent >= total:
                    break
                # A short send means the send buffer is full: trying again now
                # would only fail with EAGAIN (a syscall and an exception), so
                # wait for room first.
                yield WRITE, BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        except BaseException as exc:
            exc.bytes_sent = sent  # type: ignore[attr-defined]
            raise


def connect(sock: _socket.socket, address: Any) -> Op[None]:
    """Connect; a connect left in progress is finished through ``SO_ERROR``."""
    while True:
        try:
            sock.connect(address)
            return
        except BlockingIOError as exc:
            pending = exc
            if exc.errno == errno.EAGAIN:
                # An AF_UNIX listener with a full backlog: nothing is in
                # progress, so connect again once there may be room.
                yield WRITE, exc
                continue
        except InterruptedError:
            # A signal interrupted connect(): the attempt carries on in the
            # kernel, so wait for it rather than starting another one.
            pending = BlockingIOError(errno.EINPROGRESS, os.strerror(errno.EINPROGRESS))
        break
    while True:
        yield WRITE, pending
        err = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        # A wake-up is only a hint (a deadline timer or a spurious report
        # also wakes us): the connection is made once it has a peer.
        try:
            sock.getpeername()
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
            continue
        return


def check_sendfile_args(sock_type: int, file: Any, offset: int, count: int | None) -> None:
    """The stdlib's argument rules for ``sendfile``, with its messages."""
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if not sock_type & _socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")


# os.sendfile takes at most this much at once on some kernels (bpo-38319).
_SENDFILE_CHUNK = 2**30
_SEND_CHUNK = 65536


def sendfile(sock: _socket.socket, file: Any, offset: int = 0, count: int | None = None) -> Op[int]:
    """Send ``file`` from ``offset`` until EOF or ``count`` bytes.

    Zero-copy ``os.sendfile`` where the file allows it, otherwise reads and
    ``send``.  The file position ends just past the last byte sent, also when
    an exception (with ``bytes_sent``) leaves the call.
    """
    check_sendfile_args(sock.type, file, offset, count)
    if sock.fileno() < 0:
        # Else os.sendfile's EBADF reads as "not mmap-able" and the fallback
        # "sends" a file already at EOF: 0 bytes, success, on a closed socket.
        raise closed_error()
    # A size of 0 also means "not a regular file" (/proc, pipes): read those.
    if _regular_fileno(file) is not None:
        try:
            return (yield from sendfile_zero_copy(sock, file, offset, count))
        except _GiveupOnSendfile:
            pass  # nothing was sent: fall back to read() and send()
    return (yield from sendfile_by_send(sock, file, offset, count))


def sendfile_zero_copy(sock: _socket.socket, file: Any, offset: int = 0, count: int | None = None) -> Op[int]:
    """``os.sendfile`` only; raises the stdlib's ``_GiveupOnSendfile`` if the
    file cannot go that way (no descriptor, not mmap-able) before any byte is
    sent.  An empty file sends nothing.
    """
    check_sendfile_args(sock.type, file, offset, count)
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
    sent = 0
    try:
        while count is None or sent < count:
            want = _SENDFILE_CHUNK if count is None else min(count - sent, _SENDFILE_CHUNK)
            try:
                n = os.sendfile(sock.fileno(), fileno, offset + sent, want)
            except BlockingIOError as exc:
                yield WRITE, exc
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
        exc.bytes_sent = sent  # type: ignore[attr-defined]
        raise
    finally:
        if sent and hasattr(file, "seek"):
            file.seek(offset + sent)


def sendfile_by_send(sock: _socket.socket, file: Any, offset: int = 0, count: int | None = None) -> Op[int]:
    """Send ``file`` with ``read()`` and ``send()``, for files ``os.sendfile`` cannot take."""
    check_sendfile_args(sock.type, file, offset, count)
    sent = 0
    try:
        if offset:
            file.seek(offset)
        while count is None or sent < count:
            want = _SEND_CHUNK if count is None else min(count - sent, _SEND_CHUNK)
            block = file.read(want)
            if not block:
                break
            with memoryview(block) as view:
                done = 0
                while done < len(view):
                    try:
                        n = sock.send(view[done:])
                    except BlockingIOError as exc:
                        yield WRITE, exc
                        continue
                    done += n
                    sent += n
        return sent
    except BaseException as exc:
        exc.bytes_sent = sent  # type: ignore[attr-defined]
        raise
    finally:
        if sent and hasattr(file, "seek"):
            file.seek(offset + sent)


def _regular_fileno(file: Any) -> int | None:
    try:
        fileno: int = file.fileno()
        if os.fstat(fileno).st_size == 0:
            return None
    except (AttributeError, io.UnsupportedOperation, OSError):
        return None
    return fileno
