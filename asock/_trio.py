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
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from . import _core
from ._core import READ

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._async_socket import socket

__all__ = ["call_soon_threadsafe", "checkpoint", "current_token", "finished", "notify_closing", "run_in_thread", "wait"]

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
            with trio.move_on_at(trio.current_time() + (when - monotonic())):
                await waiter(fd)
    except trio.ClosedResourceError:
        closed = True
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


def notify_closing(sock: socket) -> None:
    """Wake the socket's waiters (they raise EBADF) before its descriptor is closed."""
    trio.lowlevel.notify_closing(sock._fd)


async def run_in_thread(func: Callable[..., T], *args: Any) -> T:
    """Run a blocking function (name resolution) in trio's thread pool.

    A cancelled caller does not wait for the thread: the stdlib's resolver
    cannot be interrupted, and its result is simply dropped.
    """
    return await trio.to_thread.run_sync(functools.partial(func, *args), abandon_on_cancel=True)
