"""The sync driver: ``asock.sync.socket``, a drop-in for the stdlib's socket class.

What each call does is the operation core's (``_core``); this module only
waits.  The descriptor stays non-blocking in every mode.  Blocking (timeout
None), non-blocking (0.0) and timeout (t > 0) modes are reproduced here: a
call tries its syscall at once; when that would block it waits with ``poll``
on the descriptor, for at most the time left until the call's single
deadline, and tries again.

Why subclass the C type ``_socket.socket`` rather than wrap one: the stdlib
class does the same, so ``isinstance(s, socket.SocketType)``, ``SocketType is
_socket.socket``, and C code that accepts only socket objects keep working,
and argument checking, address parsing and error messages are the C type's own.
Only the waiting is ours: the C object's own timeout stays 0.0 (its calls
never wait), and every method that could wait is overridden below.
"""

from __future__ import annotations

import _socket
import io
import os
import select
import socket as _stdlib
from _io import text_encoding  # io's since 3.10; typeshed has it there only from 3.11
from time import monotonic

from . import _core
from ._base import SocketBase
from ._core import READ, WRITE

TYPE_CHECKING = False  # not typing's: see _core
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TypeVar

    T = TypeVar("T")
    _Address = Any
    _Buffer = Any

__all__ = ["socket"]

_POLL_EVENTS = {READ: select.POLLIN, WRITE: select.POLLOUT}
_MAX_POLL_MS = 2**31 - 1

# The C type's methods, which never wait because its timeout stays 0.0.
_c = _socket.socket
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


def _poll(fd: int, direction: int, left: float | None) -> None:
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


class socket(SocketBase, _socket.socket):
    """socket(family=AF_INET, type=SOCK_STREAM, proto=0, fileno=None)

    The stdlib's socket object, with the stdlib's blocking, non-blocking and
    timeout modes, built on a descriptor that is always non-blocking.
    """

    __slots__ = ("__weakref__", "_closed", "_hint", "_io_refs", "_timeout")
    __module__ = "asock.sync"  # where users find it, as the stdlib's shows "socket.socket"

    _io_refs: int
    _closed: bool
    _hint: int  # _core.receive_hint's count

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
        self._hint = 0
        # The C object's timeout right after creation is the stdlib's initial
        # mode (the default timeout, or 0.0 for SOCK_NONBLOCK); keep it as
        # ours and make the C object itself never wait.
        self._timeout = _c.gettimeout(self)
        _c.setblocking(self, False)

    def _native(self) -> _socket.socket:
        # This object: the core calls its C methods unbound.
        return self

    # -- the driver: how to wait -------------------------------------------------

    def _io(self, direction: int, flags: Any, first: bool, call: Callable[..., T], *args: Any) -> T:
        """One syscall: try it now, and after every wait try again until it completes.

        ``first`` makes it wait for readiness before the first try
        (``_core.wait_first``): that wait and the first try are written out
        here, the facade's hot path in request/response traffic.
        """
        when = None
        if first:
            timeout = self._timeout
            when = None if timeout is None else _core.deadline(timeout, None)
            _poll(_c.fileno(self), direction, timeout)
        try:
            return call(*args)
        except BlockingIOError as exc:
            pending = exc
        if _core.gives_up(self._timeout, flags):
            raise pending
        op = _core.retry(direction, pending, call, *args)
        return _core.run_sync(_core.drive(op, self._wait, call, self._timeout, flags, when))

    def _drive(self, op: _core.Op[T], what: str, flags: Any = 0) -> T:
        """Run a multi-step core operation, waiting with poll between its steps."""
        return _core.run_sync(_core.drive(op, self._wait, what, self._timeout, flags))

    async def _wait(self, direction: int, when: float | None, what: Any) -> None:
        """Block in poll until the descriptor looks ready in ``direction`` or ``when`` passes.

        A coroutine only in form, for the core's ``drive``: it never suspends.
        """
        _poll(_c.fileno(self), direction, None if when is None else when - monotonic())

    # -- calls that may wait --------------------------------------------------

    def _accept(self) -> tuple[int, _Address]:
        """_accept() -> (fd, address); waits per the socket's mode."""
        return self._io(READ, 0, False, _core.native_accept, self)

    def accept(self) -> tuple[socket, _Address]:
        """accept() -> (socket object, address info)"""
        fd, address = self._accept()
        # The new socket's mode is the default timeout's, whatever flags the
        # platform lets it inherit from the listener (bpo-7995).
        return socket(_c_family(self), _c_type(self), self.proto, fileno=fd), address

    def connect(self, address: _Address) -> None:
        """connect(address); a timeout bounds the whole connection attempt."""
        self._drive(_core.connect(self, address), "connect")

    def connect_ex(self, address: _Address) -> int:
        """connect_ex(address) -> errno, instead of raising it."""
        try:
            self.connect(address)
            return 0
        except BaseException as exc:
            failure = exc
        return _core.connect_errno(failure)

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        """recv(buffersize[, flags]) -> data"""
        hint = self._hint
        first = hint > 0 and _core.wait_first(hint, self._timeout, flags, bufsize)
        data = self._io(READ, flags, first, _c_recv, self, bufsize, flags)
        self._hint = _core.receive_hint(hint, len(data) < bufsize and not flags)
        return data

    def recv_into(self, buffer: _Buffer, nbytes: int = 0, flags: int = 0) -> int:
        """recv_into(buffer, [nbytes[, flags]]) -> nbytes_read"""
        hint = self._hint
        want = _core.into_size(buffer, nbytes)
        first = hint > 0 and _core.wait_first(hint, self._timeout, flags, want)
        count = self._io(READ, flags, first, _c_recv_into, self, buffer, nbytes, flags)
        self._hint = _core.receive_hint(hint, count < want and not flags)
        return count

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, _Address]:
        """recvfrom(buffersize[, flags]) -> (data, address info)"""
        return self._io(READ, flags, False, _c_recvfrom, self, bufsize, flags)

    def recvfrom_into(self, buffer: _Buffer, nbytes: int = 0, flags: int = 0) -> tuple[int, _Address]:
        """recvfrom_into(buffer[, nbytes[, flags]]) -> (nbytes, address info)"""
        return self._io(READ, flags, False, _c_recvfrom_into, self, buffer, nbytes, flags)

    def recvmsg(self, *args: Any) -> tuple[bytes, list[tuple[int, int, bytes]], int, _Address]:
        """recvmsg(bufsize[, ancbufsize[, flags]]) -> (data, ancdata, msg_flags, address)"""
        return self._io(READ, args[2] if len(args) > 2 else 0, False, _c_recvmsg, self, *args)

    def recvmsg_into(self, buffers: Iterable[_Buffer], *args: Any) -> tuple[int, list[Any], int, _Address]:
        """recvmsg_into(buffers[, ancbufsize[, flags]]) -> (nbytes, ancdata, msg_flags, address)"""
        flags = args[1] if len(args) > 1 else 0
        return self._io(READ, flags, False, _c_recvmsg_into, self, _core.replayable(buffers), *args)

    def send(self, data: _Buffer, flags: int = 0, /) -> int:
        """send(data[, flags]) -> count"""
        return self._io(WRITE, flags, False, _c_send, self, data, flags)

    def sendall(self, data: _Buffer, flags: int = 0, /) -> None:
        """sendall(data[, flags]); a timeout bounds the whole call, and the
        TimeoutError carries ``bytes_sent``."""
        sent = 0
        try:
            sent = _core.send_first(self, data, flags)
            if sent >= 0:
                self._drive(_core.sendall(self, data, flags, sent), "sendall", flags)
        except BaseException as exc:
            # What a signal handler raises between the steps, once bytes have
            # gone, still says how many (the operation stamps its own).
            if sent > 0 and not hasattr(exc, "bytes_sent"):
                _core.report_sent(exc, sent)
            raise

    def sendto(self, data: _Buffer, *args: Any) -> int:
        """sendto(data[, flags], address) -> count"""
        return self._io(WRITE, args[0] if len(args) > 1 else 0, False, _c_sendto, self, data, *args)

    def sendmsg(self, buffers: Iterable[_Buffer], *args: Any) -> int:
        """sendmsg(buffers[, ancdata[, flags[, address]]]) -> count"""
        if args and not isinstance(args[0], (list, tuple)):
            args = (_core.replayable(args[0]), *args[1:])
        flags = args[1] if len(args) > 1 else 0
        return self._io(WRITE, flags, False, _c_sendmsg, self, _core.replayable(buffers), *args)

    if hasattr(_c, "sendmsg_afalg"):

        def sendmsg_afalg(self, *args: Any, **kwargs: Any) -> int:
            """sendmsg_afalg([msg], *, op[, iv[, assoclen[, flags=MSG_MORE]]])"""
            return self._io(WRITE, kwargs.get("flags", 0), False, lambda: _c.sendmsg_afalg(self, *args, **kwargs))

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

    def _sendfile(self, how: Callable[..., _core.Op[int]], file: Any, offset: int, count: int | None) -> int:
        _core.check_sendfile(_c_type(self), file, count)
        return self._drive(how(self, file, offset, count, self._timeout == 0.0), "sendfile")

    # -- the stdlib's Python-level socket methods ------------------------------

    @property
    def timeout(self) -> float | None:
        """The timeout in seconds, or None."""
        return self._timeout

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
        # typeshed's SocketIO takes only the stdlib's socket class, and a literal mode.
        me: Any = self
        rawmode: Any = ("r" if reading else "") + ("w" if writing else "")
        raw = _stdlib.SocketIO(me, rawmode)
        self._io_refs += 1
        if buffering is None or buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: Any
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(buffer, text_encoding(encoding), errors, newline)
        setattr(text, "mode", mode)  # noqa: B010  (read-only to type checkers, as the stdlib sets it)
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
            try:
                _c.setblocking(self, True)
            except OSError:
                pass
        return _c.detach(self)

    def __enter__(self) -> socket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._closed:
            self.close()

    def __repr__(self) -> str:
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        return _core.describe(name, self, getattr(self, "_closed", False))


# -- the compiled fast path ------------------------------------------------------

#: The pure-Python hot methods: the reference, whichever implementation the class uses.
REFERENCE: dict[str, Callable[..., Any]] = {
    name: socket.__dict__[name] for name in ("recv", "recv_into", "send", "sendall")
}


def _use_extension() -> bool:
    """Bind the optional C extension's recv, recv_into, send and sendall as the class's methods.

    They do what the Python methods above do, which stay the reference (and
    which the C ones call for the call shapes they leave to them).  Without
    the extension (not built: no compiler where asock was installed), or with
    ASOCK_NO_EXTENSIONS=1 in the environment, the Python methods stay.
    """
    if os.environ.get("ASOCK_NO_EXTENSIONS", "") not in ("", "0"):
        return False
    try:
        from . import _speedups
    except ImportError:
        return False
    for name, method in _speedups.methods(socket, _socket.socket, _core.WAIT_FIRST).items():
        setattr(socket, name, method)
    return True


#: Whether the class's hot methods are the C extension's (else the Python ones above).
EXTENSION = _use_extension()
