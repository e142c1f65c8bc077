"""Buffered async streams over an ``asock.socket``, shaped like asyncio's.

``StreamReader`` keeps what it has received in its own buffer and fills it
with plain ``recv`` calls in the reading task.  Since asock's receives are
lossless under cancellation, so are the reader's: a cancelled ``readline()``
leaves every byte it had received in the buffer for the next call.
``StreamWriter.write`` is ``sendall``: when it returns, the kernel has every
byte, so there is no ``drain()``.
"""

from __future__ import annotations

import asyncio
import socket as _stdlib
from typing import Any

from ._async_socket import socket
from ._connect import create_connection
from ._ssl_socket import SSLSocket

__all__ = ["Stream", "StreamReader", "StreamWriter", "open_connection"]

#: asyncio's default: the longest line (or readuntil() chunk) accepted.
DEFAULT_LIMIT = 2**16

_CHUNK = 2**16


class StreamReader:
    """Buffered reading from an ``asock.socket``, like ``asyncio.StreamReader``.

    ``limit`` bounds how much ``readline()`` and ``readuntil()`` buffer while
    looking for their separator: a peer that never sends one gets a
    ``ValueError`` / ``asyncio.LimitOverrunError`` once ``limit`` bytes have
    arrived, never unbounded memory.  The reader does not own the socket.
    """

    def __init__(self, sock: socket, *, limit: int = DEFAULT_LIMIT) -> None:
        if limit <= 0:
            raise ValueError("Limit cannot be <= 0")
        self._sock = sock
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False

    @property
    def socket(self) -> socket:
        """The underlying ``asock.socket``."""
        return self._sock

    @property
    def limit(self) -> int:
        """The separator search limit, in bytes."""
        return self._limit

    def at_eof(self) -> bool:
        """True once the peer has closed its side and the buffer is empty."""
        return self._eof and not self._buffer

    async def _fill(self) -> None:
        # The bytes join the buffer in the same step recv() returns them, so
        # a cancellation can only strike before the syscall: nothing is lost.
        data = await self._sock.recv(_CHUNK)
        if data:
            self._buffer += data
        else:
            self._eof = True

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at least one unless at EOF); ``n < 0``: everything until EOF."""
        if n == 0:
            return b""
        if n < 0:
            while not self._eof:
                await self._fill()
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        if not self._buffer and not self._eof:
            await self._fill()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` (with the partial bytes) at an early EOF."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        while len(self._buffer) < n:
            if self._eof:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, n)
            await self._fill()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """The bytes up to and including ``separator``, as ``asyncio.StreamReader.readuntil``.

        Raises ``asyncio.IncompleteReadError`` at EOF before the separator (the
        partial data is consumed) and ``asyncio.LimitOverrunError`` when more
        than ``limit`` bytes come before it (the data stays in the buffer).
        """
        seplen = len(separator)
        if seplen == 0:
            raise ValueError("Separator should be at least one-byte string")
        offset = 0
        while True:
            found = self._buffer.find(separator, offset)
            if found >= 0:
                if found > self._limit:
                    raise asyncio.LimitOverrunError("Separator is found, but chunk is longer than limit", found)
                end = found + seplen
                data = bytes(self._buffer[:end])
                del self._buffer[:end]
                return data
            # Only a separator straddling the end of the buffer can still
            # start before here: resume the search from there.
            offset = max(0, len(self._buffer) + 1 - seplen)
            if offset > self._limit:
                raise asyncio.LimitOverrunError("Separator is not found, and chunk exceed the limit", offset)
            if self._eof:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, None)
            await self._fill()

    async def readline(self) -> bytes:
        """One line including its ``b"\\n"``; at EOF the last partial line, then ``b""``.

        A line longer than ``limit`` raises ``ValueError`` and is dropped from
        the buffer (what the buffer held of it), as asyncio does.
        """
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError as exc:
            if self._buffer.startswith(b"\n", exc.consumed):
                del self._buffer[: exc.consumed + 1]
            else:
                self._buffer.clear()
            raise ValueError(exc.args[0]) from None

    def __aiter__(self) -> StreamReader:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


class StreamWriter:
    """Writing to an ``asock.socket``: ``await write(data)`` returns once all of it is sent.

    Closing the writer closes the socket.
    """

    def __init__(self, sock: socket) -> None:
        self._sock = sock

    @property
    def socket(self) -> socket:
        """The underlying ``asock.socket``."""
        return self._sock

    async def write(self, data: Any) -> None:
        """Send every byte of ``data`` (``sendall``; on interruption the error has ``bytes_sent``)."""
        await self._sock.sendall(data)

    async def writelines(self, data: Any) -> None:
        """Send every buffer of the iterable ``data``, in order."""
        await self._sock.sendall(b"".join(data))

    sendall = write

    def can_write_eof(self) -> bool:
        """True, except over TLS (as asyncio's TLS transports)."""
        return not isinstance(self._sock, SSLSocket)

    def write_eof(self) -> None:
        """Shut down the sending half (``shutdown(SHUT_WR)``); reading goes on.

        Over TLS it raises ``NotImplementedError``, as asyncio's does: a shut
        down socket would cut the TLS stream without close_notify.
        """
        if isinstance(self._sock, SSLSocket):
            raise NotImplementedError("write_eof() is not supported over TLS")
        self._sock.shutdown(_stdlib.SHUT_WR)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """As asyncio's transports: ``"socket"``, ``"peername"``, ``"sockname"``; over TLS also
        ``"ssl_object"`` (the ``asock.SSLSocket``), ``"peercert"``, ``"cipher"``, ``"compression"``,
        ``"sslcontext"``."""
        sock = self._sock
        try:
            if name == "socket":
                return sock
            if name == "peername":
                return sock.getpeername()
            if name == "sockname":
                return sock.getsockname()
            if isinstance(sock, SSLSocket):
                if name == "ssl_object":
                    return sock
                if name == "peercert":
                    return sock.getpeercert()
                if name == "cipher":
                    return sock.cipher()
                if name == "compression":
                    return sock.compression()
                if name == "sslcontext":
                    return sock.context
        except OSError:
            pass
        return default

    def is_closing(self) -> bool:
        """True once the socket is closed."""
        return self._sock.fileno() < 0

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self._sock.close()

    async def aclose(self) -> None:
        """Close the socket; for ``async with`` and anyio-style code.

        Over TLS, close_notify is sent first (``SSLSocket.aclose()``).
        """
        if isinstance(self._sock, SSLSocket):
            await self._sock.aclose()
        else:
            self._sock.close()

    async def wait_closed(self) -> None:
        """Return at once: ``close()`` has already closed the socket."""


class Stream(StreamReader, StreamWriter):
    """Reading and writing in one object over an ``asock.socket``; owns and closes it.

    ``Stream(sock, limit=...)`` has every ``StreamReader`` and ``StreamWriter``
    method; ``async with Stream(sock) as stream:`` closes the socket on exit.
    """

    def __init__(self, sock: socket, *, limit: int = DEFAULT_LIMIT) -> None:
        StreamReader.__init__(self, sock, limit=limit)

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<asock.Stream {self._sock!r}, {len(self._buffer)} bytes buffered>"


async def open_connection(
    host: str | None, port: int | str, *, limit: int = DEFAULT_LIMIT, **kwargs: Any
) -> tuple[StreamReader, StreamWriter]:
    """Connect to ``(host, port)`` and return ``(reader, writer)``, as ``asyncio.open_connection``.

    The remaining keyword arguments go to ``asock.create_connection``
    (``timeout``, ``source_address``, ``happy_eyeballs_delay``, ``ssl``,
    ``server_hostname``, ...).  Closing the writer closes the connection.
    """
    sock = await create_connection((host, port), **kwargs)
    return StreamReader(sock, limit=limit), StreamWriter(sock)
