"""The async module's ways to make sockets: connections, servers, pairs, fd passing.

``create_connection`` resolves the name off the loop and races the addresses
as RFC 8305 ("Happy Eyeballs") describes.  ``create_server``, ``socketpair``
and ``fromfd`` are the never-waiting factories of ``_make``, building
``asock.socket`` objects.
"""

from __future__ import annotations

import _socket
import array
import asyncio
from typing import Any

from . import _core
from ._async_socket import socket
from ._make import GLOBAL_DEFAULT_TIMEOUT, connection_failed, make_fromfd, make_server, make_socketpair
from ._resolve import getaddrinfo

__all__ = ["create_connection", "create_server", "fromfd", "recv_fds", "send_fds", "socketpair"]


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
    """
    host, port = address  # first, as in the stdlib: a bad address is reported before a bad timeout
    timeout = _socket.getdefaulttimeout() if timeout is GLOBAL_DEFAULT_TIMEOUT else _core.parse_timeout(timeout)
    loop = asyncio.get_running_loop()
    deadline = None if not timeout else loop.time() + timeout
    lookup = asyncio.ensure_future(getaddrinfo(host, port, 0, _socket.SOCK_STREAM))
    try:
        if timeout:
            done, _ = await asyncio.wait([lookup], timeout=timeout)
            if not done:
                raise _core.timed_out()
        infos = await lookup
    finally:
        lookup.cancel()
    if not infos:
        raise connection_failed([], all_errors, first=True)
    infos = _interleave(infos)
    sock, errors = await _race(loop, infos, source_address, happy_eyeballs_delay, deadline, timeout == 0.0)
    if sock is not None:
        sock.settimeout(timeout)
        return sock
    if not errors:
        raise _core.timed_out()
    raise connection_failed(errors, all_errors, first=True)


async def _race(
    loop: asyncio.AbstractEventLoop,
    infos: list[Any],
    source_address: Any,
    delay: float | None,
    deadline: float | None,
    nonblocking: bool = False,
) -> tuple[socket | None, list[OSError]]:
    """Run staggered attempts; return the winner, or every attempt's error in order."""
    tasks: list[asyncio.Task[socket]] = []
    winner: socket | None = None
    start_next = True
    try:
        while winner is None:
            wait_for = None if deadline is None else deadline - loop.time()
            if wait_for is not None and wait_for <= 0:
                return None, []
            if start_next and len(tasks) < len(infos):
                tasks.append(loop.create_task(_attempt(infos[len(tasks)], source_address, nonblocking)))
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
