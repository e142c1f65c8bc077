"""anyio adapters: an ``asock.socket`` as an ``anyio.abc.SocketStream`` / ``SocketListener``.

Import this module explicitly (``from asock.anyio import AsockSocketStream``):
it needs anyio, which ``import asock`` never does.  On anyio's asyncio backend
the adapters run on the current loop (the default one or uvloop), so anyio's
``TLSStream``, ``BufferedByteReceiveStream``, task groups and cancel scopes work
on top of asock, with asock's guarantees: a receive cancelled by a cancel
scope has consumed nothing.

Errors are anyio's: ``EndOfStream`` when the peer has closed,
``ClosedResourceError`` after ``aclose()``, ``BrokenResourceError`` (chained
to the ``OSError``) when the connection fails, ``BusyResourceError`` when two
tasks receive (or send) at once.  ``SocketAttribute.raw_socket`` is the
``asock.socket`` itself.
"""

from __future__ import annotations

import errno
import socket as _stdlib
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from ._async_socket import socket
from ._connect import create_connection
from ._core import BusyError

__all__ = ["AsockSocketListener", "AsockSocketStream", "connect_tcp"]


class AsockSocketStream(anyio.abc.SocketStream):
    """A connected stream ``asock.socket`` as an anyio ``SocketStream``; it owns the socket."""

    def __init__(self, sock: socket) -> None:
        self._sock = sock
        self._closed = False

    @property
    def _raw_socket(self) -> Any:  # anyio types it as the stdlib's socket; asock's has the methods it calls
        # anyio builds SocketAttribute.* from this; asock's socket has the
        # stdlib methods it calls (family, getsockname, getpeername).
        return self._sock

    def _failed(self, exc: OSError | BusyError, action: str) -> BaseException:
        if isinstance(exc, BusyError):
            return anyio.BusyResourceError(action)
        if self._closed or exc.errno == errno.EBADF:
            return anyio.ClosedResourceError()
        return anyio.BrokenResourceError()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` bytes; ``anyio.EndOfStream`` once the peer has closed."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            data = await self._sock.recv(max_bytes)
        except TimeoutError:
            raise  # the socket's own timeout, if the caller set one
        except (OSError, BusyError) as exc:
            raise self._failed(exc, "reading from") from exc
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        """Send all of ``item``."""
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            await self._sock.sendall(item)
        except TimeoutError:
            raise  # the socket's own timeout, if the caller set one
        except (OSError, BusyError) as exc:
            raise self._failed(exc, "writing to") from exc

    async def send_eof(self) -> None:
        """Shut down the sending half; receiving goes on."""
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            self._sock.shutdown(_stdlib.SHUT_WR)
        except OSError:
            pass  # the peer is gone already: nothing left to signal

    async def aclose(self) -> None:
        """Close the socket; tasks waiting on it get ``ClosedResourceError``."""
        self._closed = True
        self._sock.close()
        await anyio.lowlevel.checkpoint()


class AsockSocketListener(anyio.abc.SocketListener):
    """A listening ``asock.socket`` as an anyio ``SocketListener``; it owns the socket.

    ``accept()`` returns ``AsockSocketStream`` objects, so anyio's
    ``listener.serve(handler)`` runs on asock.
    """

    def __init__(self, sock: socket) -> None:
        self._sock = sock
        self._closed = False
        # The listener waits as long as it takes, whatever the socket's own timeout.
        sock.settimeout(None)

    @property
    def _raw_socket(self) -> Any:  # anyio types it as the stdlib's socket; asock's has the methods it calls
        return self._sock

    async def accept(self) -> AsockSocketStream:
        """Wait for a connection and return it as an ``AsockSocketStream``."""
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            conn, _ = await self._sock.accept()
        except BusyError as exc:
            raise anyio.BusyResourceError("accepting on") from exc
        except OSError as exc:
            if self._closed or exc.errno == errno.EBADF:
                raise anyio.ClosedResourceError from exc
            raise
        return AsockSocketStream(conn)

    async def aclose(self) -> None:
        """Close the listening socket."""
        self._closed = True
        self._sock.close()
        await anyio.lowlevel.checkpoint()


async def connect_tcp(host: str, port: int, **kwargs: Any) -> AsockSocketStream:
    """Connect with ``asock.create_connection`` and wrap the socket for anyio.

    Keyword arguments go to ``create_connection`` (``timeout``,
    ``source_address``, ``happy_eyeballs_delay``, ...).
    """
    return AsockSocketStream(await create_connection((host, port), **kwargs))
