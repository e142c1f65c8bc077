"""The async module's ways to make sockets: connections, servers, pairs, fd passing.

``create_connection`` resolves the name off the loop and races the addresses
as RFC 8305 ("Happy Eyeballs") describes, on asyncio or trio.  ``create_server``, ``socketpair``
and ``fromfd`` are the never-waiting factories of ``_make``, building
``asock.socket`` objects.
"""

from __future__ import annotations

import _socket
import array
import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from . import _core
from ._async_socket import socket
from ._make import GLOBAL_DEFAULT_TIMEOUT, connection_failed, make_fromfd, make_server, make_socketpair
from ._resolve import getaddrinfo
from ._running import trio_waiter

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = ["create_connection", "create_server", "fromfd", "recv_fds", "send_fds", "socketpair"]

T = TypeVar("T")


def create_server(
    address: Any,
    *,
    family: int = _socket.AF_INET,
    backlog: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
) -> socket:
    """A listening ``asock.socket`` bound to ``address`` (``SO_REUSEADDR`` set)."""
    result: socket = make_server(
        socket, address, family=family, backlog=backlog, reuse_port=reuse_port, dualstack_ipv6=dualstack_ipv6
    )
    return result


def socketpair(
    family: int | None = None, type: int = _socket.SOCK_STREAM, proto: int = 0
) -> tuple[socket, socket]:
    """A connected pair of ``asock.socket`` objects."""
    return make_socketpair(socket, family, type, proto)


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket:
    """An ``asock.socket`` on a duplicate of ``fd`` (which is left open)."""
    result: socket = make_fromfd(socket, fd, family, type, proto)
    return result


async def send_fds(
    sock: socket, buffers: Any, fds: Any, flags: int = 0, address: Any = None
) -> int:
    """Send ``buffers`` and the descriptors ``fds`` over an AF_UNIX socket."""
    rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds))]
    return await sock.sendmsg(buffers, rights, flags, address)


async def recv_fds(sock: socket, bufsize: int, maxfds: int, flags: int = 0) -> tuple[bytes, list[int], int, Any]:
    """Receive data and up to ``maxfds`` descriptors: ``(data, fds, msg_flags, address)``.

    The descriptors arrive close-on-exec (non-inheritable), like every
    descriptor asock creates.
    """
    fds = array.array("i")
    ancbufsize = _socket.CMSG_LEN(maxfds * fds.itemsize)  # the stdlib's checks, in its order
    cloexec = getattr(_socket, "MSG_CMSG_CLOEXEC", 0)
    added = cloexec & ~flags if type(flags) is int else 0
    data, ancdata, msg_flags, address = await sock.recvmsg(bufsize, ancbufsize, flags | added)
    # Linux echoes the flag back in msg_flags; report only what the stdlib would.
    msg_flags &= ~added
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return data, list(fds), msg_flags, address


def _interleave(infos: list[Any]) -> list[Any]:
    """RFC 8305 section 4: alternate address families, first family first."""
    by_family: dict[int, list[Any]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    queues = list(by_family.values())
    ordered = []
    while queues:
        for queue in list(queues):
            ordered.append(queue.pop(0))
            if not queue:
                queues.remove(queue)
    return ordered


async def _attempt(info: Any, source_address: Any, nonblocking: bool = False) -> socket:
    family, kind, proto, _, sockaddr = info
    sock = socket(family, kind, proto)
    try:
        # The caller bounds the whole race instead, unless it asked for
        # non-blocking mode: then, as in the stdlib, connect never waits.
        sock.settimeout(0.0 if nonblocking else None)
        if source_address:
            sock.bind(source_address)
        await sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def create_connection(
    address: tuple[str | None, int | str],
    timeout: float | None = GLOBAL_DEFAULT_TIMEOUT,
    source_address: Any = None,
    *,
    all_errors: bool = False,
    happy_eyeballs_delay: float | None = 0.25,
    ssl: SSLContext | bool | None = None,
    server_hostname: str | None = None,
) -> socket:
    """Connect to ``(host, port)`` and return the connected ``asock.socket``.

    The host name is resolved off the loop.  When it has several addresses
    they are raced as RFC 8305 ("Happy Eyeballs") describes: families
    alternate, and each next attempt starts when the previous one fails or
    after ``happy_eyeballs_delay`` seconds (None: one attempt at a time).  The
    first connection to succeed wins and the others are closed.

    ``timeout`` (default: ``getdefaulttimeout()``) bounds the whole call,
    resolution included, and becomes the returned socket's timeout.  When every
    attempt fails, the first address's error is raised, or with
    ``all_errors=True`` an ``ExceptionGroup`` of all of them.

    With ``ssl`` (an ``ssl.SSLContext``, or True for
    ``ssl.create_default_context()``), the connection is handed to
    ``start_tls`` and the result is a handshaken ``asock.SSLSocket``;
    ``server_hostname`` (default: the host of ``address``) is the name sent
    and checked, and ``timeout`` bounds connecting and the handshake together.
    """
    host, port = address  # first, as in the stdlib: a bad address is reported before a bad timeout
    if ssl is None or ssl is False:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        ssl = None
    timeout = _socket.getdefaulttimeout() if timeout is GLOBAL_DEFAULT_TIMEOUT else _core.parse_timeout(timeout)
    deadline = None if not timeout else monotonic() + timeout
    # How to run things side by side and bound them in time is the async
    # library's; what to run is written once, here.
    kit: Any = trio_waiter() or _asyncio_kit
    infos = await kit.call_within(deadline, getaddrinfo, host, port, 0, _socket.SOCK_STREAM)
    if not infos:
        raise connection_failed([], all_errors, first=True)

    async def attempt(info: Any) -> socket:
        return await _attempt(info, source_address, timeout == 0.0)

    outcome: tuple[socket | None, list[OSError]]
    outcome = await kit.race(_interleave(infos), attempt, happy_eyeballs_delay, deadline)
    sock, errors = outcome
    if sock is not None:
        sock.settimeout(timeout)
        if ssl is None:
            return sock
        return await _tls_handshake(sock, ssl, host if server_hostname is None else server_hostname, deadline)
    if not errors:
        raise _core.timed_out()
    raise connection_failed(errors, all_errors, first=True)


async def _tls_handshake(
    sock: socket,
    context: SSLContext | bool,
    hostname: str | None,
    deadline: float | None,
) -> socket:
    """The TLS half of ``create_connection``: the handshake gets what is left of the time."""
    from ._ssl_socket import _start_tls

    try:
        if context is True:
            import ssl as ssl_module

            context = ssl_module.create_default_context()
        bound = None if deadline is None else deadline - monotonic()
        if bound is not None and bound <= 0:
            raise _core.timed_out()
        assert not isinstance(context, bool)
        return await _start_tls(sock, context, server_hostname=hostname or None, bound=bound)
    except BaseException:
        sock.close()  # start_tls has closed it if it took it over; if not, this does
        raise


class _asyncio_kit:
    """What ``create_connection`` needs of the async library, on asyncio (``_trio`` has trio's)."""

    @staticmethod
    async def call_within(deadline: float | None, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)``, or ``TimeoutError("timed out")`` once the monotonic ``deadline`` passes."""
        call = asyncio.ensure_future(fn(*args))
        try:
            if deadline is not None:
                done, _ = await asyncio.wait([call], timeout=deadline - monotonic())
                if not done:
                    raise _core.timed_out()
            return await call
        finally:
            if not call.done():
                # Cancelled or out of time: see the call end before going on.
                call.cancel()
                await asyncio.wait([call])

    @staticmethod
    async def race(
        infos: list[Any],
        attempt: Callable[[Any], Coroutine[Any, Any, socket]],
        delay: float | None,
        deadline: float | None,
    ) -> tuple[socket | None, list[OSError]]:
        """Run staggered attempts (RFC 8305); return the winner, or every attempt's error in order.

        The next attempt starts when the previous one fails, or after ``delay``
        seconds (None: only when it fails).  Past the monotonic ``deadline``,
        nothing won and no error is returned.
        """
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[socket]] = []
        winner: socket | None = None
        start_next = True
        try:
            while winner is None:
                wait_for = None if deadline is None else deadline - monotonic()
                if wait_for is not None and wait_for <= 0:
                    return None, []
                if start_next and len(tasks) < len(infos):
                    tasks.append(loop.create_task(attempt(infos[len(tasks)])))
                    start_next = False
                running = [task for task in tasks if not task.done()]
                if not running:
                    if len(tasks) == len(infos):
                        break
                    start_next = True
                    continue
                staggered = delay is not None and len(tasks) < len(infos) and (wait_for is None or delay < wait_for)
                if staggered:
                    wait_for = delay
                done, _ = await asyncio.wait(running, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
                # Nothing finished: the delay ran out, so start the next attempt
                # (but not when it was the deadline: timers may fire a little early).
                # An attempt failed: start the next one at once (RFC 8305 5.).
                start_next = bool(done) or staggered
                for task in done:
                    if task.exception() is None:
                        winner = task.result()
                        break
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled() and task.exception() is None and task.result() is not winner:
                    task.result().close()
        errors: list[OSError] = []
        for task in tasks:
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, OSError):
                errors.append(exc)
            elif exc is not None:
                raise exc
        return winner, errors
