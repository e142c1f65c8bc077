"""The async driver: ``asock.socket``, whose blocking methods are coroutines.

What each call does is the operation core's (``_core``); this module only
waits.  On asyncio (the default loop, uvloop) waiting happens on the running
loop's selector through ``add_reader`` / ``add_writer``; under trio, with
trio's own waits (``_trio``).  The syscalls themselves always run in the
awaiting task's own step (never in a loop callback), so a cancelled or
timed-out receive has consumed nothing.  Nothing here depends on the loop's
``sock_*`` methods, which uvloop does not fully provide.
"""

from __future__ import annotations

import _socket
import asyncio
import math
import os
import sys
import warnings
import weakref
from _thread import get_ident
from asyncio.events import _get_running_loop
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any, ClassVar, TypeVar, overload

from . import _core
from ._base import SocketBase
from ._core import AGAIN, READ, WAIT_FIRST, WRITE, BusyError, attempt
from ._resolve import resolve_address
from ._running import trio_waiter

__all__ = ["SocketType", "socket"]

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
# Tells sendto(data, address) from sendto(data, flags, address) even when
# the caller passes None as the address (which the stdlib rejects).
_NO_ADDRESS: Any = object()
# What a hot-path step returns when the general path (_io) must take over.
_SLOW: Any = object()

# The C type's receives, called unbound: no bound method to allocate per call
# (and to keep alive while the call waits).
_c_recv = _socket.socket.recv
_c_recv_into = _socket.socket.recv_into

# Before Python 3.12, looking up the running loop costs a getpid() syscall
# (a fork-safety check, gh-100363): twice per request in an echo server, a
# few percent of its CPU.  There the check that a socket runs on its own loop
# asks instead whether that loop is running in this thread, which only the
# running loop can be (one loop runs per thread).
_SLOW_LOOKUP = sys.version_info < (3, 12)

_Address = Any
_Buffer = Any


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# ``_watching`` holds READ / WRITE while the direction is registered, and the
# same bit shifted left by _ENDED once the loop has let go of a registration
# (see _Watch): that one is removed before the direction is registered again.
# Shifted left by _ECHO, it marks a readiness report the loop is about to
# repeat (see _py_on_ready_once).
_ENDED = 2
_ECHO = 4


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


def _py_on_readable(watch: _Watch) -> None:
    """The loop reports the descriptor readable: wake the waiting receive.

    A report that finds nobody waiting unregisters the direction, so an
    unread descriptor cannot keep a level-triggered loop spinning.
    """
    sock = watch()
    if sock is not None:
        fut = sock._reader
        if fut is None or fut.done():
            sock._unwatch(READ)
        else:
            fut.set_result(None)


def _py_on_writable(watch: _Watch) -> None:
    """The loop reports the descriptor writable: wake the waiting send (as ``_py_on_readable``)."""
    sock = watch()
    if sock is not None:
        fut = sock._writer
        if fut is None or fut.done():
            sock._unwatch(WRITE)
        else:
            fut.set_result(None)


def _py_on_ready_once(watch: _Watch) -> None:
    """``_py_on_readable`` / ``_py_on_writable`` for asyncio's selector loops, which repeat a report.

    They run the woken task one iteration later, after polling again: the
    descriptor, not yet read, is reported once more, and that repeat comes
    after the task's step, which has read it and may be waiting anew.
    Delivered, it would wake the task for nothing (a failed syscall and a
    trip through the loop per request), so the report that follows a wake-up
    is dropped.  Readiness is level-triggered: if there is something to read
    after all, the next poll reports it again.  uvloop runs the woken task
    before it polls again: it has no repeats.
    """
    sock = watch()
    if sock is not None:
        direction = watch.direction
        watching = sock._watching
        if watching & direction << _ECHO:
            sock._watching = watching & ~(direction << _ECHO)
            return
        fut = sock._reader if direction == READ else sock._writer
        if fut is None or fut.done():
            sock._unwatch(direction)
        else:
            fut.set_result(None)
            sock._watching = watching | direction << _ECHO


def _ceil_ms(seconds: float) -> float:
    # Loops round timers to the millisecond (uvloop) or fire them a little
    # early (asyncio's clock resolution); rounding up means one wake-up is
    # enough to see the deadline passed.
    return math.ceil(seconds * 1000.0) / 1000.0


async def until(fut: asyncio.Future[None], when: float | None) -> None:
    """Await ``fut``, or until the monotonic time ``when`` passes (None: no bound)."""
    if when is None:
        await fut
        return
    timer = fut.get_loop().call_later(_ceil_ms(when - monotonic()), _wake, fut)
    try:
        await fut
    finally:
        timer.cancel()


class _TrioRun:
    """The trio run a socket is bound to, where an asyncio socket keeps its loop.

    It refers to the run's token weakly: a socket that outliving its run does
    not keep the finished run's machinery alive.  Its methods are the few a
    loop answers here; trio itself is only ever imported by ``_trio``.
    """

    __slots__ = ("_current", "_token")

    def __init__(self, token: Any) -> None:
        from . import _trio

        self._token: weakref.ref[Any] = weakref.ref(token)
        # Asked on every call: kept, rather than imported each time.
        self._current = _trio.current_token

    def is_running(self) -> bool:
        # Only for the check made on every call before Python 3.12, which
        # then falls through to _bind_loop: that is where a trio-bound socket
        # checks its run.
        return False

    def is_current(self) -> bool:
        """Whether the calling task runs in this run."""
        token = self._token()
        return token is not None and self._current() is token

    def is_closed(self) -> bool:
        """Whether the run has finished (a socket may then move to another loop or run)."""
        from . import _trio

        return _trio.finished(self._token())

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` in the run's own thread."""
        from . import _trio

        _trio.call_soon_threadsafe(self._token(), callback)

    def __repr__(self) -> str:
        return f"<trio run {self._token()!r}>"


def _py_on_own_loop(sock: socket) -> bool:
    """Whether the calling task runs on the asyncio loop ``sock`` is bound to: the one check.

    Before Python 3.12 (see _SLOW_LOOKUP) it asks whether that loop is running
    in this thread, which only the running loop can be.  A trio-bound socket
    is never on its own loop here: its _bind_loop checks the run instead.
    """
    loop = sock._loop
    if _SLOW_LOOKUP:
        return loop is not None and sock._thread == get_ident() and loop.is_running()
    return loop is not None and loop is _get_running_loop()


def _trio_run() -> _TrioRun | None:
    """The trio run the calling task is in, or None."""
    trio = trio_waiter()
    return None if trio is None else _TrioRun(trio.current_token())


def _waiting(*waiters: Any) -> bool:
    return any(waiter is not None and not waiter.done() for waiter in waiters)


def _name(what: Any) -> str:
    return what if isinstance(what, str) else what.__name__.lstrip("_")


class socket(SocketBase):
    """An always non-blocking socket whose blocking methods are coroutines.

    ``socket(family=-1, type=-1, proto=-1, fileno=None)`` takes the stdlib's
    arguments.  Receiving and sending calls are awaited; every other method is
    the stdlib's, unchanged.  See the README for the guarantees on timeouts,
    cancellation, ``close()`` and concurrent waiters.
    """

    __slots__ = (
        "__weakref__",
        "_fd",
        "_hint",
        "_loop",
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

    _fd: int
    _loop: Any  # the asyncio loop, or the trio run (``_trio.TrioRun``), bound on first use
    _thread: int  # the thread _loop last ran this socket's calls in
    # The receive waiting for readiness, if any: its asyncio future, or under
    # trio a stand-in with the same done() (_trio._Waiting).
    _reader: Any
    _writer: Any
    _reading: Any  # the call in _reader (a name or the native method), for BusyError
    _writing: Any  # the send in progress, from its first wait to its end
    _ticks: int  # calls in a row that completed without waiting
    _watching: int  # see _ENDED
    _hint: int  # _core.receive_hint's count; -1 where the loop cannot wait first

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        self._adopt(_socket.socket(family, type, proto, fileno))

    def _adopt(self, sock: _socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._timeout = _socket.getdefaulttimeout()
        self._loop = None
        self._thread = 0
        self._reader = self._writer = None
        self._reading = self._writing = None
        self._ticks = 0
        self._watching = 0
        self._hint = 0

    def _native(self) -> _socket.socket:
        return self._sock

    @classmethod
    def _from_native(cls, sock: _socket.socket) -> socket:
        self = cls.__new__(cls)
        self._adopt(sock)
        return self

    # -- the driver: how to wait ---------------------------------------------

    def _bind_loop(self) -> None:
        bound = self._loop
        if bound.__class__ is _TrioRun and bound.is_current():
            return  # trio: checked here on every call, at trio's own cost only
        loop: Any = _get_running_loop()
        if loop is None:
            loop = _trio_run()
            if loop is None:
                asyncio.get_running_loop()  # raises the usual "no running event loop"
            if bound.__class__ is _TrioRun and bound.is_current():
                return  # trio: checked here on every call, at trio's own cost only
        if bound is not None and bound is not loop:
            if not bound.is_closed():
                raise RuntimeError(
                    f"{self!r} is bound to event loop {bound!r} and cannot be used from {loop!r}"
                )
            self._watching = 0  # the closed loop's selector took them along
        self._loop = loop
        self._thread = get_ident()
        # Waiting before the first attempt (_core.receive_hint) is safe where
        # readiness is level-triggered and a registration the loop has ended
        # is seen (see _Watch) and renewed before the wait: asyncio's selector
        # loops and uvloop.  On a loop not known to be like that, receives
        # always try first.  Under trio the hint makes a receive yield once
        # before it tries (see _io).
        safe = self._sock.type == _socket.SOCK_STREAM and (
            isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
            or type(loop).__module__.partition(".")[0] == "uvloop"
            or loop.__class__ is _TrioRun
        )
        self._hint = 0 if safe else -1

    async def _io(self, direction: int, flags: int, first: bool, call: Callable[..., T], *args: Any) -> T:
        """One syscall: try it now, and after every wait try again until it completes.

        The hot path, so the core's ``retry`` rule is written out here with its
        wait inline: one coroutine frame per waiting call, which is most of an
        idle connection's memory.  ``first`` makes it wait for readiness before
        the first try (``_core.wait_first``); ``flags`` are the call's MSG_*
        flags, for the give-up rule.
        """
        while _enter(self, direction, call):
            await self._yield()
        if first and direction == READ and self._reader is not None and not self._reader.done():
            # Another task waits to receive: try, as a receive with no hint
            # would (it may take data that is there); only waiting is refused.
            first = False
        if first and self._loop.__class__ is _TrioRun:
            # trio: a wait costs an epoll_ctl each time.  Let the run's other
            # tasks go first instead (a schedule point, no syscall), as every
            # trio call does: the data has most often arrived by then.
            await self._yield()
            first = False
        if not first:
            result = attempt(call, args)
            if result is not AGAIN:
                self._ticks += 1
                return result
            if _core.gives_up(self._timeout, flags):
                raise _core.would_block()
        timeout = self._timeout
        if self._loop.__class__ is _TrioRun:
            # trio: the same rule, waiting with trio (the inline wait below
            # uses the loop's futures).
            from . import _trio

            wait = _trio.wait
            when = None
            try:
                while True:
                    when = _core.deadline(timeout, when)
                    await wait(self, direction, when, call)
                    result = attempt(call, args)
                    if result is not AGAIN:
                        return result
            finally:
                if self._writing is call:
                    self._writing = None
        when = None if timeout is None else _core.deadline(timeout, None)
        fut = _arm(self, direction, call)
        try:
            while True:
                if when is None:
                    await fut
                else:
                    timer = fut.get_loop().call_later(_ceil_ms(when - monotonic()), _wake, fut)
                    try:
                        await fut
                    finally:
                        timer.cancel()
                # Readiness is a hint: the syscall decides, and may block again.
                result = attempt(call, args)
                if result is not AGAIN:
                    return result
                when = _core.deadline(timeout, when)
                fut = _arm(self, direction, call)
        finally:
            if self._writing is call:
                self._writing = None

    async def _drive(self, op: _core.Op[T], what: Any, flags: int = 0) -> T:
        """Run a multi-step core operation, waiting on the loop between its steps."""
        try:
            return await _core.drive(op, self._wait, what, self._timeout, flags)
        finally:
            if self._writing is what:
                self._writing = None

    async def _wait(self, direction: int, when: float | None, what: Any) -> None:
        """Wait until the loop reports the descriptor ready, ``when`` passes, or close()."""
        if self._loop.__class__ is _TrioRun:
            from . import _trio

            await _trio.wait(self, direction, when, what)
            return
        await until(_arm(self, direction, what), when)

    async def _yield(self) -> None:
        """Let the loop's other tasks run once (the fairness budget)."""
        if self._loop.__class__ is _TrioRun:
            from . import _trio

            await _trio.checkpoint()
        else:
            await asyncio.sleep(0)

    async def _yield_sending(self) -> None:
        """``_yield`` for a send that has sent nothing yet: what interrupts it says so."""
        try:
            await self._yield()
        except BaseException as exc:
            # A cancellation can land here, before the first byte: it carries
            # bytes_sent all the same, as any exception that ends a sendall.
            _core.report_sent(exc, 0)
            raise

    def _arm(self, direction: int, what: Any) -> asyncio.Future[None]:
        """Make a future the direction's waiter, registering the descriptor if needed."""
        loop = self._loop
        assert loop is not None
        if self._fd < 0:
            raise _core.closed_error()
        # A waiter is the future in the direction's slot until it is done;
        # whatever ends the wait (readiness, the timer, cancellation, close)
        # completes it, so nothing has to clear the slot afterwards.
        fut: asyncio.Future[None] = loop.create_future()
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
        else:
            waiter = self._writer
            if waiter is not None and not waiter.done():
                raise BusyError(self._busy_message(what, self._writing, "send"))
            self._writer = fut
            self._writing = what
        if not self._watching & direction:
            self._watch(direction)
        self._ticks = 0
        return fut

    def _watch(self, direction: int) -> None:
        """Register the descriptor for ``direction``, replacing a registration the loop ended."""
        loop = self._loop
        assert loop is not None
        ended = self._watching & direction << _ENDED
        repeats = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        if direction == READ:
            if ended:
                # uvloop keeps a watch it ended under the descriptor and
                # would refuse to start a new one until it is removed.
                loop.remove_reader(self._fd)
            loop.add_reader(self._fd, _on_ready_once if repeats else _on_readable, _ReadWatch(self))
        else:
            if ended:
                loop.remove_writer(self._fd)
            loop.add_writer(self._fd, _on_ready_once if repeats else _on_writable, _WriteWatch(self))
        self._watching = self._watching & ~(direction << _ENDED | direction << _ECHO) | direction

    def _unwatch(self, direction: int) -> None:
        loop = self._loop
        self._watching &= ~(direction | direction << _ENDED | direction << _ECHO)
        if loop is not None and not loop.is_closed():
            if direction == READ:
                loop.remove_reader(self._fd)
            else:
                loop.remove_writer(self._fd)

    def _busy_message(self, what: Any, busy: Any, verb: str) -> str:
        return (
            f"{_name(what)}() cannot {verb}: another task is already waiting in {_name(busy)}() "
            f"to {verb} on {self!r}"
        )

    def _release(self) -> None:
        """Forget the descriptor: unregister it and fail every waiter with EBADF."""
        # Unregister before the descriptor is closed, so a reused fd number
        # cannot receive this socket's stale events.
        if self._watching & (READ | READ << _ENDED):
            self._unwatch(READ)
        if self._watching & (WRITE | WRITE << _ENDED):
            self._unwatch(WRITE)
        reader, writer = self._reader, self._writer
        if self._loop.__class__ is _TrioRun and _waiting(reader, writer):
            from . import _trio

            # trio wakes them with ClosedResourceError, which they turn into EBADF.
            _trio.notify_closing(self)
        self._fd = -1
        self._reader = self._writer = None
        for fut in (reader, writer):
            # (A trio waiter is woken by trio's notify_closing, in close().)
            if isinstance(fut, asyncio.Future) and not fut.done():
                fut.set_exception(_core.closed_error())

    # -- coroutines ---------------------------------------------------------

    async def accept(self) -> tuple[socket, _Address]:
        """Wait for a connection; return ``(asock.socket, address)``."""
        sock = self._sock
        fd, address = await self._io(READ, 0, False, _core.native_accept, sock)
        return socket._from_native(_socket.socket(sock.family, sock.type, sock.proto, fd)), address

    async def connect(self, address: _Address) -> None:
        """Connect to ``address``; a host name is resolved off the loop."""
        sock = self._sock
        address = await resolve_address(sock.family, sock.type, sock.proto, address)
        while _enter(self, 0, "connect"):  # no direction's rule applies: connect is not a send
            await self._yield()
        await self._drive(_core.connect(sock, address), "connect")

    async def connect_ex(self, address: _Address) -> int:
        """Like ``connect`` but return the errno instead of raising it."""
        try:
            await self.connect(address)
            return 0
        except BaseException as exc:
            failure = exc
        return _core.connect_errno(failure)

    # recv, recv_into and sendall: each step of the hot path is one call of
    # a step function (_recv_now, ...: the C extension's, or their Python
    # twins below), and the waiting happens in the method's own frame, so an
    # idle connection holds one coroutine frame.  A step returns the result;
    # AGAIN once the read waiter is armed (await it, then take the next step:
    # readiness is a hint, the syscall decides); or _SLOW where the general
    # path (_io, _drive) takes over: under trio, in timeout or non-blocking
    # mode (receives), with a fairness yield due, on first use (which binds
    # the loop), or with another task waiting in the same direction.

    async def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive up to ``bufsize`` bytes."""
        data = _recv_now(self, bufsize, flags)
        while data is AGAIN:
            await self._reader
            data = _recv_again(self, bufsize, flags)
        if data is _SLOW:
            first = self._hint > 0 and _core.wait_first(self._hint, self._timeout, flags, bufsize)
            data = await self._io(READ, flags, first, _c_recv, self._sock, bufsize, flags)
            if self._hint >= 0:
                self._hint = _core.receive_hint(self._hint, len(data) < bufsize and not flags)
        result: bytes = data
        return result

    async def recv_into(self, buffer: _Buffer, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into ``buffer``; return the number of bytes received."""
        want = _into_size(buffer, nbytes)
        received = _recv_into_now(self, buffer, nbytes, flags, want)
        while received is AGAIN:
            await self._reader
            received = _recv_into_again(self, buffer, nbytes, flags, want)
        if received is _SLOW:
            first = self._hint > 0 and _core.wait_first(self._hint, self._timeout, flags, want)
            received = await self._io(READ, flags, first, _c_recv_into, self._sock, buffer, nbytes, flags)
            if self._hint >= 0:
                self._hint = _core.receive_hint(self._hint, received < want and not flags)
        count: int = received
        return count

    async def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, _Address]:
        """Receive up to ``bufsize`` bytes; return ``(data, address)``."""
        return await self._io(READ, flags, False, self._sock.recvfrom, bufsize, flags)

    async def recvfrom_into(self, buffer: _Buffer, nbytes: int = 0, flags: int = 0) -> tuple[int, _Address]:
        """Receive into ``buffer``; return ``(nbytes, address)``."""
        return await self._io(READ, flags, False, self._sock.recvfrom_into, buffer, nbytes, flags)

    async def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, _Address]:
        """Receive data and ancillary data; return ``(data, ancdata, msg_flags, address)``."""
        return await self._io(READ, flags, False, self._sock.recvmsg, bufsize, ancbufsize, flags)

    async def recvmsg_into(
        self, buffers: Iterable[_Buffer], ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, list[tuple[int, int, bytes]], int, _Address]:
        """Scatter data into ``buffers``; return ``(nbytes, ancdata, msg_flags, address)``."""
        # A one-shot iterable must survive the retry after a wait.
        buffers = _core.replayable(buffers)
        return await self._io(READ, flags, False, self._sock.recvmsg_into, buffers, ancbufsize, flags)

    async def send(self, data: _Buffer, flags: int = 0) -> int:
        """Send some of ``data``; return how many bytes were sent."""
        if isinstance(flags, int):
            flags |= _NOSIGNAL  # else the native call rejects it, in the stdlib's order
        return await self._io(WRITE, flags, False, self._sock.send, data, flags)

    async def sendall(self, data: _Buffer, flags: int = 0) -> None:
        """Send all of ``data``; an interrupting exception carries ``bytes_sent``."""
        sent = _sendall_now(self, data, flags)
        if sent is None:
            return
        if isinstance(flags, int):
            flags |= _NOSIGNAL  # else the native call rejects it, in the stdlib's order
        if sent is _SLOW:
            while _enter(self, WRITE, "sendall"):
                await self._yield_sending()
            sent = _core.send_first(self._sock, data, flags)
            if sent < 0:
                self._ticks += 1
                return
        await self._drive(_core.sendall(self._sock, data, flags, sent), "sendall", flags)

    @overload
    async def sendto(self, data: _Buffer, address: _Address, /) -> int: ...
    @overload
    async def sendto(self, data: _Buffer, flags: int, address: _Address, /) -> int: ...
    async def sendto(self, data: _Buffer, flags_or_address: Any, address: Any = _NO_ADDRESS, /) -> int:
        """Send ``data`` to ``address``: ``sendto(data[, flags], address)``."""
        sock = self._sock
        if address is _NO_ADDRESS:
            flags, address = 0, flags_or_address
        else:
            flags = flags_or_address
        if isinstance(flags, int):
            flags |= _NOSIGNAL  # else the native call rejects it, in the stdlib's order
        target = await resolve_address(sock.family, sock.type, sock.proto, address)
        return await self._io(WRITE, flags, False, sock.sendto, data, flags, target)

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
        return await self._io(WRITE, flags, False, sock.sendmsg, buffers, ancdata, flags, address)

    async def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a binary file (zero-copy where possible); return bytes sent.

        The timeout covers the whole call; an interrupting exception carries
        ``bytes_sent`` and leaves the file positioned just after them.
        """
        _core.check_sendfile(self._sock.type, file, count)
        while _enter(self, WRITE, "sendfile"):
            await self._yield_sending()
        op = _core.sendfile(self._sock, file, offset, count, self._timeout == 0.0)
        return await self._drive(op, "sendfile")

    # -- plain methods ----------------------------------------------------

    def close(self) -> None:
        """Close the socket; tasks waiting on it raise ``OSError(EBADF)``.

        From a thread other than that of the loop using the socket, the close
        is handed to the loop's thread (selectors are not thread-safe) and
        happens at its next iteration.
        """
        if self._fd >= 0:
            loop = self._loop
            if loop.__class__ is not _TrioRun:
                if (
                    # Registered: the selector belongs to the loop's thread.
                    self._watching
                    and loop.is_running()
                    and _get_running_loop() is not loop
                ):
                    loop.call_soon_threadsafe(self.close)
                    return
            elif (
                # trio: only the run's own thread can tell its waiters.
                _waiting(self._reader, self._writer)
                and not loop.is_current()
                and not loop.is_closed()
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


#: The socket class, under the stdlib's other name for it.
SocketType = socket


# -- the hot path's steps ---------------------------------------------------------
#
# Plain functions of the socket, so that the C extension's (asock/_speedups.c)
# can stand in for them one for one: the async methods above call whichever
# set was chosen at import, and these Python ones stay the reference, which
# the C ones call for every case they leave to them.  They use the core's
# rules as they are (_core.wait_first, receive_hint, send_first): the speed
# is the extension's to give.


def _py_recv_now(sock: socket, bufsize: Any, flags: Any) -> Any:
    """recv's first step: the data, or AGAIN with the read waiter armed, or _SLOW.

    It is ``_io`` for asyncio in blocking mode, without a coroutine of its own.
    """
    if sock._ticks >= _BUDGET or sock._timeout is not None:
        return _SLOW
    if not _py_on_own_loop(sock):
        return _SLOW  # _enter binds the loop, or raises
    reader = sock._reader
    if reader is not None and not reader.done():
        return _SLOW  # another task waits to receive: _io tries, then refuses to wait
    hint = sock._hint
    if not (hint > 0 and _core.wait_first(hint, None, flags, bufsize)):
        data = attempt(_c_recv, (sock._sock, bufsize, flags))
        if data is not AGAIN:
            sock._ticks += 1
            if hint >= 0:
                sock._hint = _core.receive_hint(hint, len(data) < bufsize and not flags)
            return data
        if flags and _core.gives_up(None, flags):
            raise _core.would_block()
    sock._arm(READ, _c_recv)
    return AGAIN


def _py_recv_again(sock: socket, bufsize: Any, flags: Any) -> Any:
    """recv's step after a wake-up (the call's checks are done): the data, or AGAIN re-armed."""
    data = attempt(_c_recv, (sock._sock, bufsize, flags))
    if data is AGAIN:
        sock._arm(READ, _c_recv)
    elif sock._hint >= 0:
        sock._hint = _core.receive_hint(sock._hint, len(data) < bufsize and not flags)
    return data


def _py_recv_into_now(sock: socket, buffer: Any, nbytes: Any, flags: Any, want: int) -> Any:
    """recv_into's first step (as ``_py_recv_now``); ``want`` is ``_core.into_size``'s."""
    if sock._ticks >= _BUDGET or sock._timeout is not None:
        return _SLOW
    if not _py_on_own_loop(sock):
        return _SLOW
    reader = sock._reader
    if reader is not None and not reader.done():
        return _SLOW
    hint = sock._hint
    if not (hint > 0 and _core.wait_first(hint, None, flags, want)):
        received = attempt(_c_recv_into, (sock._sock, buffer, nbytes, flags))
        if received is not AGAIN:
            sock._ticks += 1
            if hint >= 0:
                sock._hint = _core.receive_hint(hint, received < want and not flags)
            return received
        if flags and _core.gives_up(None, flags):
            raise _core.would_block()
    sock._arm(READ, _c_recv_into)
    return AGAIN


def _py_recv_into_again(sock: socket, buffer: Any, nbytes: Any, flags: Any, want: int) -> Any:
    """recv_into's step after a wake-up (as ``_py_recv_again``)."""
    received = attempt(_c_recv_into, (sock._sock, buffer, nbytes, flags))
    if received is AGAIN:
        sock._arm(READ, _c_recv_into)
    elif sock._hint >= 0:
        sock._hint = _core.receive_hint(sock._hint, received < want and not flags)
    return received


def _py_sendall_now(sock: socket, data: Any, flags: Any) -> Any:
    """sendall's first step: None once all of ``data`` is sent; else how many bytes
    went (0: it would block), the rest being ``_drive``'s; or _SLOW, nothing done."""
    if type(flags) is not int or sock._ticks >= _BUDGET or sock._writing is not None:
        return _SLOW  # the general path yields, or refuses a second send
    if not _py_on_own_loop(sock):
        return _SLOW
    sent = _core.send_first(sock._sock, data, flags | _NOSIGNAL)
    if sent < 0:
        sock._ticks += 1
        return None
    return sent


def _py_enter(sock: socket, direction: int, what: Any) -> bool:
    """Start a call: check that it runs on the socket's loop (binding it on first use).

    True when the task must yield once first, and then call again: a task
    whose calls keep completing at once yields after ``_BUDGET`` of them, so
    it cannot starve the loop's other tasks (before the syscall, so no data
    is held across the yield).  Otherwise the call may go on, except that a
    send is refused while another task's send is in progress (its bytes
    would land in the middle of the other call's): checked last, so that it
    also holds after the yield.  Every call starts with it, as ``_enter``
    (the C step where the extension is in use).
    """
    if not _py_on_own_loop(sock):
        sock._bind_loop()
    if sock._ticks >= _BUDGET:
        sock._ticks = 0
        return True
    if direction == WRITE and sock._writing is not None:
        raise BusyError(sock._busy_message(what, sock._writing, "send"))
    return False


def _py_arm(sock: socket, direction: int, what: Any) -> asyncio.Future[None]:
    """``sock._arm(direction, what)`` as a step, for the waits written out inline."""
    return sock._arm(direction, what)


#: The pure-Python steps and readiness callbacks: the reference, whichever set is in use.
REFERENCE: dict[str, Callable[..., Any]] = {
    "recv_now": _py_recv_now,
    "recv_again": _py_recv_again,
    "recv_into_now": _py_recv_into_now,
    "recv_into_again": _py_recv_into_again,
    "sendall_now": _py_sendall_now,
    "into_size": _core.into_size,
    "on_readable": _py_on_readable,
    "on_writable": _py_on_writable,
    "on_ready_once": _py_on_ready_once,
    "on_own_loop": _py_on_own_loop,
    "enter": _py_enter,
    "arm": _py_arm,
}


def _steps() -> tuple[bool, dict[str, Callable[..., Any]]]:
    """The C extension's steps and callbacks if it is built and not disabled
    (ASOCK_NO_EXTENSIONS=1), else the Python ones."""
    if os.environ.get("ASOCK_NO_EXTENSIONS", "") not in ("", "0"):
        return False, REFERENCE
    try:
        from . import _speedups
    except ImportError:
        return False, REFERENCE
    steps = _speedups.async_steps(
        socket,
        REFERENCE,
        {
            "AGAIN": AGAIN,
            "SLOW": _SLOW,
            "BUDGET": _BUDGET,
            "WAIT_FIRST": WAIT_FIRST,
            "NOSIGNAL": _NOSIGNAL,
            "SLOW_LOOKUP": _SLOW_LOOKUP,
            "ECHO": _ECHO,
            "socket_type": _socket.socket,
            "recv": _c_recv,
            "recv_into": _c_recv_into,
            "get_running_loop": _get_running_loop,
            "watches": (_ReadWatch, _WriteWatch),
            # What a loop's create_future and is_running do unless a class
            # or instance redefines them: the C steps do it without the call.
            "create_future": asyncio.BaseEventLoop.create_future,
            "is_running": asyncio.BaseEventLoop.is_running,
            "Future": asyncio.futures.Future,
        },
    )
    return True, steps


#: Whether the hot path's steps are the C extension's (else the Python ones above).
EXTENSION, STEPS = _steps()
_recv_now = STEPS["recv_now"]
_recv_again = STEPS["recv_again"]
_recv_into_now = STEPS["recv_into_now"]
_recv_into_again = STEPS["recv_into_again"]
_sendall_now = STEPS["sendall_now"]
_into_size = STEPS["into_size"]
_on_readable = STEPS["on_readable"]
_on_writable = STEPS["on_writable"]
_on_ready_once = STEPS["on_ready_once"]
_on_own_loop = STEPS["on_own_loop"]
_enter = STEPS["enter"]
_arm = STEPS["arm"]
