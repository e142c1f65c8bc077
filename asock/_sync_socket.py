"""The sync driver: ``asock.sync.socket``, a drop-in for the stdlib's socket class.

The descriptor stays non-blocking in every mode.  Blocking (timeout None),
non-blocking (0.0) and timeout (t > 0) modes are reproduced here: a call tries
its syscall at once; when that would block it runs the shared core operation
and waits between steps with ``poll`` on the descriptor, for at most the time
left until the call's single deadline.

Why subclass the C type ``_socket.socket`` rather than wrap one: the stdlib
class does the same, so ``isinstance(s, socket.SocketType)``, ``SocketType is
_socket.socket``, and C code that accepts only socket objects keep working,
and argument checking, address parsing and error messages are the C type's own.
Only the waiting is ours: the C object's own timeout stays 0.0 (its calls
never wait), and every method that could wait is overridden below.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import io
import os
import select
import socket as _stdlib
from collections.abc import Iterable
from time import monotonic
from typing import Any, TypeVar

from . import _core
from ._core import READ, WRITE

__all__ = ["socket"]

T = TypeVar("T")

_Address = Any
_Buffer = Any

_DONTWAIT = getattr(_socket, "MSG_DONTWAIT", 0)
# How many full reads in a row end the wait-first regime of receives.
_WAIT_FIRST = 8
_POLL_EVENTS = {READ: select.POLLIN, WRITE: select.POLLOUT}
_MAX_POLL_MS = 2**31 - 1

# The C type's methods, which never wait because its timeout stays 0.0.
_c = _socket.socket
_c_accept = _c._accept  # type: ignore[attr-defined]
_c_recv = _c.recv
_c_recv_into = _c.recv_into
_c_recvfrom = _c.recvfrom
_c_recvfrom_into = _c.recvfrom_into
_c_recvmsg = _c.recvmsg
_c_recvmsg_into = _c.recvmsg_into
_c_send = _c.send
_c_sendto = _c.sendto
_c_sendmsg = _c.sendmsg
_c_type = _c.type.__get__
_c_family = _c.family.__get__


def _wait(fd: int, direction: int, left: float | None) -> None:
    """Block until ``fd`` looks ready in ``direction``, or for at most ``left`` seconds.

    A fresh poll object per wait: several threads may wait on one socket at
    once (a pre-threaded accept loop), and ``select.poll`` objects refuse
    concurrent ``poll()`` calls.  ``poll`` itself retries after EINTR with the
    time left (PEP 475) and lets a signal handler's exception through.
    """
    if fd < 0:
        raise _core.closed_error()
    poller = select.poll()
    poller.register(fd, _POLL_EVENTS[direction])
    if left is None:
        poller.poll()
    elif left > 0.0:
        # poll() rounds a fractional millisecond up, so one wake-up is enough
        # to see the deadline passed.  It takes at most an int of
        # milliseconds (~24.8 days); a longer wait is a hint like any other:
        # the caller retries and waits again for the time left.
        ms = left * 1000.0
        poller.poll(ms if ms < _MAX_POLL_MS else _MAX_POLL_MS)


class _Native:
    """The facade socket seen as a plain non-blocking socket, for the core's
    multi-step operations: they call ``sock.send`` or ``sock.connect``, which
    on the facade itself are the waiting versions.  Every attribute resolves
    to the C type's own (never waiting) method or property."""

    __slots__ = ("_sock",)

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock

    def send(self, data: _Buffer, flags: int = 0) -> int:
        # Spelled out: it is the one called in loops (sendall, sendfile).
        return _c_send(self._sock, data, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(_c, name).__get__(self._sock)


class socket(_socket.socket):
    """socket(family=AF_INET, type=SOCK_STREAM, proto=0, fileno=None)

    The stdlib's socket object, with the stdlib's blocking, non-blocking and
    timeout modes, built on a descriptor that is always non-blocking.
    """

    __slots__ = ("__weakref__", "_closed", "_io_refs", "_timeout", "_wait_first")
    __module__ = "asock.sync"  # where users find it, as the stdlib's shows "socket.socket"

    _io_refs: int
    _closed: bool
    _timeout: float | None
    _wait_first: int  # receives left that wait before trying (see _await)

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        if fileno is None:
            if family == -1:
                family = _socket.AF_INET
            if type == -1:
                type = _socket.SOCK_STREAM
            if proto == -1:
                proto = 0
        _c.__init__(self, family, type, proto, fileno)
        self._io_refs = 0
        self._closed = False
        self._wait_first = 0
        # The C object's timeout right after creation is the stdlib's initial
        # mode (the default timeout, or 0.0 for SOCK_NONBLOCK); keep it as
        # ours and make the C object itself never wait.
        self._timeout = _c.gettimeout(self)
        _c.setblocking(self, False)

    # -- the driver ---------------------------------------------------------

    def _drive(self, op: _core.Op[T], flags: Any = 0, when: float | None = None) -> T:
        """Run a core operation, waiting with poll between its steps.

        ``when`` is the call's deadline if it already has one (a wait came
        first); otherwise the first wait sets it.
        """
        timeout = 0.0 if self._no_wait(flags) else self._timeout
        try:
            step = op.send(None)
            while True:
                direction, would_block = step
                try:
                    when = _core.deadline(timeout, when, would_block)
                    _wait(_c.fileno(self), direction, None if when is None else when - monotonic())
                except BaseException as exc:
                    # The operation records its progress (bytes_sent) and
                    # re-raises the same exception.
                    op.throw(exc)
                    raise
                step = op.send(None)
        except StopIteration as done:
            result: T = done.value
            return result

    def _no_wait(self, flags: Any) -> bool:
        """Whether a call that would block raises BlockingIOError at once.

        So it does in non-blocking mode, and, as in the stdlib (where the
        kernel then decides), with MSG_DONTWAIT in blocking mode.
        """
        timeout = self._timeout
        return timeout == 0.0 or (timeout is None and bool(flags & _DONTWAIT))

    def _io(self, direction: int, flags: Any, call: Any, *args: Any) -> Any:
        """Try one syscall now; if it would block, wait per the mode and retry."""
        try:
            return call(self, *args)
        except BlockingIOError as exc:
            if self._no_wait(flags):
                raise
            return self._drive(_core.retry(direction, exc, call, self, *args))

    # -- calls that may wait --------------------------------------------------

    def _accept(self) -> tuple[int, _Address]:
        """_accept() -> (fd, address); waits per the socket's mode."""
        return self._io(READ, 0, _c_accept)  # type: ignore[no-any-return]

    def accept(self) -> tuple[socket, _Address]:
        """accept() -> (socket object, address info)"""
        fd, address = self._io(READ, 0, _c_accept)
        # The new socket's mode is the default timeout's, whatever flags the
        # platform lets it inherit from the listener (bpo-7995).
        return socket(_c_family(self), _c_type(self), self.proto, fileno=fd), address

    def connect(self, address: _Address) -> None:
        """connect(address); a timeout bounds the whole connection attempt."""
        self._drive(_core.connect(_Native(self), address))  # type: ignore[arg-type]

    def connect_ex(self, address: _Address) -> int:
        """connect_ex(address) -> errno, instead of raising it."""
        try:
            self.connect(address)
        except (_socket.gaierror, _socket.herror):
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            # The native connect() names itself in its argument errors.
            message = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else ""
            if message.startswith("connect():"):
                raise type(exc)("connect_ex():" + message[len("connect():") :]) from None
            raise
        except TimeoutError as exc:
            # The stdlib reports its own connect timeout as EWOULDBLOCK.
            return exc.errno if exc.errno is not None else errno.EWOULDBLOCK
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        """recv(buffersize[, flags]) -> data"""
        when = None
        # Only with arguments the native call will accept: bad ones must fail
        # at once, not after a wait.
        if (
            self._wait_first
            and self._timeout != 0.0
            and type(flags) is int
            and not flags
            and type(bufsize) is int
            and bufsize > 0
        ):
            when = self._await(READ)
        try:
            data: bytes = _c_recv(self, bufsize, flags)
        except BlockingIOError as exc:
            if self._no_wait(flags):
                raise
            data = self._drive(_core.retry(READ, exc, _c_recv, self, bufsize, flags), flags, when)
            self._wait_first = _WAIT_FIRST
            return data
        if len(data) < bufsize:
            self._wait_first = _WAIT_FIRST
        elif self._wait_first:
            self._wait_first -= 1
        return data

    def recv_into(self, buffer: _Buffer, nbytes: int = 0, flags: int = 0) -> int:
        """recv_into(buffer, [nbytes[, flags]]) -> nbytes_read"""
        when = None
        wait_first = self._wait_first and self._timeout != 0.0
        if wait_first and type(flags) is int and not flags and _valid_into(buffer, nbytes):
            when = self._await(READ)
        try:
            count: int = _c_recv_into(self, buffer, nbytes, flags)
        except BlockingIOError as exc:
            if self._no_wait(flags):
                raise
            count = self._drive(_core.retry(READ, exc, _c_recv_into, self, buffer, nbytes, flags), flags, when)
            self._wait_first = _WAIT_FIRST
            return count
        if count < (nbytes or len(buffer)):
            self._wait_first = _WAIT_FIRST
        elif self._wait_first:
            self._wait_first -= 1
        return count

    def _await(self, direction: int) -> float | None:
        """Wait for readiness before trying the syscall; return the call's deadline.

        Used where the syscall would almost surely fail with EAGAIN (an
        exception and a wasted syscall, the dearer mistake) before waiting:
        a send after a short send (the buffer is full), and receives after a
        receive that had to wait or read short (the peer is slower than we
        are: request/response traffic).  A receive that then reads a full
        buffer counts down ``_wait_first``; at zero, receives try first again
        (a bulk stream that keeps the buffer full).  This keeps request/
        response traffic at the stdlib's cost in timeout mode (poll, then the
        syscall).  Readiness is still only a hint: the syscall that follows
        may find nothing and wait again, within the same deadline.
        """
        timeout = self._timeout
        when = None if timeout is None else monotonic() + timeout
        _wait(_c.fileno(self), direction, timeout)
        return when

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, _Address]:
        """recvfrom(buffersize[, flags]) -> (data, address info)"""
        return self._io(READ, flags, _c_recvfrom, bufsize, flags)  # type: ignore[no-any-return]

    def recvfrom_into(self, buffer: _Buffer, nbytes: int = 0, flags: int = 0) -> tuple[int, _Address]:
        """recvfrom_into(buffer[, nbytes[, flags]]) -> (nbytes, address info)"""
        return self._io(READ, flags, _c_recvfrom_into, buffer, nbytes, flags)  # type: ignore[no-any-return]

    def recvmsg(self, *args: Any) -> tuple[bytes, list[tuple[int, int, bytes]], int, _Address]:
        """recvmsg(bufsize[, ancbufsize[, flags]]) -> (data, ancdata, msg_flags, address)"""
        return self._io(READ, args[2] if len(args) > 2 else 0, _c_recvmsg, *args)  # type: ignore[no-any-return]

    def recvmsg_into(self, buffers: Iterable[_Buffer], *args: Any) -> tuple[int, list[Any], int, _Address]:
        """recvmsg_into(buffers[, ancbufsize[, flags]]) -> (nbytes, ancdata, msg_flags, address)"""
        return self._io(READ, args[1] if len(args) > 1 else 0, _c_recvmsg_into, _core.replayable(buffers), *args)  # type: ignore[no-any-return]

    def send(self, data: _Buffer, flags: int = 0, /) -> int:
        """send(data[, flags]) -> count"""
        try:
            return _c_send(self, data, flags)
        except BlockingIOError as exc:
            if self._no_wait(flags):
                raise
            return self._drive(_core.retry(WRITE, exc, _c_send, self, data, flags))

    def sendall(self, data: _Buffer, flags: int = 0, /) -> None:
        """sendall(data[, flags]); a timeout bounds the whole call, and the
        TimeoutError carries ``bytes_sent``."""
        # Most sends of a small message complete at once: skip the core then.
        try:
            sent = _c_send(self, data, flags)
        except BlockingIOError:
            if self._no_wait(flags):
                raise
            sent = 0
        else:
            size = len(data) if type(data) is bytes else _nbytes(data)
            if sent == size:
                return
        when = None
        try:
            if sent:
                data = memoryview(data).cast("B")[sent:]
            if not self._no_wait(flags):
                # A short or refused send means the send buffer is full: the
                # next send would only fail with EAGAIN, so wait first.
                when = self._await(WRITE)
            self._drive(_core.sendall(_Native(self), data, flags), flags, when)  # type: ignore[arg-type]
        except BaseException as exc:
            if sent:
                exc.bytes_sent = getattr(exc, "bytes_sent", 0) + sent  # type: ignore[attr-defined]
            raise

    def sendto(self, data: _Buffer, *args: Any) -> int:
        """sendto(data[, flags], address) -> count"""
        return self._io(WRITE, args[0] if len(args) > 1 else 0, _c_sendto, data, *args)  # type: ignore[no-any-return]

    def sendmsg(self, buffers: Iterable[_Buffer], *args: Any) -> int:
        """sendmsg(buffers[, ancdata[, flags[, address]]]) -> count"""
        if args and not isinstance(args[0], (list, tuple)):
            args = (_core.replayable(args[0]), *args[1:])
        return self._io(WRITE, args[1] if len(args) > 1 else 0, _c_sendmsg, _core.replayable(buffers), *args)  # type: ignore[no-any-return]

    if hasattr(_c, "sendmsg_afalg"):

        def sendmsg_afalg(self, *args: Any, **kwargs: Any) -> int:
            """sendmsg_afalg([msg], *, op[, iv[, assoclen[, flags=MSG_MORE]]])"""
            call = _c.sendmsg_afalg
            try:
                return call(self, *args, **kwargs)
            except BlockingIOError as exc:
                if self._no_wait(kwargs.get("flags", 0)):
                    raise
                op = _core.retry(WRITE, exc, lambda: call(self, *args, **kwargs))
                return self._drive(op)

    # -- sendfile -----------------------------------------------------------

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """sendfile(file[, offset[, count]]) -> sent

        Send a binary file until EOF (or ``count`` bytes) from ``offset``,
        with zero-copy ``os.sendfile`` where the file allows it.  The timeout
        bounds the whole call; the file position ends just past the bytes
        sent, also when an exception (carrying ``bytes_sent``) leaves it.
        """
        return self._sendfile(_core.sendfile, file, offset, count)

    def _sendfile_use_sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        return self._sendfile(_core.sendfile_zero_copy, file, offset, count)

    def _sendfile_use_send(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        return self._sendfile(_core.sendfile_by_send, file, offset, count)

    def _sendfile(self, how: Any, file: Any, offset: int, count: int | None) -> int:
        _core.check_sendfile_args(_c_type(self), file, offset, count)
        if self._timeout == 0.0:
            raise ValueError("non-blocking sockets are not supported")
        return self._drive(how(_Native(self), file, offset, count))  # type: ignore[no-any-return]

    # -- modes ----------------------------------------------------------------

    def settimeout(self, value: float | None) -> None:
        """settimeout(timeout): None blocks, 0.0 never waits, t > 0 bounds each call."""
        timeout = _core.parse_timeout(value)
        # Re-assert O_NONBLOCK (someone sharing the descriptor may have
        # cleared it), and fail on a closed socket as the stdlib does.
        _c.setblocking(self, False)
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        """gettimeout() -> timeout in seconds, or None"""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """setblocking(flag): True is settimeout(None), False is settimeout(0.0)."""
        blocking = _core.parse_blocking(flag)
        _c.setblocking(self, False)
        self._timeout = None if blocking else 0.0

    def getblocking(self) -> bool:
        """getblocking() -> False only in non-blocking mode (timeout 0.0)"""
        return self._timeout != 0.0

    @property
    def timeout(self) -> float | None:
        """The timeout in seconds, or None."""
        return self._timeout

    # -- the stdlib's Python-level socket methods ------------------------------

    @property
    def family(self) -> _stdlib.AddressFamily:
        """Read-only access to the address family for this socket."""
        return _convert(_c_family(self), _stdlib.AddressFamily)  # type: ignore[no-any-return]

    @property
    def type(self) -> _stdlib.SocketKind:
        """Read-only access to the socket type."""
        return _convert(_c_type(self), _stdlib.SocketKind)  # type: ignore[no-any-return]

    def get_inheritable(self) -> bool:
        """Whether child processes inherit the descriptor."""
        return os.get_inheritable(self.fileno())

    def set_inheritable(self, inheritable: bool) -> None:
        """Set whether child processes inherit the descriptor."""
        os.set_inheritable(self.fileno(), inheritable)

    def dup(self) -> socket:
        """dup() -> a new socket object on a duplicate of the descriptor, same mode."""
        fd = _socket.dup(self.fileno())
        new = type(self)(_c_family(self), _c_type(self), self.proto, fileno=fd)
        new._timeout = self._timeout
        return new

    def makefile(
        self,
        mode: str = "r",
        buffering: int | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        """A file object on the socket, with the stdlib's modes and rules.

        The socket must stay in blocking or timeout mode for buffered reads
        to behave; closing the socket while file objects are open defers the
        real close until the last of them is closed.
        """
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        raw = _stdlib.SocketIO(self, ("r" if reading else "") + ("w" if writing else ""))  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering is None or buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: io.BufferedIOBase
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(buffer, io.text_encoding(encoding), errors, newline)  # type: ignore[attr-defined,type-var]
        text.mode = mode  # type: ignore[misc]
        return text

    def _decref_socketios(self) -> None:
        # Called by SocketIO.close(): the last file object closes for real
        # a socket whose close() was deferred.
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    def _real_close(self) -> None:
        _c.close(self)

    def close(self) -> None:
        """close(); deferred while makefile() objects are open."""
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def detach(self) -> int:
        """detach() -> fd, leaving the descriptor open and this object closed."""
        self._closed = True
        if self._timeout is None and _c.fileno(self) >= 0:
            # Hand the descriptor on as a stdlib socket in blocking mode would
            # have it, blocking: code that adopts it (a stdlib socket, a child
            # process, os.fdopen) relies on that.  Like the stdlib's, detach
            # itself never fails, whatever state the descriptor is in.
            with contextlib.suppress(OSError):
                _c.setblocking(self, True)
        return _c.detach(self)

    def __enter__(self) -> socket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._closed:
            self.close()

    def __repr__(self) -> str:
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        return _core.describe(name, self, getattr(self, "_closed", False))

    def __getstate__(self) -> object:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


def _valid_into(buffer: Any, nbytes: Any) -> bool:
    """Whether ``recv_into(buffer, nbytes)`` has arguments the native call accepts."""
    if type(nbytes) is not int or nbytes < 0:
        return False
    if type(buffer) is bytearray:
        return nbytes <= len(buffer)
    if type(buffer) is memoryview:
        return not buffer.readonly and buffer.c_contiguous and nbytes <= buffer.nbytes
    return False


def _nbytes(data: Any) -> int:
    with memoryview(data) as view:
        return view.nbytes


def _convert(value: int, enum: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        return value
