"""The async driver of TLS: ``asock.SSLSocket`` and ``start_tls``.

What each TLS call does is ``_tls``'s (an asyncio-free state machine over
``ssl.SSLObject`` and ``ssl.MemoryBIO``); this module only waits, with the
async socket's own machinery, on asyncio, uvloop and trio alike: ``_enter``
(the loop check, fairness), ``_drive`` (one deadline per call, progress
stamps), ``_wait`` (one waiter per direction, close wakes it).  TLS adds one
kind of wait, ``PEER``: for another task's operation on the same connection to
change its state (see ``_tls``).
"""

from __future__ import annotations

import _socket
import asyncio
import ssl
import weakref
from collections.abc import Callable
from typing import Any, cast, overload

from . import _core
from ._async_socket import _arm, _enter, _TrioRun, _waiting, socket, until
from ._core import READ
from ._tls import BOTH, PEER, RECEIVER, RECORD, SENDER, TLSState, check_size, want_read

TYPE_CHECKING = False  # not typing's: see _core
if TYPE_CHECKING:
    from ._core import Op
    from ._tls import TLSOp

__all__ = ["SSLSocket", "start_tls"]

_Buffer = Any


class _SocketTimeout:
    """The handshake's bound when none is given: the socket's own timeout."""


_SOCKET_TIMEOUT: Any = _SocketTimeout()


def _op(op: TLSOp[Any]) -> Op[Any]:
    # A TLS step carries an ssl.SSLWant*Error where the core's carry a
    # BlockingIOError; ``_core.drive`` only raises it.
    return cast("Op[Any]", op)


def _notifier(sock: SSLSocket) -> Callable[[bool], None]:
    # The TLS state calls back into the socket that owns it: through a weak
    # reference, so that no cycle keeps an unclosed socket (and its
    # descriptor) alive past its last use.
    ref = weakref.ref(sock)

    def notify(everyone: bool) -> None:
        sock = ref()
        if sock is not None:
            sock._wake_waiters(everyone)

    return notify


def _flags_error(name: str, cls: type) -> ValueError:
    return ValueError(f"non-zero flags not allowed in calls to {name}() on {cls}")


class SSLSocket(socket):
    """A TLS connection over an ``asock.socket``: made by ``start_tls``, never constructed.

    Its receiving and sending calls are coroutines with every guarantee of
    the plain socket (timeouts, lossless cancellation, ``bytes_sent``, close
    waking waiters, ``BusyError``), over ``ssl.SSLObject``; its other methods
    are those of the stdlib's ``ssl.SSLSocket``.
    """

    __slots__ = ("_peer", "_tls")

    _tls: TLSState
    _peer: Any  # the PEER wait in progress, if any: an asyncio future, or _trio.Signal

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            f"{type(self).__name__} does not have a public constructor. Instances are returned by asock.start_tls()."
        )

    @classmethod
    def _take_over(
        cls,
        native: _socket.socket,
        timeout: float | None,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        suppress_ragged_eofs: bool,
    ) -> SSLSocket:
        self = cast(SSLSocket, cls._from_native(native))
        self._peer = None
        self._timeout = timeout
        self._tls = TLSState(native, obj, incoming, outgoing, suppress_ragged_eofs, _notifier(self))
        self._bind_loop()
        # Where the plain socket's receives wait for readiness before their
        # first try (asyncio's loops: see _bind_loop), so may TLS's.  (Under
        # trio the plain socket yields and then tries instead.)
        self._tls.wait_first = self._hint == 0 and self._loop.__class__ is not _TrioRun
        return self

    # -- the driver: how to wait ---------------------------------------------

    async def _wait(self, direction: int, when: float | None, what: Any) -> None:
        """Wait for the descriptor (READ, WRITE) or for another operation's progress (PEER)."""
        if direction != PEER:
            await super()._wait(direction, when, what)
            return
        if self._fd < 0:
            raise _core.closed_error()
        if self._loop.__class__ is _TrioRun:
            from . import _trio

            signal = self._peer = _trio.Signal()
            await _trio.wait_signal(self, signal, when)
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._peer = fut
        await until(fut, when)

    def _wake_waiters(self, everyone: bool) -> None:
        """The TLS state changed: wake the PEER waiter, or (``everyone``) every waiter, to look again."""
        peer = self._peer
        if peer is not None and not peer.done():
            peer.set_result(None)
        if not everyone:
            return
        if self._loop.__class__ is _TrioRun:
            from . import _trio

            if self._fd >= 0 and _waiting(self._reader, self._writer):
                _trio.wake_all(self)
            return
        for fut in (self._reader, self._writer):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _release(self) -> None:
        super()._release()  # fails the READ / WRITE waits with EBADF
        peer = getattr(self, "_peer", None)
        # Dropped first, as the async socket drops its own: a failed future
        # kept here would hold its traceback, and with it this socket.
        self._peer = None
        if peer is not None and not peer.done():
            peer.set_exception(_core.closed_error())

    def _state(self) -> TLSState:
        if self._sock.fileno() < 0:
            raise _core.closed_error()
        return self._tls

    async def _run(self, role: int, what: str, op: Callable[[TLSState], TLSOp[Any]]) -> Any:
        """Claim ``role`` for the call ``what`` and drive its TLS operation."""
        tls = self._state()
        while _enter(self, 0, what):
            if role == SENDER:
                await self._yield_sending()
            else:
                await self._yield()
        tls.claim(role, what, self)
        try:
            result = await self._drive(_op(op(tls)), what)
        finally:
            tls.release(role)
        self._ticks += 1
        return result

    async def _handshake(self, bound: float | None) -> None:
        tls = self._tls
        while _enter(self, 0, "do_handshake"):
            await self._yield()
        tls.claim(BOTH, "do_handshake", self)
        timeout = self._timeout
        self._timeout = bound  # the whole handshake's bound (one deadline, in _drive)
        try:
            await self._drive(_op(tls.handshake()), "do_handshake")
        finally:
            self._timeout = timeout
            tls.release(BOTH)

    def _abort(self) -> None:
        """Close after a failed handshake: the alert goes out first, and no reset destroys it."""
        if self._sock.fileno() >= 0:
            self._tls.abandon()
        self.close()

    # -- coroutines ---------------------------------------------------------

    async def do_handshake(self) -> None:
        """Perform the TLS handshake (``start_tls`` has done it: then a no-op)."""
        if not self._state().handshaken:
            await self._handshake(self._timeout)

    async def recv(self, bufsize: int = 1024, flags: int = 0) -> bytes:
        """Receive up to ``bufsize`` decrypted bytes; b"" at the end of the stream."""
        # The hot path: the core's common-case step (``recv_step``) with the
        # wait written out here, as the async socket's ``_io`` does; anything
        # unusual goes to the core's general operation, through ``_drive``.
        if self._fd < 0:
            raise _core.closed_error()
        if flags != 0:
            raise _flags_error("recv", self.__class__)
        if type(bufsize) is int and bufsize > 0:
            size = bufsize if bufsize < RECORD else RECORD  # one read returns at most a record
        else:
            size = check_size(bufsize)
        if not size:
            return b""
        while _enter(self, 0, "recv"):
            await self._yield()
        tls = self._tls
        timeout = self._timeout
        patient = timeout != 0.0
        data: Any = tls.recv_step(size, patient, self)
        if data is READ:
            try:
                if not patient:
                    raise want_read()
                when = None if timeout is None else _core.deadline(timeout, None)
                inline = self._loop.__class__ is not _TrioRun
                while True:
                    if inline:
                        # _wait's wait written out: the coroutines it goes
                        # through cost more than the rest of the receive.
                        fut = _arm(self, READ, "recv")
                        if when is None:
                            await fut
                        else:
                            await until(fut, when)
                    else:
                        await self._wait(READ, when, "recv")
                    data = tls.recv_step(size, patient, self, True)
                    if data is not READ:
                        break
                    when = _core.deadline(timeout, when)
            except BaseException:
                tls.release(RECEIVER)
                raise
        if data is None:
            try:
                data = await self._drive(_op(tls.receive(size, None, patient)), "recv")
            finally:
                tls.release(RECEIVER)
        self._ticks += 1
        received: bytes = data
        return received

    async def recv_into(self, buffer: _Buffer, nbytes: int | None = 0, flags: int = 0) -> int:
        """Receive decrypted bytes into ``buffer``; return how many (0 at the end of the stream)."""
        self._state()
        if flags != 0:
            raise _flags_error("recv_into", self.__class__)
        size = 0 if nbytes is None else nbytes
        patient = self._timeout != 0.0
        result: int = await self._run(RECEIVER, "recv_into", lambda tls: tls.receive(size, buffer, patient))
        return result

    async def send(self, data: _Buffer, flags: int = 0) -> int:
        """Send up to one TLS record of ``data``; return how many bytes went.

        It returns once their ciphertext is in the kernel; an exception that
        interrupts it after encrypting carries ``bytes_sent``.
        """
        self._state()
        if flags != 0:
            raise _flags_error("send", self.__class__)
        result: int = await self._run(SENDER, "send", lambda tls: tls.send(data, whole=False))
        return result

    async def sendall(self, data: _Buffer, flags: int = 0) -> None:
        """Send all of ``data``: returns once every byte's ciphertext is in the kernel.

        An interrupting exception carries ``bytes_sent``, the bytes committed
        to the TLS stream (they reach the peer before anything sent later).
        """
        if self._fd < 0:
            raise _core.closed_error()
        if flags != 0:
            raise _flags_error("sendall", self.__class__)
        while _enter(self, 0, "sendall"):
            await self._yield_sending()
        tls = self._tls
        done = tls.send_now(data, self)  # claims the role; gives it back if that was all
        if done >= 0:
            try:
                await self._drive(_op(tls.send(data, True, done)), "sendall")
            finally:
                tls.release(SENDER)
        self._ticks += 1

    async def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a binary file through TLS (reads and sends: no zero-copy); return bytes sent.

        The timeout covers the whole call; an interrupting exception carries
        ``bytes_sent`` and leaves the file positioned just after them.
        """
        self._state()
        _core.check_sendfile(self._sock.type, file, count)
        if self._timeout == 0.0:
            raise ValueError("non-blocking sockets are not supported")  # the stdlib's send loop's rule
        result: int = await self._run(SENDER, "sendfile", lambda tls: tls.sendfile(file, offset, count))
        return result

    async def unwrap(self) -> socket:
        """Exchange close_notify with the peer and return the plain ``asock.socket``.

        No byte the peer sends in the clear after its close_notify is lost:
        it waits in the returned socket.  This socket is then detached.
        """
        await self._run(BOTH, "unwrap", lambda tls: tls.unwrap())
        timeout = self._timeout
        sock = self._sock
        family, kind, proto = sock.family, sock.type, sock.proto
        plain = socket(family, kind, proto, self.detach())
        plain.settimeout(timeout)
        return plain

    async def aclose(self) -> None:
        """Send close_notify (bounded by the timeout), then close, without waiting for the peer's.

        Failing to send it (the peer is gone, the timeout passed, another task
        is sending) does not stop the close; a cancellation leaves after it.
        """
        if self._sock.fileno() < 0:
            return
        try:
            if self._tls.sending is None:
                await self._run(SENDER, "aclose", lambda tls: tls.close_notify())
                self._tls.discard_input()
        except OSError:
            pass  # ssl errors and timeouts included: the socket closes all the same
        finally:
            self.close()

    async def _send_close_notify(self) -> None:
        """End our sending half with close_notify; receiving goes on (TLS 1.3 half-close)."""
        await self._run(SENDER, "close_notify", lambda tls: tls.close_notify())

    def _close_notify_nowait(self) -> None:
        """Send close_notify if the kernel takes it at once; never waits, never raises."""
        if self._sock.fileno() < 0 or self._tls.sending is not None:
            return
        tls = self._tls
        tls.claim(SENDER, "close", self)
        try:
            _core.run_sync(_core.drive(_op(tls.close_notify()), self._wait, "close", 0.0))
            tls.discard_input()
        except OSError:
            pass
        finally:
            tls.release(SENDER)

    async def connect(self, address: Any) -> None:
        """Refused: the connection exists (as the stdlib's SSLSocket)."""
        raise ValueError("attempt to connect already-connected SSLSocket!")

    async def connect_ex(self, address: Any) -> int:
        """Refused: the connection exists (as the stdlib's SSLSocket)."""
        raise ValueError("attempt to connect already-connected SSLSocket!")

    async def recvfrom(self, bufsize: int = 1024, flags: int = 0) -> tuple[bytes, Any]:
        """Not allowed on TLS sockets (as the stdlib's)."""
        self._state()
        raise ValueError(f"recvfrom not allowed on instances of {self.__class__}")

    async def recvfrom_into(self, buffer: _Buffer, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        """Not allowed on TLS sockets (as the stdlib's)."""
        self._state()
        raise ValueError(f"recvfrom_into not allowed on instances of {self.__class__}")

    async def recvmsg(self, *args: Any, **kwargs: Any) -> Any:
        """Not allowed on TLS sockets (as the stdlib's)."""
        raise NotImplementedError(f"recvmsg not allowed on instances of {self.__class__}")

    async def recvmsg_into(self, *args: Any, **kwargs: Any) -> Any:
        """Not allowed on TLS sockets (as the stdlib's)."""
        raise NotImplementedError(f"recvmsg_into not allowed on instances of {self.__class__}")

    @overload
    async def sendto(self, data: _Buffer, address: Any, /) -> int: ...
    @overload
    async def sendto(self, data: _Buffer, flags: int, address: Any, /) -> int: ...
    async def sendto(self, data: _Buffer, flags_or_address: Any, address: Any = None, /) -> int:
        """Not allowed on TLS sockets (as the stdlib's)."""
        self._state()
        raise ValueError(f"sendto not allowed on instances of {self.__class__}")

    async def sendmsg(self, *args: Any, **kwargs: Any) -> int:
        """Not allowed on TLS sockets (as the stdlib's): data would go out unencrypted."""
        raise NotImplementedError(f"sendmsg not allowed on instances of {self.__class__}")

    # -- plain methods, as the stdlib's SSLSocket ------------------------------

    def dup(self) -> SSLSocket:
        """Refused, as the stdlib's: two objects cannot share one TLS state."""
        raise NotImplementedError(f"Can't dup() {self.__class__.__name__} instances")

    def _obj(self) -> ssl.SSLObject | None:
        return None if self._sock.fileno() < 0 else self._tls.obj

    def version(self) -> str | None:
        """The protocol version negotiated (``"TLSv1.3"``, ...); None once closed."""
        obj = self._obj()
        return None if obj is None else obj.version()

    def cipher(self) -> tuple[str, str, int] | None:
        """``(name, protocol, secret bits)`` of the cipher in use; None once closed."""
        obj = self._obj()
        return None if obj is None else obj.cipher()

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        """The ciphers both ends offered; None once closed."""
        obj = self._obj()
        return None if obj is None else obj.shared_ciphers()

    def compression(self) -> str | None:
        """The compression algorithm in use, if any."""
        obj = self._obj()
        return None if obj is None else obj.compression()

    @overload
    def getpeercert(self, binary_form: bool = ...) -> Any: ...
    @overload
    def getpeercert(self, binary_form: Any = ...) -> Any: ...
    def getpeercert(self, binary_form: Any = False) -> Any:
        """The peer's certificate: a dict (validated certificates only), or DER bytes."""
        return self._state().obj.getpeercert(binary_form)

    def selected_alpn_protocol(self) -> str | None:
        """The protocol ALPN selected, or None."""
        obj = self._obj()
        return None if obj is None else obj.selected_alpn_protocol()

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        """Channel binding data (RFC 5929) of the given type."""
        obj = self._obj()
        if obj is None:
            if cb_type not in ssl.CHANNEL_BINDING_TYPES:
                raise ValueError(f"{cb_type} channel binding type not implemented")
            return None
        return obj.get_channel_binding(cb_type)

    def pending(self) -> int:
        """How many decrypted bytes can be received without reading the socket."""
        if self._sock.fileno() < 0:
            return 0
        tls = self._tls
        return tls.obj.pending() + len(tls.stash)

    def verify_client_post_handshake(self) -> None:
        """Ask a TLS 1.3 client for its certificate now; the request goes out with the next send."""
        self._state().obj.verify_client_post_handshake()

    @property
    def context(self) -> ssl.SSLContext:
        """The ``ssl.SSLContext`` of the connection (settable, e.g. from an SNI callback)."""
        return self._tls.obj.context

    @context.setter
    def context(self, ctx: ssl.SSLContext) -> None:
        self._tls.obj.context = ctx

    @property
    def server_side(self) -> bool:
        """Whether this end is the TLS server."""
        return self._tls.obj.server_side

    @property
    def server_hostname(self) -> str | None:
        """The host name the client asked for (and checked the certificate against)."""
        return self._tls.obj.server_hostname

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session, to resume in a later connection (``start_tls(..., session=)``)."""
        obj = self._obj()
        return None if obj is None else obj.session

    @session.setter
    def session(self, session: ssl.SSLSession | None) -> None:
        self._state().obj.session = session

    @property
    def session_reused(self) -> bool | None:
        """Whether the handshake resumed an earlier session."""
        obj = self._obj()
        return None if obj is None else obj.session_reused

    async def __aenter__(self) -> SSLSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def start_tls(
    sock: socket,
    context: ssl.SSLContext,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    session: ssl.SSLSession | None = None,
    suppress_ragged_eofs: bool = True,
) -> SSLSocket:
    """Take over the connected ``sock`` and return an ``asock.SSLSocket`` once the handshake is done.

    ``sock`` must not be used afterwards (its calls raise ``OSError(EBADF)``,
    as after ``detach()``); its timeout bounds the handshake and becomes the
    TLS socket's.  The handshake's failure raises the ``ssl`` module's error
    (``ssl.SSLCertVerificationError`` for a certificate or host name that
    does not check out) after sending the alert to the peer, and closes the
    connection; running out of time raises ``TimeoutError("timed out")``.

    ``server_side``, ``server_hostname`` (the name to send as SNI and check
    the certificate against), ``session`` (to resume) and
    ``suppress_ragged_eofs`` (an end of file without close_notify reads as
    b"" instead of raising ``ssl.SSLEOFError``) are those of
    ``SSLContext.wrap_socket``.
    """
    return await _start_tls(sock, context, server_side, server_hostname, session, suppress_ragged_eofs)


async def _start_tls(
    sock: socket,
    context: ssl.SSLContext,
    server_side: bool = False,
    server_hostname: str | None = None,
    session: ssl.SSLSession | None = None,
    suppress_ragged_eofs: bool = True,
    bound: Any = _SOCKET_TIMEOUT,
) -> SSLSocket:
    """``start_tls`` with the handshake bounded by ``bound`` seconds (None: unbounded) instead."""
    if not isinstance(sock, socket) or isinstance(sock, SSLSocket):
        raise TypeError(f"start_tls() takes a connected asock.socket, not {type(sock).__name__!r}")
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"context must be an ssl.SSLContext, not {type(context).__name__!r}")
    native = sock._sock
    if native.fileno() < 0:
        raise _core.closed_error()
    # The stdlib's SSLSocket rules, in its order.
    if native.getsockopt(_socket.SOL_SOCKET, _socket.SO_TYPE) != _socket.SOCK_STREAM:
        raise NotImplementedError("only stream sockets are supported")
    if server_side:
        if server_hostname:
            raise ValueError("server_hostname can only be specified in client mode")
        if session is not None:
            raise ValueError("session can only be specified in client mode")
    if context.check_hostname and not server_hostname:
        raise ValueError("check_hostname requires server_hostname")
    timeout = sock.gettimeout()
    if bound is _SOCKET_TIMEOUT:
        bound = timeout
    if bound == 0.0:
        raise ValueError("the TLS handshake cannot be done in non-blocking mode (timeout 0.0)")
    native.getpeername()  # not connected: OSError(ENOTCONN), the socket left as it was
    sock._bind_loop()  # outside an async library, or on another loop: RuntimeError, the socket left as it was
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(
        incoming, outgoing, server_side=server_side, server_hostname=server_hostname, session=session
    )
    family, kind, proto = native.family, native.type, native.proto
    taken = _socket.socket(family, kind, proto, sock.detach())
    tls_sock = SSLSocket._take_over(taken, timeout, obj, incoming, outgoing, suppress_ragged_eofs)
    try:
        await tls_sock._handshake(bound)
    except BaseException:
        tls_sock._abort()
        raise
    return tls_sock

