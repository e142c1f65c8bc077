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
import contextlib
import errno
import logging
import socket as _stdlib
import sys
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._async_socket import socket
from ._connect import create_server
from ._running import trio_waiter

if TYPE_CHECKING:
    from ssl import SSLContext

    from ._ssl_socket import SSLSocket

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
    server has shut down; cancelling it shuts the server down first.  A
    cancel scope (anyio's, trio's), which delivers its cancellation again at
    every await, does not cut a shutdown short (``shutdown_timeout`` bounds
    it); on asyncio, cancelling the waiting task once more cancels the
    handlers at once.
    """

    def __init__(
        self,
        handler: Handler,
        listeners: Iterable[socket],
        *,
        max_connections: int | None = None,
        shutdown_timeout: float | None = 5.0,
        ssl: SSLContext | None = None,
        ssl_handshake_timeout: float | None = 60.0,
        _kit: Any = None,
    ) -> None:
        if ssl is not None and not _is_context(ssl):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, not {type(ssl).__name__!r}")
        if ssl_handshake_timeout is not None and not ssl_handshake_timeout > 0:
            raise ValueError(f"ssl_handshake_timeout must be a positive number or None, not {ssl_handshake_timeout!r}")
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
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        # How to run tasks, wait and hold off cancellations: the async library's.
        self._kit = _kit if _kit is not None else _AsyncioKit()
        self._handlers: list[Any] = []
        self._active = 0  # handlers running
        # Set (and replaced) whenever a handler ends: accept loops waiting
        # for a free slot, or for a descriptor to come back, wait on it.
        self._slot = self._kit.event()
        self._closing = False
        self._error: BaseException | None = None
        self._done = self._kit.event()
        self._acceptors = [self._kit.spawn(self._accept_loop, sock) for sock in self._listeners]

    @property
    def sockets(self) -> tuple[socket, ...]:
        """The listening sockets (closed once the server shuts down)."""
        return self._listeners

    @property
    def active_connections(self) -> int:
        """How many handlers are running now."""
        return self._active

    def is_serving(self) -> bool:
        """True until a shutdown starts."""
        return not self._closing

    def close(self) -> None:
        """Start a graceful shutdown and return at once (idempotent)."""
        if not self._closing:
            self._closing = True
            self._kit.spawn(self._shut_down)

    async def wait_closed(self) -> None:
        """Wait until the shutdown has finished: listeners closed, no handler left."""
        await self._done.wait()

    async def aclose(self) -> None:
        """Shut down gracefully and wait for it; on asyncio, a second cancellation cancels the handlers at once.

        A handler that wants to stop the server calls ``close()``: awaiting
        ``aclose()`` there would wait for that handler itself.
        """
        self.close()
        await self._kit.hold(self._done, self._cancel_handlers)

    async def serve_forever(self) -> None:
        """Wait until the server shuts down; if cancelled, shut it down gracefully first.

        Raises the error that stopped accepting, if one did (handler errors
        are only logged).
        """
        cancelled = False
        try:
            await self._done.wait()
        except self._kit.cancelled:
            cancelled = True
        if cancelled:
            # Outside the handler: the cancellation leaves once the shutdown is done.
            await self.aclose()
            await self._kit.cancelled_again()
        if self._error is not None:
            raise self._error

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "serving" if not self._closing else ("closed" if self._done.is_set() else "closing")
        names = []
        for sock in self._listeners:
            try:
                names.append(sock.getsockname())
            except OSError:
                pass
        return f"<asock.Server {state} on {names!r}, {self._active} connections>"

    # -- accepting ---------------------------------------------------------

    def _full(self) -> bool:
        return self._max is not None and self._active >= self._max

    async def _slot_freed(self, timeout: float | None) -> None:
        """Wait until a handler finishes (or ``timeout`` passes)."""
        await self._kit.wait_event(self._slot, timeout)

    async def _accept_loop(self, listener: socket) -> None:
        try:
            await self._accept(listener)
        except self._kit.cancelled:
            raise
        except Exception as exc:
            # A bug (not an OSError) that ended an accept loop must not pass
            # silently with the server half-deaf: treat it like a fatal accept error.
            logger.error("accept loop failed; shutting the server down", exc_info=exc)
            if self._error is None:
                self._error = exc
            self.close()

    async def _accept(self, listener: socket) -> None:
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
            self._active += 1
            self._handlers = [task for task in self._handlers if not task.done()]
            self._handlers.append(self._kit.spawn(self._run_handler, conn, address))

    async def _run_handler(self, conn: socket, address: Any) -> None:
        try:
            if self._ssl is not None:
                tls = await self._handshake(conn, address)
                if tls is None:
                    return
                with tls:
                    await self._handler(tls)
                    # Tell the client the data ended here (not a truncation),
                    # if the kernel takes it at once: a slow client must not
                    # hold the handler's slot.
                    tls._close_notify_nowait()
                return
            with conn:
                await self._handler(conn)
        except self._kit.cancelled:
            if not self._closing:
                raise
        except Exception:
            logger.exception("connection handler %r failed on the connection from %r", self._handler, address)
        finally:
            self._active -= 1
            slot, self._slot = self._slot, self._kit.event()
            slot.set()

    async def _handshake(self, conn: socket, address: Any) -> SSLSocket | None:
        """The connection's TLS handshake, in its own task; None (and closed) if it fails."""
        from ._ssl_socket import _start_tls

        assert self._ssl is not None
        try:
            return await _start_tls(conn, self._ssl, server_side=True, bound=self._ssl_handshake_timeout)
        except Exception as exc:
            # A client's failure (wrong CA, plain text, gone silent), not the server's.
            logger.debug("TLS handshake with %r failed: %r", address, exc)
            return None
        finally:
            conn.close()  # detached by a handshake that started; if it did not, closed here

    # -- shutting down -----------------------------------------------------

    def _cancel_handlers(self) -> None:
        for task in self._handlers:
            task.cancel()

    async def _shut_down(self) -> None:
        kit = self._kit
        try:
            for task in self._acceptors:
                task.cancel()
            # Closing a listener whose accept loop is still waiting would wake
            # it with EBADF; the cancellations above finish first.
            await kit.wait_tasks(self._acceptors, None)
            for sock in self._listeners:
                sock.close()
            running = [task for task in self._handlers if not task.done()]
            if running and not await kit.wait_tasks(running, self._shutdown_timeout):
                pending = sum(not task.done() for task in running)
                logger.warning("cancelling %d connection handler(s) still running at shutdown", pending)
            while any(not task.done() for task in self._handlers):
                self._cancel_handlers()
                await kit.wait_tasks(self._handlers, None)
        finally:
            self._done.set()
            kit.finished()


class _AsyncioKit:
    """What a ``Server`` needs of the async library, on asyncio (``_trio.ServerKit`` on trio)."""

    cancelled = asyncio.CancelledError

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Task[Any]:
        return self._loop.create_task(_coroutine(fn, *args))

    @staticmethod
    def event() -> asyncio.Event:
        return asyncio.Event()

    @staticmethod
    async def wait_tasks(tasks: list[asyncio.Task[Any]], timeout: float | None) -> bool:
        """Wait until the tasks are done, for at most ``timeout`` seconds; whether they are."""
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    @staticmethod
    async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    @staticmethod
    async def hold(event: asyncio.Event, hurry: Callable[[], None]) -> None:
        """Wait until ``event`` is set; a cancellation meanwhile leaves only then.

        asyncio cancels a task once per ``task.cancel()``: a cancellation that
        arrives while waiting is a request to ``hurry()`` (then the wait goes
        on).  anyio's cancel scopes cancel the task again at every await
        instead, which would be taken for such requests: so the wait runs in
        a shielded anyio scope (anyio is in use if it is imported), and the
        scope's cancellation is let out afterwards.
        """
        shield: Any = contextlib.nullcontext()
        anyio = sys.modules.get("anyio")
        if anyio is not None:
            shield = anyio.CancelScope(shield=True)
        cancelled = False
        with shield:
            waiter = asyncio.ensure_future(event.wait())
            while not waiter.done():
                try:
                    await asyncio.shield(waiter)
                except asyncio.CancelledError:
                    cancelled = True
                    hurry()
        if cancelled:
            raise asyncio.CancelledError
        if anyio is not None:
            await anyio.lowlevel.checkpoint_if_cancelled()

    @staticmethod
    async def cancelled_again() -> None:
        """Let out a cancellation that was held back (asyncio delivers it once: raise it again)."""
        raise asyncio.CancelledError

    def finished(self) -> None:
        pass


async def _coroutine(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return await fn(*args)


def _is_context(value: object) -> bool:
    import ssl

    return isinstance(value, ssl.SSLContext)


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
    ssl: SSLContext | None = None,
    ssl_handshake_timeout: float | None = 60.0,
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

    With ``ssl`` (a server-side ``ssl.SSLContext``), each connection's TLS
    handshake runs in its own task, bounded by ``ssl_handshake_timeout``
    seconds, and the handler receives the ``asock.SSLSocket``.  A handshake
    that fails or times out is logged at DEBUG on the ``asock.serve`` logger
    and the connection closed: it never reaches the handler, and the server
    goes on.  When the handler returns, close_notify is sent if the kernel
    takes it at once, then the connection is closed.
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
        trio = trio_waiter()
        return Server(
            handler,
            listeners,
            max_connections=max_connections,
            shutdown_timeout=shutdown_timeout,
            ssl=ssl,
            ssl_handshake_timeout=ssl_handshake_timeout,
            _kit=None if trio is None else await trio.ServerKit.open(),
        )
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
    ssl: SSLContext | None = None,
    ssl_handshake_timeout: float | None = 60.0,
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
        ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout,
    )
    await server.serve_forever()
