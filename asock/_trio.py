"""How asock waits under trio, in place of an asyncio loop.

Imported only once a socket is used inside ``trio.run`` (directly or through
anyio's trio backend): ``import asock`` never imports trio.  A socket bound to
a trio run waits with ``trio.lowlevel.wait_readable`` / ``wait_writable``;
everything else (what each call does, timeouts, ``bytes_sent``, the busy and
close rules) is the same code as on asyncio.  trio's own errors are turned into
the stdlib's and asock's: a close while waiting is ``OSError(EBADF)``, not
``trio.ClosedResourceError``; a second waiter is ``asock.BusyError``, which
asock raises before trio would raise ``trio.BusyResourceError``.
"""

from __future__ import annotations

import functools
import math
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from . import _core
from ._core import READ

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._async_socket import socket

__all__ = [
    "ServerKit",
    "Signal",
    "call_soon_threadsafe",
    "call_within",
    "checkpoint",
    "current_token",
    "finished",
    "notify_closing",
    "race",
    "run_in_thread",
    "wait",
    "wait_signal",
    "wake_all",
]

T = TypeVar("T")


def current_token() -> trio.lowlevel.TrioToken | None:
    """The token of the calling task's trio run, or None outside trio."""
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None


def finished(token: trio.lowlevel.TrioToken | None) -> bool:
    """Whether the run of ``token`` has finished."""
    if token is None:
        return True
    try:
        token.run_sync_soon(_nothing)
    except trio.RunFinishedError:
        return True
    return False


def _nothing() -> None:
    pass


def call_soon_threadsafe(token: trio.lowlevel.TrioToken | None, callback: Callable[[], object]) -> None:
    """Run ``callback`` in the thread of the run of ``token``, if it still runs."""
    if token is not None:
        try:
            token.run_sync_soon(callback)
        except trio.RunFinishedError:
            pass


async def checkpoint() -> None:
    """The fairness yield: a trio checkpoint (a schedule point and a cancel point)."""
    await trio.lowlevel.checkpoint()


async def wait(sock: socket, direction: int, when: float | None, what: Any) -> None:
    """Wait until the descriptor looks ready in ``direction``, ``when`` passes, or the socket closes.

    The one-waiter-per-direction rule is asock's own, checked on the same
    slots as on asyncio (a marker stands in for the future while waiting).
    """
    fd = sock._fd
    if fd < 0:
        raise _core.closed_error()
    marker = _Waiting()
    if direction == READ:
        if sock._reader is not None and not sock._reader.done():
            raise _core.BusyError(sock._busy_message(what, sock._reading, "receive"))
        sock._reader, sock._reading = marker, what
        waiter = trio.lowlevel.wait_readable
    else:
        if sock._writer is not None and not sock._writer.done():
            raise _core.BusyError(sock._busy_message(what, sock._writing, "send"))
        sock._writer, sock._writing = marker, what
        waiter = trio.lowlevel.wait_writable
    sock._ticks = 0
    closed = False
    try:
        if when is None:
            await waiter(fd)
        else:
            # trio's clock is not time.monotonic(): carry over the time left.
            with trio.move_on_at(_trio_time(when)):
                await waiter(fd)
    except trio.ClosedResourceError:
        # From close(), or from wake_all() on a socket still open: then a
        # wake-up like any other (the caller looks again).
        closed = sock._fd < 0
    finally:
        marker.finished = True
    if closed:
        # Raised here, outside the handler: no trio exception chained to it.
        raise _core.closed_error()


class _Waiting:
    """Stands in a socket's waiter slot while a trio task waits, like an asyncio future."""

    __slots__ = ("finished",)

    def __init__(self) -> None:
        self.finished = False

    def done(self) -> bool:
        return self.finished


def wake_all(sock: socket) -> None:
    """Wake every task waiting on the open socket's descriptor, to look again."""
    trio.lowlevel.notify_closing(sock._fd)


class Signal:
    """A one-shot wake-up with an asyncio future's ``done`` / ``set_result`` / ``set_exception``.

    It stands where a future would, for waits that are not on the descriptor
    (TLS waiting for another task's progress).  The waiter looks at the
    socket again when woken, so an exception only wakes it.
    """

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()

    def done(self) -> bool:
        return self.event.is_set()

    def set_result(self, result: None) -> None:
        self.event.set()

    def set_exception(self, exc: BaseException) -> None:
        self.event.set()


async def wait_signal(sock: socket, signal: Signal, when: float | None) -> None:
    """Wait until ``signal`` is set or ``when`` passes; EBADF once the socket is closed."""
    try:
        if when is None:
            await signal.event.wait()
        else:
            with trio.move_on_at(_trio_time(when)):
                await signal.event.wait()
    finally:
        signal.event.set()  # done, however it ended
    if sock._fd < 0:
        raise _core.closed_error()


def notify_closing(sock: socket) -> None:
    """Wake the socket's waiters (they raise EBADF) before its descriptor is closed."""
    trio.lowlevel.notify_closing(sock._fd)


async def call_within(deadline: float | None, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(*args)``, or ``TimeoutError("timed out")`` once the monotonic ``deadline`` passes."""
    if deadline is None:
        return await fn(*args)
    with trio.move_on_at(_trio_time(deadline)):
        return await fn(*args)
    raise _core.timed_out()


async def race(
    infos: list[Any], attempt: Callable[[Any], Awaitable[socket]], delay: float | None, deadline: float | None
) -> tuple[socket | None, list[OSError]]:
    """Run staggered attempts (RFC 8305) in a nursery; the winner, or every attempt's error in order.

    The next attempt starts when the previous one fails, or after ``delay``
    seconds (None: only when it fails); the first to connect wins and the
    others are cancelled (a late second connection is closed).  Past the
    monotonic ``deadline``, nothing won and no error is returned.
    """
    winner: socket | None = None
    errors: list[BaseException | None] = [None] * len(infos)

    async def run(index: int, failed: trio.Event, nursery: trio.Nursery) -> None:
        nonlocal winner
        try:
            sock = await attempt(infos[index])
        except Exception as exc:  # an OSError is the attempt's failure; anything else is raised below
            errors[index] = exc
            failed.set()
            if not isinstance(exc, OSError):
                nursery.cancel_scope.cancel()
            return
        if winner is None:
            winner = sock
            nursery.cancel_scope.cancel()
        else:
            sock.close()

    with trio.move_on_at(_trio_time(deadline)) as timer:
        async with trio.open_nursery() as nursery:
            for index in range(len(infos)):
                failed = trio.Event()
                nursery.start_soon(run, index, failed, nursery)
                if index + 1 < len(infos):
                    with trio.move_on_after(math.inf if delay is None else delay):
                        await failed.wait()
    for exc in errors:
        if exc is not None and not isinstance(exc, OSError):
            raise exc
    if winner is None and timer.cancelled_caught:
        return None, []
    return winner, [exc for exc in errors if isinstance(exc, OSError)]


def _trio_time(deadline: float | None) -> float:
    """A monotonic deadline on trio's clock (which is its own)."""
    return math.inf if deadline is None else trio.current_time() + (deadline - monotonic())


async def run_in_thread(func: Callable[..., T], *args: Any) -> T:
    """Run a blocking function (name resolution) in trio's thread pool.

    A cancelled caller does not wait for the thread: the stdlib's resolver
    cannot be interrupted, and its result is simply dropped.
    """
    return await trio.to_thread.run_sync(functools.partial(func, *args), abandon_on_cancel=True)


class ServerKit:
    """What a ``Server`` needs of the async library, on trio (``_serve._AsyncioKit`` on asyncio).

    A server's tasks (accept loops, handlers, the shutdown) run in a nursery
    of their own, hosted by a trio system task: ``start_server`` returns a
    running server, as on asyncio, without asking for a nursery.  When the
    program's main task ends, trio cancels system tasks, and with it the
    server's, as ``asyncio.run`` cancels what is left.
    """

    cancelled = trio.Cancelled

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self._finished = trio.Event()

    @classmethod
    async def open(cls) -> ServerKit:
        kit = cls()
        ready = trio.Event()
        trio.lowlevel.spawn_system_task(kit._host, ready, name="asock server")
        await ready.wait()
        return kit

    async def _host(self, ready: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            ready.set()
            await self._finished.wait()

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> _Task:
        assert self._nursery is not None
        task = _Task()
        self._nursery.start_soon(task.run, fn, args)
        return task

    @staticmethod
    def event() -> trio.Event:
        return trio.Event()

    @staticmethod
    async def wait_tasks(tasks: list[_Task], timeout: float | None) -> bool:
        """Wait until the tasks are done, for at most ``timeout`` seconds; whether they are."""
        with trio.move_on_after(math.inf if timeout is None else timeout):
            for task in tasks:
                await task.finished.wait()
            return True
        return False

    @staticmethod
    async def wait_event(event: trio.Event, timeout: float | None) -> None:
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await event.wait()

    @staticmethod
    async def hold(event: trio.Event, hurry: Callable[[], None]) -> None:
        """Wait until ``event`` is set, shielded; a cancellation meanwhile leaves only then.

        (trio's cancel scopes deliver their cancellation again and again: none
        is a request to ``hurry``, which is for asyncio's one-shot ones.)
        """
        with trio.CancelScope(shield=True):
            await event.wait()
        await trio.lowlevel.checkpoint_if_cancelled()

    @staticmethod
    async def cancelled_again() -> None:
        """Let out a cancellation that was held back (trio delivers it at the next checkpoint)."""
        await trio.lowlevel.checkpoint_if_cancelled()

    def finished(self) -> None:
        """The server is done: its nursery may close once its last tasks end."""
        self._finished.set()


class _Task:
    """A server task: cancelled on its own (its cancel scope), awaited through ``finished``."""

    __slots__ = ("finished", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.finished = trio.Event()

    async def run(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            with self.scope:
                await fn(*args)
        finally:
            self.finished.set()

    def cancel(self) -> None:
        self.scope.cancel()

    def done(self) -> bool:
        return self.finished.is_set()
