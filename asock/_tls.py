"""TLS as an operation of the core: ``ssl.SSLObject`` over asock's own socket.

``TLSState`` holds one connection's ``ssl.SSLObject``, its two
``ssl.MemoryBIO`` buffers and the ciphertext produced but not yet taken by
the kernel.  Its operations (``handshake``, ``receive``, ``send``,
``sendfile``, ``close_notify``, ``unwrap``) are generators in the style of
``_core``'s: they move ciphertext between the BIOs and the native socket with
the C socket methods called unbound, and when that would block they yield a
step, ``(READ, exc)`` or ``(WRITE, exc)``, for the driver to wait on
(``_core.drive``).  ``exc`` is the ``ssl.SSLWantReadError`` /
``ssl.SSLWantWriteError`` a non-blocking call raises, as the stdlib's
``SSLSocket`` does.

Full duplex.  One task may receive while another sends, but TLS does not
keep the two directions apart: a receive can produce output (a TLS 1.2
renegotiation's handshake messages, a reply to a post-handshake message) and
a send can need input (``SSL_write`` during a renegotiation).  A driver lets
one task at a time wait on each direction of the descriptor, so the
operations share the descriptor instead of each waiting for what it needs:

- A syscall that cannot block may be made by any operation at any time:
  every send takes from the one queue of ciphertext, in order, and every
  receive feeds the one incoming BIO.  Only *waiting* is owned: the
  operation waiting on a direction owns it (``reading`` / ``writing``).
- An operation that needs a direction another one owns yields the third
  kind of step, ``PEER``: "wake me when the connection's state changes".
  The owner changes it (input fed, ciphertext flushed, output produced,
  ownership given up, an operation ending) and the driver's ``notify``
  wakes the peer, which looks again.  At most one operation owns each
  direction and one waits for a peer, so a driver never has two waiters on
  one direction, and no two operations can wait for each other: the one
  waiting as a peer owns nothing.
- The sender flushes for both: a receive that produced output while a send
  is in progress leaves it to the send (which returns only once the queue
  is empty) and keeps reading, so a peer that only reads once we have read
  is never stuck behind our flush.  Without a sender the receive flushes its
  own output before it waits for more input (the peer may need it to
  answer).  If a send ends early (cancelled, timed out) while a receive's
  output is still queued, ``notify(True)`` wakes every waiter, and the
  receive takes the flush over.

Cancellation loses nothing: plaintext is never held across a wait (a receive
returns what it decrypted at once, and OpenSSL keeps the rest), and a send
encrypts at most one record ahead of what the kernel took, reporting the
plaintext committed to the stream as ``bytes_sent``.  That ciphertext stays
queued and goes out before anything sent later.

This module imports neither asyncio nor anything that does.
"""

from __future__ import annotations

import _socket
import ssl
from operator import index

from ._core import READ, WRITE, BusyError, byte_view, report_sent

TYPE_CHECKING = False  # not typing's: see _core
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any, TypeVar

    T = TypeVar("T")
    #: A TLS step: a direction (or PEER) and the error a non-blocking call raises.
    TLSStep = tuple[int, OSError]
    TLSOp = Generator[TLSStep, None, T]

__all__ = [
    "BOTH",
    "PEER",
    "RECEIVER",
    "RECORD",
    "SENDER",
    "TLSState",
    "busy_message",
    "check_size",
    "want_read",
    "want_write",
]

#: The step that waits for another operation on the same connection (see the module docstring).
PEER = 4

#: Roles: an operation receives, sends, or (handshake, unwrap) does both alone.
RECEIVER = 1
SENDER = 2
BOTH = RECEIVER | SENDER

#: The most plaintext one TLS record carries (RFC 8446 5.1, RFC 5246 6.2.1).
RECORD = 16384

# Ciphertext read from the socket at once: a few records, one syscall.
_CHUNK = 65536

_c = _socket.socket
_c_recv = _c.recv
_c_send = _c.send
_c_shutdown = _c.shutdown
_NOSIGNAL: int = getattr(_socket, "MSG_NOSIGNAL", 0)
_PEEK: int = _socket.MSG_PEEK

_SSLWantReadError = ssl.SSLWantReadError
_SSLZeroReturnError = ssl.SSLZeroReturnError
_SSLEOFError = ssl.SSLEOFError
_SSLError = ssl.SSLError


def want_read() -> ssl.SSLWantReadError:
    """The error of a non-blocking call that would wait for input, as the stdlib's."""
    exc = _SSLWantReadError(ssl.SSL_ERROR_WANT_READ, "The operation did not complete (read)")
    _unexplained(exc)
    return exc


def want_write() -> ssl.SSLWantWriteError:
    """The error of a non-blocking call that would wait to send, as the stdlib's."""
    exc = ssl.SSLWantWriteError(ssl.SSL_ERROR_WANT_WRITE, "The operation did not complete (write)")
    _unexplained(exc)
    return exc


def check_size(size: Any) -> int:
    """``recv``'s size, with ``SSLObject.read``'s errors for a bad one, before any wait."""
    checked: int = index(size)
    if checked < 0:
        raise ValueError("size should not be negative")
    # One read returns at most one record: a larger size would only make
    # OpenSSL's wrapper allocate (and shrink) a larger buffer.
    return min(checked, RECORD)


def busy_message(what: str, busy: str, verb: str, owner: object) -> str:
    """The message of the ``BusyError`` a second receiver (or sender) gets."""
    return f"{what}() cannot {verb}: another task is already waiting in {busy}() to {verb} on {owner!r}"


def _asked(size: int, buffer: Any) -> int:
    """How many bytes a read into ``buffer`` asks for (``SSLObject.read``'s rule)."""
    with memoryview(buffer) as view:
        return size if 0 < size <= view.nbytes else view.nbytes


def _unexplained(exc: ssl.SSLError) -> None:
    # The stdlib's want errors carry no library or reason (None, where the
    # stubs allow only str).
    setattr(exc, "library", None)  # noqa: B010
    setattr(exc, "reason", None)  # noqa: B010


class TLSState:
    """One TLS connection over a native non-blocking socket: the state its operations share.

    ``notify(everyone)`` is the driver's: it wakes the operation waiting for
    a peer (``PEER``), and with ``everyone`` every operation waiting on this
    connection (a spurious wake-up, after which each one looks again).  It
    must not hold the driver's socket strongly.
    """

    __slots__ = (
        "drained",
        "ended",
        "eof",
        "flushed",
        "handshaken",
        "incoming",
        "more",
        "notify",
        "obj",
        "out",
        "outgoing",
        "peers",
        "produced",
        "r_mark",
        "reading",
        "receiving",
        "sending",
        "shut",
        "sock",
        "ssl",
        "stash",
        "suppress_ragged_eofs",
        "wait_first",
        "writing",
    )

    def __init__(
        self,
        sock: _socket.socket,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        suppress_ragged_eofs: bool,
        notify: Callable[[bool], None],
    ) -> None:
        self.sock = sock
        self.obj = obj
        #: The C object under ``obj``: the hot path calls it without
        #: ``SSLObject``'s Python wrappers, which only pass calls on.
        self.ssl: Any = getattr(obj, "_sslobj", obj)
        self.incoming = incoming
        self.outgoing = outgoing
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self.notify = notify
        #: Ciphertext produced and not yet taken by the kernel, oldest first.
        self.out = b""
        #: Ciphertext bytes ever queued and ever sent; ``r_mark``: where the
        #: receive's own output ends in that count (flushed past it: out).
        self.produced = self.flushed = self.r_mark = 0
        #: The call in progress in each role, for BusyError (None: free).
        self.receiving: str | None = None
        self.sending: str | None = None
        #: The role of the operation waiting on each direction (0: none).
        self.reading = self.writing = 0
        #: How many operations wait for a peer (PEER).
        self.peers = 0
        #: The socket's end of file was fed to OpenSSL.
        self.eof = False
        #: A receive met the end of the stream (close_notify, or an end of file).
        self.ended = False
        #: The handshake is done (``do_handshake()`` is then a no-op).
        self.handshaken = False
        #: We sent close_notify.
        self.shut = False
        #: Plaintext taken out of OpenSSL's way by close_notify, returned first.
        self.stash = b""
        #: The driver's loop keeps readiness level-triggered and renews
        #: registrations it ended: a receive may wait before trying.
        self.wait_first = False
        #: The last read from the socket emptied the kernel's buffer.
        self.drained = False
        #: OpenSSL may hold decrypted bytes (True unless the last read took less than it asked for).
        self.more = True

    # -- roles --------------------------------------------------------------

    def claim(self, role: int, what: str, owner: object) -> None:
        """Start a call in ``role``, or raise ``BusyError`` if another call holds it.

        Checked before the call does anything: a second send must not
        encrypt a byte, or its records would land among the first one's.
        ``owner`` is the socket, for the message.
        """
        if role & RECEIVER and self.receiving is not None:
            raise BusyError(busy_message(what, self.receiving, "receive", owner))
        if role & SENDER and self.sending is not None:
            raise BusyError(busy_message(what, self.sending, "send", owner))
        if role & RECEIVER:
            self.receiving = what
        if role & SENDER:
            self.sending = what

    def release(self, role: int) -> None:
        """End the call in ``role`` (whatever way it ended), and its wait if it was in one."""
        if role & RECEIVER:
            self.receiving = None
        if role & SENDER:
            self.sending = None
            if self.flushed < self.r_mark and self.receiving is not None:
                # The receive left its output to this send, which did not
                # flush it: it may be waiting for input the peer will only
                # send once it has that output.
                self.reading &= ~role
                self.writing &= ~role
                self.notify(True)
                return
        if self.reading & role or self.writing & role:
            # It ended in its wait (a timeout, a cancellation, a close).
            self.reading &= ~role
            self.writing &= ~role
        if self.peers:
            self.notify(False)

    def _changed(self) -> None:
        if self.peers:
            self.notify(False)

    # -- moving ciphertext ------------------------------------------------------

    def _take(self) -> None:
        """Queue the ciphertext OpenSSL produced."""
        data = self.outgoing.read()
        self.out = self.out + data if self.out else data
        self.produced += len(data)

    def _flush(self) -> bool:
        """Send what the kernel takes of the queue now; True once the queue is empty."""
        out = self.out
        try:
            sent = _c_send(self.sock, out, _NOSIGNAL)
        except BlockingIOError:
            return False
        self.flushed += sent
        self.out = out[sent:] if sent < len(out) else b""
        if self.peers:
            self.notify(False)
        return not self.out

    def _flush_quietly(self) -> None:
        """A flush that is a favour, not the caller's job: its errors are left to the sender."""
        try:
            self._flush()
        except OSError:
            pass

    def _feed(self, data: bytes) -> None:
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
            self.eof = True
        if self.peers:
            self.notify(False)

    def _room(self, role: int) -> TLSOp[None]:
        """Wait until the queue may be flushed further."""
        if self.writing and self.writing != role:
            self.peers += 1
            try:
                yield PEER, want_write()
            finally:
                self.peers -= 1
            return
        self.writing = role
        try:
            yield WRITE, want_write()
        finally:
            self.writing = 0
            if self.peers:
                self.notify(False)

    def _input(self, role: int, first: bool = False) -> TLSOp[None]:
        """Feed OpenSSL more ciphertext from the socket, waiting for it if need be.

        ``first``: wait for readiness before the first read (the last one
        emptied the kernel's buffer, so this one would most likely fail).
        """
        if self.reading and self.reading != role:
            # Another operation waits for input: it feeds the BIO, and that wakes us.
            self.peers += 1
            try:
                yield PEER, want_read()
            finally:
                self.peers -= 1
            return
        pending = first
        while True:
            if pending:
                self.reading = role
                try:
                    yield READ, want_read()
                finally:
                    self.reading = 0
                    if self.peers:
                        self.notify(False)
            try:
                data = _c_recv(self.sock, _CHUNK)
            except BlockingIOError:
                pending = True
                continue
            self.drained = len(data) < _CHUNK
            self._feed(data)
            return

    def _readable(self) -> bool:
        """Whether OpenSSL has something to work on without more input."""
        return bool(self.incoming.pending or self.ssl.pending() or self.eof or self.ended)

    # -- operations ---------------------------------------------------------------

    def handshake(self) -> TLSOp[None]:
        """The TLS handshake; a failure's alert is sent (without waiting) before the error leaves."""
        obj = self.obj
        while True:
            failure = None
            finished = False
            try:
                obj.do_handshake()
                finished = True
            except _SSLWantReadError:
                pass
            except _SSLError as exc:
                failure = exc
            if self.outgoing.pending:
                self._take()
            if failure is not None:
                self._flush_quietly()
                raise failure
            while self.out and not self._flush():
                yield from self._room(BOTH)
            if finished:
                self.handshaken = True
                return
            yield from self._input(BOTH)

    def recv_step(self, size: int, patient: bool, owner: object, waited: bool = False) -> Any:
        """``recv(size)`` in the common case, for a driver's own wait loop.

        Returns the plaintext (b"" at the end); or ``READ``: wait until the
        socket is readable, then call again with ``waited`` (the wait is this
        receive's: ``reading`` says so until then); or None: something
        unusual is going on (output to flush, another operation waiting for
        input, an end of file, ...), and ``receive`` does the rest.
        ``patient``: the call may wait (not in non-blocking mode), so when
        the last read emptied the kernel's buffer it waits before reading.

        The first step claims the receiving role (``BusyError`` if another
        call holds it, ``owner`` naming the socket); the role is given back
        when a step returns the plaintext or raises, and kept when it returns
        ``READ`` or None: the driver then gives it back (``release``) when its
        wait fails or ``receive`` ends.  (All in one function: calls are what
        a receive costs most in Python.)
        """
        if waited:
            self.reading = 0
            if self.peers:
                self.notify(False)
        elif self.receiving is not None:
            raise BusyError(busy_message("recv", self.receiving, "receive", owner))
        else:
            self.receiving = "recv"
        if self.out or self.stash or self.reading or self.eof or self.ended:
            return None
        incoming = self.incoming
        ssl = self.ssl
        try:
            while True:
                # (``more``: the last read filled its size; only then can
                # OpenSSL hold decrypted bytes, so only then ask it.)
                if not incoming.pending and not (self.more and ssl.pending()):
                    if patient and self.drained and self.wait_first and not waited:
                        self.reading = RECEIVER
                        return READ
                    try:
                        data = _c_recv(self.sock, _CHUNK)
                    except BlockingIOError:
                        self.drained = True
                        self.reading = RECEIVER
                        return READ
                    if not data:
                        self._feed(data)
                        return None
                    self.drained = len(data) < _CHUNK
                    incoming.write(data)
                    if self.peers:
                        self.notify(False)
                end = False
                try:
                    plain = ssl.read(size)
                except _SSLWantReadError:
                    plain = None
                except (_SSLZeroReturnError, _SSLEOFError):
                    end = True
                if end:
                    # The end: b"", or the error to raise (OpenSSL repeats it;
                    # raised here, outside the handler, it leaves unchained).
                    plain = self._read(size, None)
                if self.outgoing.pending:
                    if plain is None:
                        return None
                    plain = self._after_read(plain)
                if plain is not None:
                    self.more = len(plain) == size
                    self.receiving = None
                    if self.peers:
                        self.notify(False)
                    return plain
                waited = False  # an incomplete record: read on
        except BaseException:
            self.release(RECEIVER)
            raise

    def _read(self, size: int, buffer: Any) -> Any:
        """``SSLObject.read``: the plaintext, b"" / 0 at the end, or None if it needs input."""
        self.more = True
        try:
            plain = self.ssl.read(size) if buffer is None else self.ssl.read(size, buffer)
        except _SSLWantReadError:
            return None
        except _SSLZeroReturnError:
            # close_notify after ours: the end, as before ours.
            plain = b"" if buffer is None else 0
        except _SSLEOFError:
            self.ended = True
            if not self.suppress_ragged_eofs:
                raise
            plain = b"" if buffer is None else 0
        if not plain and (size if buffer is None else _asked(size, buffer)):
            # The end (close_notify): every later receive returns it at once,
            # with no input to wait for.
            self.ended = True
        return plain

    def _after_read(self, plain: T) -> T:
        # A read produced output: queue it, try to send it, and return the
        # plaintext at once (it must not wait on a flush: a cancellation
        # there would lose it).  Whoever comes next flushes the rest.
        self._take()
        self.r_mark = self.produced
        self.more = True
        self._flush_quietly()
        self._changed()
        return plain

    def receive(self, size: int, buffer: Any = None, patient: bool = True) -> TLSOp[Any]:
        """Decrypted bytes, at most ``size`` (or, into ``buffer``, their count); b"" / 0 at the end.

        The end is the peer's close_notify, or an end of file without it
        when ``suppress_ragged_eofs`` is true (else ``ssl.SSLEOFError``).
        ``patient``: the call may wait, so it may wait before its first read
        of the socket when the last one emptied the kernel's buffer.
        """
        first = patient and self.wait_first
        # With a buffer, the first read validates it (the stdlib's errors).
        probe = buffer is not None
        while True:
            if self.stash:
                return self._unstash(size, buffer)
            if self.out:
                if self.flushed < self.r_mark and self.sending is None:
                    # Our own output, and no sender to take it: the peer may
                    # need it before it sends what we wait for.
                    if not self._flush():
                        yield from self._room(RECEIVER)
                        continue
                else:
                    self._flush_quietly()
            if probe or self._readable():
                probe = False
                plain = self._read(size, buffer)
                if self.outgoing.pending:
                    if plain is not None:
                        return self._after_read(plain)
                    self._take()
                    self.r_mark = self.produced
                    self._changed()
                    continue
                if plain is not None:
                    return plain
            yield from self._input(RECEIVER, first and self.drained)

    def _unstash(self, size: int, buffer: Any) -> Any:
        stash = self.stash
        if buffer is None:
            self.stash = stash[size:]
            return stash[:size]
        with memoryview(buffer) as view, view.cast("B") as octets:
            count = min(size or len(octets), len(octets), len(stash))
            octets[:count] = stash[:count]
        self.stash = stash[count:]
        return count

    def send_now(self, data: Any, owner: object) -> int:
        """``sendall(data)``'s first step as a plain call, for a driver's fast path.

        Claims the sending role (``BusyError`` if another call holds it).
        Returns -1 once every byte's ciphertext is in the kernel (the role
        given back); else how many bytes of ``data`` were committed to the
        stream (0: none), the role kept: the caller goes on with
        ``send(data, done=...)`` and then gives it back (``release``).  Only
        ``bytes`` and ``bytearray`` up to one record go this way.
        """
        if self.sending is not None:
            raise BusyError(busy_message("sendall", self.sending, "send", owner))
        self.sending = "sendall"
        if self.out or (type(data) is not bytes and type(data) is not bytearray) or not 0 < len(data) <= RECORD:
            return 0
        try:
            self.ssl.write(data)
        except _SSLWantReadError:
            if self.outgoing.pending:
                self._take()
            return 0
        except BaseException:
            self.release(SENDER)
            raise
        ct = self.outgoing.read()
        self.produced += len(ct)
        try:
            sent = _c_send(self.sock, ct, _NOSIGNAL)
        except BlockingIOError:
            sent = 0
        except BaseException as exc:
            self.out = ct
            report_sent(exc, len(data))
            self.release(SENDER)
            raise
        self.flushed += sent
        if sent == len(ct):
            self.sending = None
            if self.peers:
                self.notify(False)
            return -1
        self.out = ct[sent:]
        return len(data)

    def send(self, data: Any, whole: bool = True, done: int = 0) -> TLSOp[int]:
        """Encrypt and send ``data``: all of it (``sendall``), or one record (``send``).

        Returns the number of bytes sent once their ciphertext, and everything
        queued before it, is in the kernel.  At most one record is encrypted
        ahead of what the kernel has taken; an exception leaving carries
        ``bytes_sent``, the plaintext bytes committed to the stream so far
        (``done`` of them by the driver's ``send_now``).
        """
        view = byte_view(data)
        obj = self.ssl
        with view, view.cast("B") as octets:
            total = len(octets)
            try:
                while True:
                    if self.out and not self._flush():
                        yield from self._room(SENDER)
                        continue
                    if done >= total or (done and not whole):
                        return done
                    # The same slice again after a want-read: OpenSSL wants
                    # a retried write to pass the same buffer.
                    chunk = octets[done : done + RECORD]
                    wrote = False
                    try:
                        obj.write(chunk)
                        wrote = True
                    except _SSLWantReadError:
                        pass
                    if self.outgoing.pending:
                        self._take()
                    if wrote:
                        done += len(chunk)
                        continue
                    if self.out:
                        continue  # the peer sees our half of the exchange first
                    yield from self._input(SENDER)
            except BaseException as exc:
                report_sent(exc, done)
                raise

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> TLSOp[int]:
        """Send ``file`` from ``offset`` (a read and send loop: no zero-copy under TLS).

        The file position ends just past the last byte committed, also when
        an exception (with ``bytes_sent``) leaves the call.
        """
        sent = 0
        start = offset
        try:
            # As the stdlib's send loop: offset 0 reads on from where the file is.
            if offset:
                file.seek(offset)
            elif hasattr(file, "tell"):
                start = file.tell()
            while count is None or sent < count:
                want = RECORD if count is None else min(count - sent, RECORD)
                block = file.read(want)
                if not block:
                    break
                try:
                    sent += yield from self.send(block)
                except BaseException as exc:
                    sent += getattr(exc, "bytes_sent", 0)  # what the block had committed
                    raise
            return sent
        except BaseException as exc:
            report_sent(exc, sent)
            raise
        finally:
            if sent and hasattr(file, "seek"):
                file.seek(start + sent)  # back from what was read but not committed

    def close_notify(self) -> TLSOp[None]:
        """Send close_notify (once), after everything queued; receiving may go on.

        The stdlib's ``unwrap()`` calls ``SSL_shutdown`` twice, and the second
        call reads the connection, discarding application data.  What OpenSSL
        has decrypted or not yet read is taken out of its way first and given
        back afterwards, so a receive still gets every byte.
        """
        if not self.shut:
            obj = self.obj
            saved = b""
            while self.ssl.pending():
                self.stash += self.ssl.read(self.ssl.pending())
            if self.incoming.pending and not self.eof:
                saved = self.incoming.read()
            self.shut = True
            try:
                obj.unwrap()
            except _SSLWantReadError:
                pass
            finally:
                if saved:
                    self.incoming.write(saved)
            if self.outgoing.pending:
                self._take()
        while self.out and not self._flush():
            yield from self._room(SENDER)

    def unwrap(self) -> TLSOp[None]:
        """The close_notify exchange, leaving the socket at the first byte after the peer's.

        Input is peeked, fed to OpenSSL, and only the bytes it used are then
        taken from the kernel, so whatever the peer sends in the clear after
        its close_notify stays there for the plain socket.
        """
        obj = self.obj
        self.shut = True
        incoming = self.incoming
        peeked = b""
        while True:
            finished = False
            try:
                obj.unwrap()
                finished = True
            except _SSLWantReadError:
                pass
            if peeked:
                # What OpenSSL left unread of what was peeked stays in the kernel.
                left = incoming.pending
                used = max(0, len(peeked) - left)
                if used:
                    _c_recv(self.sock, used)  # queued already: returns at once, all of it
                rest = incoming.read()
                keep = len(rest) - (len(peeked) - used)
                if keep > 0:
                    incoming.write(rest[:keep])
                peeked = b""
            if self.outgoing.pending:
                self._take()
            while self.out and not self._flush():
                yield from self._room(BOTH)
            if finished:
                return
            try:
                peeked = _c_recv(self.sock, _CHUNK, _PEEK)
            except BlockingIOError:
                self.reading = BOTH
                try:
                    yield READ, want_read()
                finally:
                    self.reading = 0
                continue
            if not peeked:
                self._feed(peeked)
            else:
                incoming.write(peeked)

    def discard_input(self) -> None:
        """Read and drop what the kernel holds, without waiting: before a close.

        Closing a TCP socket with unread input sends a reset instead of FIN,
        and the peer's kernel then throws away what it had not read yet: our
        close_notify or alert, and the last data.  (TLS 1.3 makes unread input
        common: session tickets a client never read.)  Never raises.
        """
        sock = self.sock
        try:
            for _ in range(64):
                if not _c_recv(sock, _CHUNK):
                    break
        except OSError:
            pass

    def abandon(self) -> None:
        """After a failure: send what is queued (the alert) if the kernel takes it now, end the
        sending half, and discard unread input (see ``discard_input``).  Never raises."""
        try:
            if self.outgoing.pending:
                self._take()
            if self.out:
                self._flush()
            _c_shutdown(self.sock, _socket.SHUT_WR)
        except OSError:
            pass
        self.discard_input()

