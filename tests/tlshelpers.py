"""What the TLS tests share: certificates made with trustme, contexts, connected
pairs, and a TLS peer whose ciphertext the test writes by hand."""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket as stdlib
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import pytest
import trustme

import asock

#: Every host name the server certificate is good for.
SERVER_NAMES = ("localhost", "127.0.0.1")


@functools.cache
def ca() -> trustme.CA:
    return trustme.CA()


@functools.cache
def other_ca() -> trustme.CA:
    """A CA nobody trusts here: its certificates fail verification."""
    return trustme.CA()


@functools.cache
def server_cert() -> trustme.LeafCert:
    return ca().issue_cert(*SERVER_NAMES)


@functools.cache
def client_cert() -> trustme.LeafCert:
    return ca().issue_cert("client@example.org")


def server_context(
    *, require_client_cert: bool = False, issuer: trustme.CA | None = None, version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    """A fresh server context (tests change them: ALPN, SNI callbacks, versions)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (server_cert() if issuer is None else issuer.issue_cert(*SERVER_NAMES)).configure_cert(context)
    if require_client_cert:
        ca().configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def client_context(
    *, with_cert: bool = False, trust: trustme.CA | None = None, version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    (ca() if trust is None else trust).configure_trust(context)
    if with_cert:
        client_cert().configure_cert(context)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def tcp_pair() -> tuple[asock.socket, asock.socket]:
    """Two connected asock sockets over 127.0.0.1 (loopback TCP: real kernel buffers)."""
    with stdlib.create_server(("127.0.0.1", 0)) as listener:
        client = stdlib.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return asock.socket(fileno=server.detach()), asock.socket(fileno=client.detach())


def small_buffers(*socks: asock.socket, size: int = 32768) -> None:
    """Shrink the kernel's buffers, so that a few records fill them."""
    for sock in socks:
        sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, size)
        sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_RCVBUF, size)


@contextlib.asynccontextmanager
async def tls_pair(
    server_ctx: ssl.SSLContext | None = None,
    client_ctx: ssl.SSLContext | None = None,
    *,
    hostname: str = "localhost",
    shrink: bool = False,
    **client_kwargs: Any,
) -> AsyncIterator[tuple[asock.SSLSocket, asock.SSLSocket]]:
    """``(server, client)``: a handshaken asock TLS connection over loopback TCP, closed on exit."""
    server_raw, client_raw = tcp_pair()
    if shrink:
        small_buffers(server_raw, client_raw)
    with server_raw, client_raw:
        server, client = await both(
            asock.start_tls(server_raw, server_ctx or server_context(), server_side=True),
            asock.start_tls(client_raw, client_ctx or client_context(), server_hostname=hostname, **client_kwargs),
            closing=(server_raw, client_raw),
        )
    with server, client:
        yield server, client


async def both(
    first: Coroutine[Any, Any, Any], second: Coroutine[Any, Any, Any], closing: tuple[asock.socket, ...] = ()
) -> tuple[Any, Any]:
    """Both results, on every backend; if one fails, the sockets in ``closing`` are closed
    (so the other cannot wait forever for it) and the first failure is raised once both
    have ended (a result the other produced is closed)."""
    results: list[Any] = [None, None]
    failures: list[BaseException] = []

    async def run(index: int, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            results[index] = await coro
        except Exception as exc:
            failures.append(exc)
            for sock in closing:
                sock.close()

    async with anyio.create_task_group() as group:
        group.start_soon(run, 0, first)
        group.start_soon(run, 1, second)
    if failures:
        for result in results:
            if result is not None:
                result.close()
        raise failures[0]
    return results[0], results[1]


async def read_exactly(sock: asock.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = await sock.recv(min(65536, n - len(data)))
        if not chunk:
            raise AssertionError(f"end of stream after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


async def read_all(sock: asock.socket) -> bytes:
    data = bytearray()
    while chunk := await sock.recv(65536):
        data += chunk
    return bytes(data)


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes in which any misplaced, lost or repeated run shows (a prime period)."""
    unit = bytes((i * 7 + seed) % 251 for i in range(251))
    return (unit * (n // 251 + 1))[:n]


class RawTLS:
    """A TLS peer over a plain asock socket whose ciphertext the test handles itself.

    ``encrypt`` returns the records for some plaintext instead of sending
    them, so a test can deliver them in pieces; ``decrypt`` reads what
    arrived.  Drives its handshake with ``handshake()``.
    """

    def __init__(self, sock: asock.socket, context: ssl.SSLContext, server_side: bool) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=None if server_side else "localhost"
        )

    async def flush(self) -> None:
        if self.outgoing.pending:
            await self.sock.sendall(self.outgoing.read())

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                data = await self.sock.recv(65536)
                if not data:
                    raise AssertionError("peer closed during the handshake") from None
                self.incoming.write(data)
        await self.flush()

    def encrypt(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()

    async def receive(self) -> bytes:
        """Decrypted bytes; b"" at close_notify.  Raises the ssl error an alert causes."""
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLWantReadError:
                await self.flush()
                data = await self.sock.recv(65536)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()


class ThreadPeer(threading.Thread):
    """A blocking stdlib ``ssl`` peer in a thread, running ``body(ssl_socket)``."""

    def __init__(
        self, sock: stdlib.socket, context: ssl.SSLContext, server_side: bool, body: Callable[[ssl.SSLSocket], Any]
    ) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.context = context
        self.server_side = server_side
        self.body = body
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.sock.settimeout(20)
            with self.context.wrap_socket(
                self.sock, server_side=self.server_side, server_hostname=None if self.server_side else "localhost"
            ) as tls:
                self.result = self.body(tls)
        except BaseException as exc:
            self.error = exc
        finally:
            self.sock.close()

    def outcome(self) -> Any:
        self.join(30)
        assert not self.is_alive(), "peer thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
