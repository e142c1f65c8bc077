"""The async driver: ``asock.socket``, whose blocking methods are coroutines.

Waiting happens on the running loop's selector through ``add_reader`` /
``add_writer``; the syscalls themselves always run in the awaiting task's own
step (never in a loop callback), so a cancelled or timed-out receive has
consumed nothing.  Nothing here depends on the loop's ``sock_*`` methods,
which uvloop does not fully provide.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import math
import os
import socket as _stdlib
import sys
import time
import warnings
import weakref
from _thread import get_ident
from asyncio.events import _get_running_loop
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar, overload

from . import _core
from ._core import READ, WRITE, BusyError
from ._resolve import resolve_address

__all__ = ["socket"]

T = TypeVar("T")

# How many calls in a row may complete without waiting before the task yields
# to the loop once.  examples/bench/fairness.py: with 64 a reader that never
# waits keeps ~90% of its unbounded rate while another task waits ~1 ms at
# most for a turn; 16 costs ~30% of the rate, unbounded starves the other task.
_BUDGET = 64

# Sending to a peer that has gone raises BrokenPipeError instead of raising
# SIGPIPE, even where a program has restored SIGPIPE's default action (which
# would kill the process).  Python ignores SIGPIPE at start-up; this does not
# depend on it.
_NOSIGNAL: int = getattr(_socket, "MSG_NOSIGNAL", 0)
_DONTWAIT: int = getattr(_socket, "MSG_DONTWAIT", 0)
# Tells sendto(data, address) from sendto(data, flags, address) even when
# the caller passes None as the address (which the stdlib rejects).
_NO_ADDRESS: Any = object()

# Before Python 3.12, looking up the running loop costs a getpid() syscall
# (a fork-safety check, gh-100363): twice per request in an echo server, a
# few percent of its CPU.  There the hot path instead asks whether the
# socket's own loop is running in this thread, which only the running loop
# can be (one loop runs per thread).
_SLOW_LOOKUP = sys.version_info < (3, 12)

_Address = Any
_Buffer = Any


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# ``_watching`` holds READ / WRITE while the direction is registered, and the
# same bit shifted left by _ENDED once the loop has let go of a registration
# (see _Watch): that one is removed before the direction is registered again.
_ENDED = 2


class _Watch(weakref.ref["socket"]):
    """A registration's callback argument: a weak reference to the socket.

    The loop holds the only strong reference to it, so it is collected when
    the loop lets go of the registration: on remove_reader / remove_writer,
    and also when uvloop (libuv) ends a watch by itself because the descriptor
    reported an error (POLLERR, e.g. after a reset), after one last callback.
    Its finalizer tells the socket, so no wait relies on a dead watch.  The
    reference to the socket is weak so that a socket dropped while registered
    is still collected (and warned about).
    """

    __slots__ = ()
    direction: ClassVar[int]
    ended: ClassVar[int]  # direction << _ENDED (no module globals: finalizers may run at shutdown)

    def __del__(self) -> None:
        sock = self()
        if sock is not None:
            sock._watching = sock._watching & ~self.direction | self.ended


class _ReadWatch(_Watch):
    __slots__ = ()
    direction = READ
    ended = READ << _ENDED


class _WriteWatch(_Watch):
    __slots__ = ()
    direction = WRITE
    ended = WRITE << _ENDED


def _on_readable(watch: _Watch) -> None:
    sock = watch()
    if sock is not None:
        fut = sock._reader
        if fut is None or fut.done():
            sock._unwatch(READ)
        else:
            fut.set_result(None)


def _on_writable(watch: _Watch) -> None:
    sock = watch()
    if sock is not None:
        fut = sock._writer
        if fut is None or fut.done():
            sock._unwatch(WRITE)
        else:
            fut.set_result(None)


_AGAIN: Any = object()


def _attempt(call: Any, args: tuple[Any, ...]) -> Any:
    """The syscall, with "would block" returned as ``_AGAIN`` rather than raised.

    An exception raised inside ``_io``'s own frame (or kept past this frame's
    end) would give the waiting coroutine's frame a frame object for the rest
    of its life (~150-350 bytes per waiting connection); raised and dropped
    here, it costs nothing once this returns.
    """
    try:
        return call(*args)
    except BlockingIOError:
        return _AGAIN


def _ceil_ms(seconds: float) -> float:
    # Loops round timers to the millisecond (uvloop) or fire them a little
    # early (asyncio's clock resolution); rounding up means one wake-up is
    # enough to see the deadline passed.
    return math.ceil(seconds * 1000.0) / 1000.0


class socket:
    """An always non-blocking socket whose blocking methods are coroutines.

    ``socket(family=-1, type=-1, proto=-1, fileno=None)`` takes the stdlib's
    arguments.  Receiving and sending calls are awaited; every other method is
    the stdlib's, unchanged.  See the README for the guarantees on timeouts,
    cancellation, ``close()`` and concurrent waiters.
    """

    __slots__ = (
        "__weakref__",
        "_drained",
        "_fd",
        "_loop",
        "_may_wait_first",
        "_reader",
        "_reading",
        "_sock",
        "_thread",
        "_ticks",
        "_timeout",
        "_watching",
        "_writer",
        "_writing",
    )

    _sock: _socket.socket
    _fd: int
    _timeout: float | None
    _loop: asyncio.AbstractEventLoop | None
    _thread: int  # the thread _loop last ran this socket's calls in
    _reader: asyncio.Future[None] | None
    _writer: asyncio.Future[None] | None
    _ticks: int
    _watching: int  # see _ENDED
    _drained: int
    _may_wait_first: bool
    _reading: Any  # the waiting receive (its native method or name), for BusyError
    _writing: Any

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        self._adopt(_socket.socket(family, type, proto, fileno))

    def _adopt(self, sock: _socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._timeout = _socket.getdefaulttimeout()
        self._loop = None
        self._thread = 0
        self._reader = None
        self._writer = None
        self._ticks = 0
        self._watching = 0
        self._drained = 0
        self._reading = self._writing = None
        self._may_wait_first = False  # decided with the loop, in _bind_loop

    @classmethod
    def _from_native(cls, sock: _socket.socket) -> socket:
        self = cls.__new__(cls)
        self._adopt(sock)
        return self

    # -- driver -----------------------------------------------------------

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        bound = self._loop
        if bound is not None and bound is not loop:
            if not bound.is_closed():
                raise RuntimeError(
                    f"{self!r} is bound to event loop {bound!r} and cannot be used from {loop!r}"
                )
            self._watching = 0  # the closed loop's selector took them along
        self._loop = loop
        self._thread = get_ident()
        # Waiting before the first attempt (see _note_drained) is safe where
        # readiness is level-triggered and a registration the loop has ended
        # is seen (see _Watch) and renewed before the wait: asyncio's selector
        # loops and uvloop.  On a loop not known to be like that, receives
        # always try first.
        self._may_wait_first = self._sock.type == _socket.SOCK_STREAM and (
            isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
            or type(loop).__module__.partition(".")[0] == "uvloop"
        )
        return loop

    async def _io(self, direction: int, flags: int, call: Any, *args: Any) -> Any:
        """Run one syscall now; if it would block, wait and retry (the hot path).

        ``flags`` are the call's MSG_* flags (also somewhere in ``args``):
        MSG_DONTWAIT makes a would-block final, as the stdlib does.
        """
        loop = self._loop
        if (
            loop is None or self._thread != get_ident() or not loop.is_running()
            if _SLOW_LOOKUP
            else loop is not _get_running_loop()
        ):
            self._bind_loop()
        if self._ticks >= _BUDGET:
            # Fairness: a task whose calls keep completing at once yields
            # here, before the syscall, so no data is held across the yield.
            self._ticks = 0
            await asyncio.sleep(0)
        nowait = self._timeout == 0.0
        if not direction & self._drained or flags or nowait:
            result = _attempt(call, args)
            if result is not _AGAIN:
                self._ticks += 1
                return result
            # In timeout mode the stdlib waits even with MSG_DONTWAIT
            # (it polls before each attempt): only blocking mode gives up.
            if nowait or (flags & _DONTWAIT and self._timeout is None):
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        timeout = self._timeout
        when = None if timeout is None else time.monotonic() + timeout
        while True:
            # The wait is inlined (see _wait): one coroutine frame less per
            # waiting call, which is most of an idle connection's memory.
            fut = self._arm(direction, call)
            if when is None:
                await fut
            else:
                timer = self._loop.call_later(_ceil_ms(when - time.monotonic()), _wake, fut)  # type: ignore[union-attr]
                try:
                    await fut
                finally:
                    timer.cancel()
            # Readiness is a hint: the syscall decides, and may block again.
            result = _attempt(call, args)
            if result is not _AGAIN:
                return result
            if when is not None and time.monotonic() >= when:
                raise _core.timed_out()

    async def _drive(self, op: _core.Op[T], name: str, nowait: bool = False) -> T:
        """Run a multi-step core operation, waiting on the loop between steps.

        ``nowait`` makes it fail where it would wait, as non-blocking mode does.
        """
        if self._loop is not _get_running_loop():
            self._bind_loop()
        timeout = 0.0 if nowait else self._timeout
        when: float | None = None
        try:
            step = op.send(None)
            while True:
                direction, would_block = step
                try:
                    when = _core.deadline(timeout, when, would_block)
                    await self._wait(direction, when, name)
                except BaseException as exc:
                    # Let the operation attach its progress (bytes_sent);
                    # it re-raises the same exception.
                    op.throw(exc)
                    raise
                step = op.send(None)
        except StopIteration as done:
            result: T = done.value
            return result

    async def _wait(self, direction: int, when: float | None, what: Any) -> None:
        """Wait until the loop reports the descriptor ready, ``when`` passes, or close()."""
        fut = self._arm(direction, what)
        if when is None:
            await fut
            return
        timer = self._loop.call_later(_ceil_ms(when - time.monotonic()), _wake, fut)  # type: ignore[union-attr]
        try:
            await fut
        finally:
            timer.cancel()

    def _arm(self, direction: int, what: Any) -> asyncio.Future[None]:
        """Make a future the direction's waiter, registering the descriptor if needed."""
        loop = self._loop
        assert loop is not None
        fd = self._fd
        if fd < 0:
            raise _core.closed_error()
        # A waiter is the future in the direction's slot until it is done;
        # whatever ends the wait (readiness, the timer, cancellation, close)
        # completes it, so nothing has to clear the slot afterwards.
        fut = loop.create_future()
        # The descriptor stays registered between waits: re-registering on
        # every wait costs two epoll_ctl calls, and a connection that waits
        # once per request would pay them on every request.  A readiness
        # report that finds nobody waiting unregisters it instead.
        if direction == READ:
            waiter = self._reader
            if waiter is not None and not waiter.done():
                raise BusyError(self._busy_message(what, self._reading, "receive"))
            self._reader = fut
            self._reading = what
            if not self._watching & READ:
                self._watch(READ)
        else:
            waiter = self._writer
            if waiter is not None and not waiter.done():
                raise BusyError(self._busy_message(what, self._writing, "send"))
            self._writer = fut
            self._writing = what
            if not self._watching & WRITE:
                self._watch(WRITE)
        self._ticks = 0
        return fut

    def _note_drained(self, flags: int, short: bool) -> None:
        # A plain receive on a byte stream that returned less than it asked
        # for has emptied the kernel's buffer, so the next receive would most
        # likely fail with EAGAIN: it waits for readiness first instead, which
        # saves a syscall and an exception per request in request/response
        # traffic.  Readiness is still only a hint (the syscall is retried
        # after every wake-up), and level-triggered selectors (asyncio's and
        # libuv's) report data that is already there, so nothing can hang.
        # Flags such as MSG_OOB are signalled differently: always try those.
        if self._may_wait_first:
            self._drained = READ if short and not flags else 0

    def _watch(self, direction: int) -> None:
        """Register the descriptor for ``direction``, replacing a registration the loop ended."""
        loop = self._loop
        assert loop is not None
        ended = self._watching & direction << _ENDED
        if direction == READ:
            if ended:
                # uvloop keeps a watch it ended under the descriptor and
                # would refuse to start a new one until it is removed.
                loop.remove_reader(self._fd)
            loop.add_reader(self._fd, _on_readable, _ReadWatch(self))
        else:
            if ended:
                loop.remove_writer(self._fd)
            loop.add_writer(self._fd, _on_writable, _WriteWatch(self))
        self._watching = self._watching & ~(direction << _ENDED) | direction

    def _busy_message(self, what: Any, busy: Any, verb: str) -> str:
        def name(op: Any) -> str:
            return op if isinstance(op, str) else op.__name__.lstrip("_")

        return (
            f"{name(what)}() cannot wait: another task is already waiting in {name(busy)}() "
            f"to {verb} on {self!r}"
        )

    def _unwatch(self, direction: int) -> None:
        loop = self._loop
        self._watching &= ~(direction | direction << _ENDED)
        if loop is not None and not loop.is_closed():
            if direction == READ:
                loop.remove_reader(self._fd)
            else:
                loop.remove_writer(self._fd)

    def _release(self) -> None:
        """Forget the descriptor: unregister it and fail every waiter with EBADF."""
        # Unregister before the descriptor is closed, so a reused fd number
        # cannot receive this socket's stale events.
        if self._watching & (READ | READ << _ENDED):
            self._unwatch(READ)
        if self._watching & (WRITE | WRITE << _ENDED):
            self._unwatch(WRITE)
        self._fd = -1
        reader, writer = self._reader, self._writer
        self._reader = self._writer = None
        for fut in (reader, writer):
            if fut is not None and not fut.done():
                fut.set_exception(_core.closed_error())

    # -- coroutines ---------------------------------------------------------

    async def accept(self) -> tuple[socket, _Address]:
        """Wait for a connection; return ``(asock.socket, address)``."""
        fd, address = await self._io(READ, 0, self._sock._accept)  # type: ignore[attr-defined]
        sock = self._sock
        return socket._from_native(_socket.socket(sock.family, sock.type, sock.proto, fd)), address

    async def connect(self, address: _Address) -> None:
        """Connect to ``address``; a host name is resolved off the loop."""
        sock = self._sock
        address = await resolve_address(sock.family, sock.type, sock.proto, address)
        await self._drive(_core.connect(sock, address), "connect")

    async def connect_ex(self, address: _Address) -> int:
        """Like ``connect`` but return the errno instead of raising it."""
        try:
            await self.connect(address)
        except (_socket.gaierror, _socket.herror):
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            # The native connect() names itself in its argument errors.
            message = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else ""
            if message.startswith("connect():"):
                raise type(exc)("connect_ex():" + message[len("connect():") :]) from None
            raise
        except TimeoutError as exc:
            if exc.errno is not None:
                return exc.errno
            # The stdlib reports its own connect timeout as EWOULDBLOCK.
            return errno.EWOULDBLOCK
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    async def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive up to ``bufsize`` bytes."""
        data: bytes = await self._io(READ, flags, self._sock.recv, bufsize, flags)
        self._note_drained(flags, len(data) < bufsize)
        return data

    async def recv_into(self, buffer: _Buffer, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into ``buffer``; return the number of bytes received."""
        received: int = await self._io(READ, flags, self._sock.recv_into, buffer, nbytes, flags)
        self._note_drained(flags, received < (nbytes or len(buffer)))
        return received

    async def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, _Address]:
        """Receive up to ``bufsize`` bytes; return ``(data, address)``."""
        return await self._io(READ, flags, self._sock.recvfrom, bufsize, flags)  # type: ignore[no-any-return]

    async def recvfrom_into(self, buffer: _Buffer, nbytes: int = 0, flags: int = 0) -> tuple[int, _Address]:
        """Receive into ``buffer``; return ``(nbytes, address)``."""
        return await self._io(READ, flags, self._sock.recvfrom_into, buffer, nbytes, flags)  # type: ignore[no-any-return]

    async def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, _Address]:
        """Receive data and ancillary data; return ``(data, ancdata, msg_flags, address)``."""
        return await self._io(READ, flags, self._sock.recvmsg, bufsize, ancbufsize, flags)  # type: ignore[no-any-return]

    async def recvmsg_into(
        self, buffers: Iterable[_Buffer], ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, list[tuple[int, int, bytes]], int, _Address]:
        """Scatter data into ``buffers``; return ``(nbytes, ancdata, msg_flags, address)``."""
        # A one-shot iterable must survive the retry after a wait.
        buffers = _core.replayable(buffers)
        return await self._io(READ, flags, self._sock.recvmsg_into, buffers, ancbufsize, flags)  # type: ignore[no-any-return]

    async def send(self, data: _Buffer, flags: int = 0) -> int:
        """Send some of ``data``; return how many bytes were sent."""
        if isinstance(flags, int):
            flags |= _NOSIGNAL  # else the native call rejects it, in the stdlib's order
        return await self._io(WRITE, flags, self._sock.send, data, flags)  # type: ignore[no-any-return]

    async def sendall(self, data: _Buffer, flags: int = 0) -> None:
        """Send all of ``data``; an interrupting exception carries ``bytes_sent``."""
        # Most sends complete at once: skip the operation machinery then.
        sock = self._sock
        sent = 0
        if isinstance(flags, int):
            flags |= _NOSIGNAL  # else the native call rejects it, in the stdlib's order
        loop = self._loop
        if (
            loop is not None and self._thread == get_ident() and loop.is_running()
            if _SLOW_LOOKUP
            else loop is _get_running_loop()
        ):
            if self._ticks >= _BUDGET:
                # Fairness, as in _io: yield before the syscall.
                self._ticks = 0
                await asyncio.sleep(0)
            try:
                sent = sock.send(data, flags)
            except BlockingIOError:
                pass
            else:
                self._ticks += 1
                if type(data) is bytes or type(data) is bytearray:
                    size = len(data)
                else:
                    with memoryview(data) as view:
                        size = view.nbytes
                if sent == size:
                    return
                if sent:
                    data = memoryview(data).cast("B")[sent:]
        try:
            nowait = isinstance(flags, int) and bool(flags & _DONTWAIT) and self._timeout is None
            await self._drive(_core.sendall(sock, data, flags), "sendall", nowait)
        except BaseException as exc:
            if sent:
                exc.bytes_sent = getattr(exc, "bytes_sent", 0) + sent  # type: ignore[attr-defined]
            raise

    @overload
    async def sendto(self, data: _Buffer, address: _Address, /) -> int: ...
    @overload
    async def sendto(self, data: _Buffer, flags: int, address: _Address, /) -> int: ...
    async def sendto(self, data: _Buffer, flags_or_address: Any, address: Any = _NO_ADDRESS, /) -> int:
        """Send ``data`` to ``address``: ``sendto(data[, flags], address)``."""
        sock = self._sock
        if address is _NO_ADDRESS:
            target = await resolve_address(sock.family, sock.type, sock.proto, flags_or_address)
            return await self._io(WRITE, _NOSIGNAL, sock.sendto, data, _NOSIGNAL, target)  # type: ignore[no-any-return]
        if isinstance(flags_or_address, int):
            flags_or_address |= _NOSIGNAL  # else the native call rejects it, in the stdlib's order
        target = await resolve_address(sock.family, sock.type, sock.proto, address)
        return await self._io(WRITE, flags_or_address, sock.sendto, data, flags_or_address, target)  # type: ignore[no-any-return]

    async def sendmsg(
        self,
        buffers: Iterable[_Buffer],
        ancdata: Iterable[tuple[int, int, _Buffer]] = (),
        flags: int = 0,
        address: _Address | None = None,
    ) -> int:
        """Send data and ancillary data; return how many bytes were sent."""
        sock = self._sock
        buffers = _core.replayable(buffers)
        ancdata = _core.replayable(ancdata)
        if isinstance(flags, int):
            flags |= _NOSIGNAL  # else the native call rejects it, in the stdlib's order
        if address is not None:
            address = await resolve_address(sock.family, sock.type, sock.proto, address)
        return await self._io(WRITE, flags, sock.sendmsg, buffers, ancdata, flags, address)  # type: ignore[no-any-return]

    async def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a binary file (zero-copy where possible); return bytes sent.

        The timeout covers the whole call; an interrupting exception carries
        ``bytes_sent`` and leaves the file positioned just after them.
        """
        if self._timeout == 0.0:
            raise ValueError("non-blocking sockets are not supported")
        return await self._drive(_core.sendfile(self._sock, file, offset, count), "sendfile")

    # -- plain methods ----------------------------------------------------

    def close(self) -> None:
        """Close the socket; tasks waiting on it raise ``OSError(EBADF)``.

        From a thread other than that of the loop using the socket, the close
        is handed to the loop's thread (selectors are not thread-safe) and
        happens at its next iteration.
        """
        if self._fd >= 0:
            loop = self._loop
            if (
                loop is not None
                # Registered: the selector belongs to the loop's thread.
                and self._watching
                and loop.is_running()
                and _get_running_loop() is not loop
            ):
                loop.call_soon_threadsafe(self.close)
                return
            self._release()
        self._sock.close()

    def detach(self) -> int:
        """Release the descriptor without closing it and return it."""
        if self._fd >= 0:
            self._release()
        return self._sock.detach()

    def dup(self) -> socket:
        """A new asock socket on a duplicate of the descriptor, same timeout."""
        sock = self._sock
        new = socket._from_native(_socket.socket(sock.family, sock.type, sock.proto, _socket.dup(self.fileno())))
        new._timeout = self._timeout
        return new

    def fileno(self) -> int:
        """The descriptor, or -1 once closed."""
        return self._sock.fileno()

    def bind(self, address: _Address) -> None:
        """Bind to ``address``."""
        self._sock.bind(address)

    def listen(self, *backlog: int) -> None:
        """Start listening, with a default backlog as in the stdlib."""
        # Passed through as given: the stdlib rejects an explicit None.
        self._sock.listen(*backlog)

    def shutdown(self, how: int) -> None:
        """Shut down one or both halves of the connection."""
        self._sock.shutdown(how)

    def getpeername(self) -> _Address:
        """The remote address."""
        return self._sock.getpeername()

    def getsockname(self) -> _Address:
        """The local address."""
        return self._sock.getsockname()

    @overload
    def getsockopt(self, level: int, optname: int, /) -> int: ...
    @overload
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...
    def getsockopt(self, level: int, optname: int, *buflen: Any) -> int | bytes:
        """Read a socket option."""
        # Optional arguments pass through as given, so an explicit None is
        # rejected exactly as the stdlib rejects it.
        return self._sock.getsockopt(level, optname, *buflen)

    def setsockopt(self, level: int, optname: int, value: Any, *optlen: int) -> None:
        """Set a socket option (``value`` None needs ``optlen``, as in the stdlib)."""
        self._sock.setsockopt(level, optname, value, *optlen)

    def get_inheritable(self) -> bool:
        """Whether child processes inherit the descriptor."""
        return os.get_inheritable(self.fileno())

    def set_inheritable(self, inheritable: bool) -> None:
        """Set whether child processes inherit the descriptor."""
        os.set_inheritable(self.fileno(), inheritable)

    def settimeout(self, value: float | None) -> None:
        """None waits forever, 0 never waits, t > 0 bounds each awaited call."""
        timeout = _core.parse_timeout(value)
        # The native call keeps the descriptor non-blocking and, as in the
        # stdlib, fails with EBADF on a closed or detached socket.
        self._sock.setblocking(False)
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        """The timeout in seconds, or None."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """``setblocking(True)`` is ``settimeout(None)``; False is ``settimeout(0.0)``."""
        blocking = _core.parse_blocking(flag)
        self._sock.setblocking(False)  # EBADF on a closed socket, as in the stdlib
        self._timeout = None if blocking else 0.0

    def getblocking(self) -> bool:
        """False only in non-blocking mode (timeout 0.0)."""
        return self._timeout != 0.0

    @property
    def family(self) -> _stdlib.AddressFamily:
        """The address family, as the stdlib's enum where it has one."""
        family: _stdlib.AddressFamily = _convert(self._sock.family, _stdlib.AddressFamily)
        return family

    @property
    def type(self) -> _stdlib.SocketKind:
        """The socket type, as the stdlib's enum where it has one."""
        kind: _stdlib.SocketKind = _convert(self._sock.type, _stdlib.SocketKind)
        return kind

    @property
    def proto(self) -> int:
        """The protocol number."""
        return self._sock.proto

    # -- context managers, repr, finalizer -------------------------------

    def __enter__(self) -> socket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> socket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        sock = getattr(self, "_sock", None)
        if sock is None:
            return f"<{type(self).__module__}.{type(self).__qualname__} [uninitialized]>"
        return _core.describe(f"asock.{type(self).__qualname__}", self, sock.fileno() < 0)

    def __getstate__(self) -> object:
        raise TypeError(f"cannot pickle {type(self).__qualname__!r} object")

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is None or sock.fileno() < 0:
            return
        message = f"unclosed {self!r}"
        # Close before warning: under -W error the warning raises here, and
        # the descriptor must not outlive it.
        if self._fd >= 0:
            self._release()
        sock.close()
        warnings.warn(message, ResourceWarning, source=self, stacklevel=2)


def _convert(value: int, enum: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        return value


#: The socket class, under the stdlib's other name for it.
SocketType = socket
