"""``serve()`` and ``start_server()``: an accept loop that runs a task per connection.

The server owns its listening sockets and every accepted connection: it closes
each connection when its handler returns, logs (never propagates) a handler's
exception, stops accepting while ``max_connections`` handlers run, backs off
when the process runs out of descriptors, and shuts down gracefully: stop
accepting, give the running handlers ``shutdown_timeout`` seconds, cancel the
rest.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket as _stdlib
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

from ._async_socket import socket
from ._connect import create_server

__all__ = ["Handler", "Server", "serve", "start_server"]

logger = logging.getLogger("asock.serve")

#: What ``serve`` runs for each accepted connection.
Handler = Callable[[socket], Awaitable[Any]]

# The process or the system is out of a resource that closing connections
# gives back: retrying at once would spin, so wait for a handler to finish or
# for a growing delay.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The connection died in the backlog or a firewall refused it; the listener
# itself is fine (Linux accept(2), "Error handling").
_CONNECTION_ERRNOS = frozenset(
    {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH}
    | {getattr(errno, name) for name in ("ENETUNREACH", "ENONET", "EHOSTDOWN", "ENOPROTOOPT") if hasattr(errno, name)}
)
_BACKOFF_FIRST = 0.01
_BACKOFF_MAX = 1.0


class Server:
    """A running accept loop: made by ``start_server``, run by ``serve``.

    ``close()`` starts a graceful shutdown (stop accepting, let the handlers
    finish within ``shutdown_timeout`` seconds, then cancel them) and returns at
    once; ``await aclose()`` does the same and waits for it to end, as does
    leaving ``async with server:``.  ``await serve_forever()`` waits until the
    server has shut down; cancelling it shuts the server down first.
    """

    def __init__(
        self,
        handler: Handler,
        listeners: Iterable[socket],
        *,
        max_connections: int | None = None,
        shutdown_timeout: float | None = 5.0,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be a positive integer or None, not {max_connections!r}")
        if shutdown_timeout is not None and shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must be >= 0 or None, not {shutdown_timeout!r}")
        self._handler = handler
        self._listeners = tuple(listeners)
        if not self._listeners:
            raise ValueError("serve() needs at least one listening socket")
        for sock in self._listeners:
            # A listener's own timeout would only make accept() fail with
            # TimeoutError (or spin on BlockingIOError): the server waits.
            sock.settimeout(None)
        self._max = max_connections
        self._shutdown_timeout = shutdown_timeout
        self._loop = asyncio.get_running_loop()
        self._handlers: set[asyncio.Task[None]] = set()
        # Accept loops waiting for a free slot or for a descriptor to come back.
        self._slot_waiters: set[asyncio.Future[None]] = set()
        self._closing = False
        self._error: BaseException | None = None
        self._shutdown: asyncio.Task[None] | None = None
        self._done = self._loop.create_future()
        self._acceptors = [self._loop.create_task(self._accept_loop(sock)) for sock in self._listeners]
        for task in self._acceptors:
            task.add_done_callback(self._acceptor_done)

    @property
    def sockets(self) -> tuple[socket, ...]:
        """The listening sockets (closed once the server shuts down)."""
        return self._listeners

    @property
    def active_connections(self) -> int:
        """How many handlers are running now."""
        return len(self._handlers)

    def is_serving(self) -> bool:
        """True until a shutdown starts."""
        return not self._closing

    def close(self) -> None:
        """Start a graceful shutdown and return at once (idempotent)."""
        if self._shutdown is None:
            self._closing = True
            self._shutdown = self._loop.create_task(self._shut_down())

    async def wait_closed(self) -> None:
        """Wait until the shutdown has finished: listeners closed, no handler left."""
        await asyncio.shield(self._done)

    async def aclose(self) -> None:
        """Shut down gracefully and wait for it; a second cancellation cancels the handlers at once.

        A handler that wants to stop the server calls ``close()``: awaiting
        ``aclose()`` there would wait for that handler itself.
        """
        self.close()
        try:
            await asyncio.shield(self._done)
        except asyncio.CancelledError:
            self._cancel_handlers()
            await asyncio.shield(self._done)
            raise

    async def serve_forever(self) -> None:
        """Wait until the server shuts down; if cancelled, shut it down gracefully first.

        Raises the error that stopped accepting, if one did (handler errors
        are only logged).
        """
        try:
            await asyncio.shield(self._done)
        except asyncio.CancelledError:
            await self.aclose()
            raise
        if self._error is not None:
            raise self._error

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "serving" if not self._closing else ("closed" if self._done.done() else "closing")
        names = []
        for sock in self._listeners:
            try:
                names.append(sock.getsockname())
            except OSError:
                pass
        return f"<asock.Server {state} on {names!r}, {len(self._handlers)} connections>"

    # -- accepting ---------------------------------------------------------

    def _full(self) -> bool:
        return self._max is not None and len(self._handlers) >= self._max

    async def _slot_freed(self, timeout: float | None) -> None:
        """Wait until a handler finishes (or ``timeout`` passes)."""
        fut = self._loop.create_future()
        self._slot_waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._slot_waiters.discard(fut)

    async def _accept_loop(self, listener: socket) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            # At the cap, connections wait in the kernel's backlog instead.
            while self._full():
                await self._slot_freed(None)
            try:
                conn, address = await listener.accept()
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    logger.warning(
                        "accept() on %r failed (%s); retrying in %.2f s or when a connection closes",
                        listener,
                        exc,
                        backoff,
                    )
                    await self._slot_freed(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    continue
                if exc.errno in _CONNECTION_ERRNOS:
                    continue
                if self._closing:
                    return
                logger.error("accept() on %r failed; shutting the server down", listener, exc_info=True)
                if self._error is None:
                    self._error = exc
                self.close()
                return
            backoff = _BACKOFF_FIRST
            try:
                # Another listener may have taken the last slot meanwhile.
                while self._full():
                    await self._slot_freed(None)
            except BaseException:
                conn.close()
                raise
            task = self._loop.create_task(self._run_handler(conn, address))
            self._handlers.add(task)

    def _acceptor_done(self, task: asyncio.Task[None]) -> None:
        # A bug (not an OSError) that ended an accept loop must not pass
        # silently with the server half-deaf: treat it like a fatal accept error.
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        logger.error("accept loop failed; shutting the server down", exc_info=exc)
        if self._error is None:
            self._error = exc
        self.close()

    async def _run_handler(self, conn: socket, address: Any) -> None:
        try:
            with conn:
                await self._handler(conn)
        except asyncio.CancelledError:
            if not self._closing:
                raise
        except Exception:
            logger.exception("connection handler %r failed on the connection from %r", self._handler, address)
        finally:
            self._handlers.discard(asyncio.current_task())
            for fut in self._slot_waiters:
                if not fut.done():
                    fut.set_result(None)

    # -- shutting down -----------------------------------------------------

    def _cancel_handlers(self) -> None:
        for task in self._handlers:
            task.cancel()

    async def _shut_down(self) -> None:
        try:
            for task in self._acceptors:
                task.cancel()
            # Closing a listener whose accept loop is still waiting would wake
            # it with EBADF; the cancellations above finish first.
            await asyncio.gather(*self._acceptors, return_exceptions=True)
            for sock in self._listeners:
                sock.close()
            if self._handlers:
                _, pending = await asyncio.wait(set(self._handlers), timeout=self._shutdown_timeout)
                if pending:
                    logger.warning("cancelling %d connection handler(s) still running at shutdown", len(pending))
            while self._handlers:
                self._cancel_handlers()
                await asyncio.wait(set(self._handlers))
        finally:
            if not self._done.done():
                self._done.set_result(None)


def _listeners_of(target: Any) -> list[socket] | None:
    if isinstance(target, socket):
        return [target]
    if isinstance(target, (list, tuple, set, frozenset)) and target and all(isinstance(s, socket) for s in target):
        return list(target)
    return None


def _family_of(address: Any) -> int:
    if isinstance(address, (str, bytes)):
        return _stdlib.AF_UNIX
    if isinstance(address, tuple) and (len(address) == 4 or ":" in str(address[0])):
        return _stdlib.AF_INET6
    return _stdlib.AF_INET


async def start_server(
    handler: Handler,
    address_or_listeners: Any,
    *,
    max_connections: int | None = None,
    backlog: int | None = None,
    shutdown_timeout: float | None = 5.0,
    family: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
) -> Server:
    """Start accepting connections in the background and return the ``Server``.

    ``address_or_listeners`` is either one listening ``asock.socket`` or a list
    of them (the server takes ownership and closes them at shutdown), or an
    address to listen on with ``create_server`` (``family`` is guessed from the
    address when None: a str or bytes path is AF_UNIX, a 4-tuple or a host with
    ``:`` is AF_INET6; ``backlog``, ``reuse_port`` and ``dualstack_ipv6`` go to
    ``create_server``).

    Each accepted connection runs ``await handler(conn)`` in its own task and is
    closed when the handler returns; an exception from the handler is logged
    on the ``asock.serve`` logger.  With ``max_connections``, the server stops
    accepting while that many handlers run.  On shutdown, handlers still running
    after ``shutdown_timeout`` seconds (None: wait for them) are cancelled.
    """
    listeners = _listeners_of(address_or_listeners)
    if listeners is None:
        if family is None:
            family = _family_of(address_or_listeners)
        listeners = [
            create_server(
                address_or_listeners,
                family=family,
                backlog=backlog,
                reuse_port=reuse_port,
                dualstack_ipv6=dualstack_ipv6,
            )
        ]
    try:
        return Server(handler, listeners, max_connections=max_connections, shutdown_timeout=shutdown_timeout)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise


async def serve(
    handler: Handler,
    address_or_listeners: Any,
    *,
    max_connections: int | None = None,
    backlog: int | None = None,
    shutdown_timeout: float | None = 5.0,
    family: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
) -> None:
    """Run ``handler(conn)`` for every connection until cancelled, then shut down gracefully.

    Takes the arguments of ``start_server``.  Cancelling the task running
    ``serve`` stops accepting, gives running handlers ``shutdown_timeout``
    seconds, cancels the rest, and then lets the ``CancelledError`` out.  Use
    ``start_server`` for a ``Server`` handle to close from elsewhere.
    """
    server = await start_server(
        handler,
        address_or_listeners,
        max_connections=max_connections,
        backlog=backlog,
        shutdown_timeout=shutdown_timeout,
        family=family,
        reuse_port=reuse_port,
        dualstack_ipv6=dualstack_ipv6,
    )
    await server.serve_forever()
