"""asock.SSLSocket: every guarantee of the plain socket, under TLS, on every backend
(asyncio, uvloop, trio).

The peers are asock itself, or a ``RawTLS`` peer whose ciphertext the test
delivers by hand (a record split across a timeout, a missing close_notify).
Interop with the stdlib's ``ssl`` and with ``openssl`` is in
test_tls_interop.py; the cancellation fuzz in test_tls_fuzz.py.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import socket as stdlib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import bytes_sent, cancelled_exc, gather, settle, tasks, wait_for
from tlshelpers import (
    RawTLS,
    ThreadPeer,
    ca,
    client_context,
    other_ca,
    pattern,
    read_exactly,
    server_context,
    tcp_pair,
    tls_pair,
)

import asock
from asock._tls import RECEIVER

RECORD = 16384


async def _quiet_read(sock: asock.socket, quiet: float = 0.5) -> bytes:
    """Everything that arrives until nothing has for ``quiet`` seconds."""
    data = bytearray()
    while True:
        chunk = None
        with anyio.move_on_after(quiet):
            chunk = await sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk


async def _echo(conn: asock.socket) -> None:
    while data := await conn.recv(65536):
        await conn.sendall(data)


# -- connections, servers, the API ----------------------------------------------


async def test_echo_through_serve_and_create_connection() -> None:
    served: list[asock.SSLSocket] = []

    async def handler(conn: asock.socket) -> None:
        assert isinstance(conn, asock.SSLSocket)
        served.append(conn)
        await _echo(conn)

    context = client_context()
    async with await asock.start_server(handler, ("127.0.0.1", 0), ssl=server_context()) as server:
        port = server.sockets[0].getsockname()[1]
        sock = await asock.create_connection(("localhost", port), timeout=10, ssl=context)
        assert isinstance(sock, asock.SSLSocket)
        try:
            payload = pattern(300_000)
            async with tasks() as tg:
                reader = tg.spawn(read_exactly, sock, len(payload))
                await sock.sendall(payload)
                assert await reader == payload
            assert sock.version() == "TLSv1.3"
            assert sock.cipher()[1] == "TLSv1.3"
            assert sock.server_hostname == "localhost"  # the host of the address
            assert sock.server_side is False and served[0].server_side is True
            assert sock.context is context
            assert ("DNS", "localhost") in sock.getpeercert()["subjectAltName"]
            assert isinstance(sock.getpeercert(binary_form=True), bytes)
            assert sock.selected_alpn_protocol() is None
            assert sock.compression() is None
            assert sock.pending() == 0
            binding = sock.get_channel_binding("tls-unique")
            assert binding and binding == served[0].get_channel_binding()  # both ends see the same
            assert sock.gettimeout() == 10
            assert repr(sock).startswith("<asock.SSLSocket fd=")
            assert "raddr=('127.0.0.1'" in repr(sock)
            await sock.do_handshake()  # done already: a no-op
            await sock.sendall(b"last")
            assert await read_exactly(sock, 4) == b"last"
        finally:
            await sock.aclose()
        assert sock.fileno() == -1
        assert "[closed]" in repr(sock)


async def test_server_hostname_is_checked_and_can_be_given() -> None:
    async with await asock.start_server(_echo, ("127.0.0.1", 0), ssl=server_context()) as server:
        port = server.sockets[0].getsockname()[1]
        # The certificate names localhost and 127.0.0.1, not this.
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await asock.create_connection(("127.0.0.1", port), ssl=client_context(), server_hostname="other.test")
        assert "Hostname mismatch" in caught.value.verify_message
        async with await asock.create_connection(("127.0.0.1", port), ssl=client_context()) as sock:
            assert isinstance(sock, asock.SSLSocket)
            assert sock.server_hostname == "127.0.0.1"
            await sock.sendall(b"by address")
            assert await read_exactly(sock, 10) == b"by address"
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await asock.create_connection(("127.0.0.1", port), server_hostname="localhost")


async def test_start_tls_takes_the_plain_socket_over() -> None:
    server_raw, client_raw = tcp_pair()
    with server_raw, client_raw:
        client_raw.settimeout(7)
        await client_raw.sendall(b"cleartext first ")
        assert await server_raw.recv(100) == b"cleartext first "
        server, client = await gather(
            asock.start_tls(server_raw, server_context(), server_side=True),
            asock.start_tls(client_raw, client_context(), server_hostname="localhost"),
        )
        with server, client:
            assert client.gettimeout() == 7
            assert server.gettimeout() is None
            # The plain objects now behave as detached.
            for old in (server_raw, client_raw):
                assert old.fileno() == -1
                with pytest.raises(OSError) as caught:
                    await old.recv(1)
                assert caught.value.errno == errno.EBADF
                with pytest.raises(OSError):
                    await old.sendall(b"x")
            await client.sendall(b"then encrypted")
            assert await read_exactly(server, 14) == b"then encrypted"
    with stdlib.socket() as plain, pytest.raises(TypeError, match=r"connected asock\.socket"):
        await asock.start_tls(plain, client_context())  # type: ignore[arg-type]


async def test_start_tls_refusals_leave_the_socket_as_it_was() -> None:
    server_raw, client_raw = tcp_pair()
    with server_raw, client_raw:
        with pytest.raises(ValueError, match="check_hostname requires server_hostname"):
            await asock.start_tls(client_raw, client_context())
        with pytest.raises(ValueError, match="server_hostname can only be specified in client mode"):
            await asock.start_tls(server_raw, server_context(), server_side=True, server_hostname="x")
        client_raw.settimeout(0)
        with pytest.raises(ValueError, match="non-blocking"):
            await asock.start_tls(client_raw, client_context(), server_hostname="localhost")
        # Nothing was taken over.
        client_raw.settimeout(None)
        await client_raw.sendall(b"still plain")
        assert await server_raw.recv(100) == b"still plain"
    with asock.socket() as unconnected:
        with pytest.raises(OSError) as caught:
            await asock.start_tls(unconnected, client_context(), server_hostname="localhost")
        assert caught.value.errno == errno.ENOTCONN
        assert unconnected.fileno() >= 0
    with asock.socket(type=asock.SOCK_DGRAM) as datagram, pytest.raises(NotImplementedError, match="only stream"):
        await asock.start_tls(datagram, client_context(), server_hostname="localhost")


async def test_methods_the_stdlib_refuses_on_tls_sockets() -> None:
    async with tls_pair() as (_, sock):
        cls = type(sock)
        with pytest.raises(ValueError, match=f"recvfrom not allowed on instances of {cls}"):
            await sock.recvfrom(10)
        with pytest.raises(ValueError, match=f"recvfrom_into not allowed on instances of {cls}"):
            await sock.recvfrom_into(bytearray(10))
        with pytest.raises(NotImplementedError, match=f"recvmsg not allowed on instances of {cls}"):
            await sock.recvmsg(10)
        with pytest.raises(NotImplementedError, match=f"recvmsg_into not allowed on instances of {cls}"):
            await sock.recvmsg_into([bytearray(10)])
        with pytest.raises(ValueError, match=f"sendto not allowed on instances of {cls}"):
            await sock.sendto(b"x", ("127.0.0.1", 9))
        with pytest.raises(NotImplementedError, match=f"sendmsg not allowed on instances of {cls}"):
            await sock.sendmsg([b"x"])
        for name, call in [
            ("recv", sock.recv(10, asock.MSG_PEEK)),
            ("recv_into", sock.recv_into(bytearray(10), 0, asock.MSG_PEEK)),
            ("send", sock.send(b"x", asock.MSG_DONTWAIT)),
            ("sendall", sock.sendall(b"x", asock.MSG_DONTWAIT)),
        ]:
            with pytest.raises(ValueError, match=rf"non-zero flags not allowed in calls to {name}\(\) on {cls}"):
                await call
        with pytest.raises(NotImplementedError, match="Can't dup"):
            sock.dup()
        with pytest.raises(ValueError, match="already-connected"):
            await sock.connect(("127.0.0.1", 9))
        with pytest.raises(ValueError, match="size should not be negative"):
            await sock.recv(-1)
        with pytest.raises(TypeError):
            await sock.recv("10")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="read-write bytes-like object"):
            await sock.recv_into(b"immutable")
        with pytest.raises(TypeError, match="a bytes-like object is required, not 'str'"):
            await sock.sendall("text")
        assert await sock.recv(0) == b""  # at once, with nothing to read
        assert await sock.send(b"") == 0


async def test_queries_after_close_and_closed_calls() -> None:
    async with tls_pair() as (server, client):
        await server.sendall(b"x")
        assert await client.recv(10) == b"x"  # and the session tickets before it
        client.close()
        client.close()  # idempotent
        assert client.fileno() == -1
        assert client.version() is None and client.cipher() is None and client.session is None
        assert client.pending() == 0
        assert client.server_hostname == "localhost"
        assert client.get_channel_binding() is None
        for call in (client.recv(10), client.sendall(b"x"), client.recv_into(bytearray(5)), client.unwrap()):
            with pytest.raises(OSError) as caught:
                await call
            assert caught.value.errno == errno.EBADF
        with pytest.raises(OSError):
            client.getpeercert()
        await client.aclose()  # closed already: nothing to do
        # close() sends no close_notify: the peer sees an end without it.
        server._tls.suppress_ragged_eofs = False
        with pytest.raises(ssl.SSLEOFError):
            await server.recv(10)


async def test_an_unclosed_tls_socket_warns() -> None:
    server_raw, client_raw = tcp_pair()
    server, client = await gather(
        asock.start_tls(server_raw, server_context(), server_side=True),
        asock.start_tls(client_raw, client_context(), server_hostname="localhost"),
    )
    server.close()
    with pytest.warns(ResourceWarning, match=r"unclosed <asock\.SSLSocket fd="):
        del client
        gc.collect()


# -- timeouts and cancellation lose nothing ---------------------------------------


async def test_a_recv_that_times_out_keeps_a_half_received_record() -> None:
    server_raw, client_raw = tcp_pair()
    with server_raw, client_raw:
        peer = RawTLS(server_raw, server_context(), server_side=True)
        _, client = await gather(
            peer.handshake(), asock.start_tls(client_raw, client_context(), server_hostname="localhost")
        )
        with client:
            record = peer.encrypt(b"split across a timeout")
            await server_raw.sendall(record[:10])
            client.settimeout(0.2)
            started = time.monotonic()
            with pytest.raises(TimeoutError, match=r"^timed out$"):
                await client.recv(100)
            assert time.monotonic() - started >= 0.19
            await server_raw.sendall(record[10:])
            assert await client.recv(100) == b"split across a timeout"
            # Cancelled the same way (a task cancelled while it waits).
            record = peer.encrypt(b"and across a cancellation")
            await server_raw.sendall(record[:-1])
            client.settimeout(None)
            async with tasks() as tg:
                waiting = tg.spawn(client.recv, 100)
                await settle(waiting)
                waiting.cancel()
                with pytest.raises(cancelled_exc()):
                    await waiting
            await server_raw.sendall(record[-1:])
            assert await client.recv(100) == b"and across a cancellation"


async def test_cancelled_recv_leaves_decrypted_bytes_for_the_next() -> None:
    async with tls_pair() as (server, client):
        await server.sendall(b"0123456789" * 10)
        assert await client.recv(10) == b"0123456789"
        assert client.pending() == 90  # decrypted, held by OpenSSL
        # A receive under a deadline that completes at once is not cancelled;
        # one that has to wait is, and takes nothing.
        assert await wait_for(client.recv(30), 1) == b"0123456789" * 3
        assert await client.recv(60) == b"0123456789" * 6
        with pytest.raises(TimeoutError):
            await wait_for(client.recv(10), 0.05)
        await server.sendall(b"next")
        assert await client.recv(10) == b"next"


@pytest.mark.parametrize("interruption", ["timeout", "cancel"])
async def test_interrupted_sendall_reports_committed_bytes_and_the_stream_goes_on(interruption: str) -> None:
    payload = pattern(6_000_000)
    async with tls_pair(shrink=True) as (server, client):
        # The server reads nothing yet: the kernel's buffers fill up.
        if interruption == "timeout":
            client.settimeout(0.5)
            with pytest.raises(TimeoutError) as caught:
                await client.sendall(payload)
            sent = bytes_sent(caught.value)
        else:
            async with tasks() as tg:
                sending = tg.spawn(client.sendall, payload)
                await anyio.sleep(0.5)
                sending.cancel()
                with pytest.raises(cancelled_exc()) as cancelled:
                    await sending
            sent = bytes_sent(cancelled.value)
        assert 0 < sent < len(payload)
        # Committed bytes are in the kernel, but for at most about one record
        # (plus what a record carries) held in asock's own buffer.
        early = await _quiet_read(server)
        assert early == payload[: len(early)]
        assert sent - RECORD <= len(early) <= sent
        # The rest of the committed ciphertext goes out before the next send.
        client.settimeout(10)
        await client.sendall(b"<after>")
        rest = await read_exactly(server, sent - len(early) + 7)
        assert early + rest == payload[:sent] + b"<after>"
        await client.sendall(b"<and more>")
        assert await read_exactly(server, 10) == b"<and more>"


@pytest.mark.parametrize("call", ["sendall", "send", "sendfile"])
async def test_a_send_cancelled_before_its_first_byte_carries_bytes_sent(call: str, tmp_path: Path) -> None:
    """Cancelled in the fairness yield a busy connection makes before it starts."""
    path = tmp_path / "payload"
    path.write_bytes(b"z" * 100)
    async with tls_pair() as (server, client):
        with path.open("rb") as file:
            client._ticks = 1 << 20  # the budget is spent: the call yields first
            caught: BaseException | None = None
            with anyio.CancelScope() as scope:
                scope.cancel()
                try:
                    if call == "sendall":
                        await client.sendall(b"z" * 100)
                    elif call == "send":
                        await client.send(b"z" * 100)
                    else:
                        await client.sendfile(file)
                except cancelled_exc() as exc:
                    caught = exc
                    raise
            assert scope.cancelled_caught
            assert caught is not None and caught.bytes_sent == 0  # type: ignore[attr-defined]
            assert file.tell() == 0
        # Nothing went: the stream goes on with the next send.
        await client.sendall(b"next")
        assert await read_exactly(server, 4) == b"next"


async def test_the_handshake_is_bounded_by_the_socket_timeout() -> None:
    server_raw, client_raw = tcp_pair()
    with server_raw, client_raw:
        client_raw.settimeout(0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"^timed out$"):
            await asock.start_tls(client_raw, client_context(), server_hostname="localhost")  # nobody answers
        assert 0.29 <= time.monotonic() - started < 2
        assert client_raw.fileno() == -1
        # The connection was closed: the silent peer sees the ClientHello, then the end.
        hello = await _quiet_read(server_raw, 1)
        assert hello[:1] == b"\x16"  # a handshake record


async def test_create_connection_timeout_bounds_connect_and_handshake() -> None:
    with asock.create_server(("127.0.0.1", 0)) as listener:  # accepts (in the kernel), never answers
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"^timed out$"):
            await asock.create_connection(listener.getsockname(), timeout=0.4, ssl=client_context(),
                                          server_hostname="localhost")  # fmt: skip
        assert 0.39 <= time.monotonic() - started < 2
        conn, _ = await listener.accept()
        with conn:
            assert (await _quiet_read(conn, 1))[:1] == b"\x16"


# -- failed handshakes ---------------------------------------------------------------


async def test_a_failed_verification_alerts_the_peer() -> None:
    server_raw, client_raw = tcp_pair()
    with server_raw, client_raw:
        server_side, client_side = await gather(
            asock.start_tls(server_raw, server_context(issuer=other_ca()), server_side=True),
            asock.start_tls(client_raw, client_context(), server_hostname="localhost"),
            return_exceptions=True,
        )
    assert isinstance(client_side, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in client_side.verify_message
    # The server got the client's alert: an ssl error naming it, not a reset or a bare end.
    assert isinstance(server_side, ssl.SSLError), server_side
    assert not isinstance(server_side, (ssl.SSLEOFError, ConnectionResetError))
    assert "alert unknown ca" in str(server_side)
    assert client_raw.fileno() == -1 and server_raw.fileno() == -1


async def test_a_missing_client_certificate_is_refused_with_an_alert() -> None:
    server_raw, client_raw = tcp_pair()
    with server_raw, client_raw:
        server_side, client = await gather(
            asock.start_tls(server_raw, server_context(require_client_cert=True), server_side=True),
            asock.start_tls(client_raw, client_context(), server_hostname="localhost"),
            return_exceptions=True,
        )
    assert isinstance(server_side, ssl.SSLError)
    assert "certificate" in str(server_side)
    # TLS 1.3: the client's handshake completes before the server has checked
    # it; the server's alert arrives with the first receive.
    assert isinstance(client, asock.SSLSocket)
    with client, pytest.raises(ssl.SSLError, match="alert certificate required"):
        await client.recv(10)


# -- fairness ------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["recv", "recv_into"])
async def test_a_fast_reader_lets_other_tasks_run(call: str) -> None:
    total = 100_000
    async with tls_pair() as (server, client):
        await server.sendall(pattern(total))  # every receive completes at once, most from OpenSSL's buffer
        ran_at: list[int] = []
        got = bytearray()

        async def other() -> None:
            ran_at.append(len(got))

        async with tasks() as tg:
            task = tg.spawn(other)
            buffer = bytearray(100)
            while len(got) < total:
                if call == "recv":
                    got += await client.recv(100)
                else:
                    got += buffer[: await client.recv_into(buffer)]
            await task
        assert ran_at and ran_at[0] < total, "the reader starved the other task"
        assert got == pattern(total)


@pytest.mark.parametrize("call", ["sendall", "send"])
async def test_a_fast_writer_lets_other_tasks_run(call: str) -> None:
    async with tls_pair() as (server, client):
        ran_at: list[int] = []
        sent = 0

        async def other() -> None:
            ran_at.append(sent)

        async with tasks() as tg:
            task = tg.spawn(other)
            while not ran_at and sent < 1000:  # a record each, which the kernel takes at once
                if call == "sendall":
                    await client.sendall(b"y")
                else:
                    assert await client.send(b"y") == 1
                sent += 1
            await task
        assert ran_at and ran_at[0] < 1000, "the writer starved the other task"
        assert await read_exactly(server, sent) == b"y" * sent


# -- close, one waiter per direction, non-blocking mode ---------------------------------


async def test_close_wakes_the_receiver_and_the_blocked_sender() -> None:
    async with tls_pair(shrink=True) as (_, client), tasks() as tg:
        receiving = tg.spawn(client.recv, 100)
        sending = tg.spawn(client.sendall, pattern(4_000_000))
        await settle(receiving, sending)
        client.close()
        for task in (receiving, sending):
            with pytest.raises(OSError) as caught:
                await wait_for(task.wait(), 1)
            assert caught.value.errno == errno.EBADF
        assert 0 < bytes_sent(caught.value) < 4_000_000


async def test_a_second_receiver_gets_busy_error() -> None:
    async with tls_pair() as (server, client), tasks() as tg:
        first = tg.spawn(client.recv, 100)
        await settle(first)
        with pytest.raises(asock.BusyError, match=r"^recv\(\) cannot receive: another task is already waiting in "
                           r"recv\(\) to receive on <asock\.SSLSocket fd="):  # fmt: skip
            await client.recv(100)
        with pytest.raises(asock.BusyError, match=r"recv_into\(\) cannot receive"):
            await client.recv_into(bytearray(10))
        with pytest.raises(asock.BusyError, match=r"unwrap\(\) cannot receive"):
            await client.unwrap()
        await server.sendall(b"for the first")
        assert await first == b"for the first"


async def test_a_second_sender_is_refused_before_a_byte_is_encrypted() -> None:
    payload = pattern(3_000_000)
    async with tls_pair(shrink=True) as (server, client):
        async with tasks() as tg:
            first = tg.spawn(client.sendall, payload)
            await settle(first)
            with open(os.devnull, "rb") as empty:
                for call in (client.sendall(b"X" * 1000), client.send(b"Y"), client.sendfile(empty)):
                    busy = r"cannot send: another task is already waiting in sendall"
                    with pytest.raises(asock.BusyError, match=busy):
                        await call
            reader = tg.spawn(read_exactly, server, len(payload))
            await first
            assert await reader == payload
        # Nothing of the refused sends ever reached the stream.
        await client.sendall(b"<end>")
        assert await read_exactly(server, 5) == b"<end>"


async def test_non_blocking_mode_raises_the_ssl_want_errors() -> None:
    async with tls_pair(shrink=True) as (server, client):
        client.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError, match="did not complete"):
            await client.recv(10)
        await server.sendall(b"ready")
        await anyio.sleep(0.05)
        assert await client.recv(10) == b"ready"
        sent = 0
        with pytest.raises(ssl.SSLWantWriteError, match="did not complete") as caught:
            while True:
                sent += await client.send(pattern(RECORD))
        assert caught.value.bytes_sent in (0, RECORD)  # a record encrypted before the kernel refused
        sent += caught.value.bytes_sent
        with pytest.raises(ssl.SSLWantWriteError):
            await client.sendall(b"more")
        with open(os.devnull, "rb") as empty, pytest.raises(ValueError, match="non-blocking sockets are not supported"):
            await client.sendfile(empty)
        client.setblocking(True)
        async with tasks() as tg:
            reader = tg.spawn(read_exactly, server, sent)
            await client.sendall(b"")  # flushes what is queued
            assert await reader == pattern(RECORD) * (sent // RECORD)


def _bare(exc: BaseException) -> BaseException:
    """``exc``, after checking that nothing is chained to it (the stdlib's exceptions leave bare)."""
    assert exc.__context__ is None, f"{exc!r} is chained to {exc.__context__!r}"
    assert exc.__cause__ is None and exc.__suppress_context__ is False, exc
    return exc


async def test_exceptions_leave_unchained() -> None:
    async with tls_pair(shrink=True, suppress_ragged_eofs=False) as (_, client):
        client.settimeout(0.05)
        with pytest.raises(TimeoutError) as caught:
            await client.recv(10)
        _bare(caught.value)
        with pytest.raises(TimeoutError) as caught:
            await client.recv_into(bytearray(10))
        _bare(caught.value)
        client.settimeout(0)
        with pytest.raises(ssl.SSLWantReadError) as caught:
            await client.recv(10)
        _bare(caught.value)
        with pytest.raises(TypeError) as caught:
            await client.sendall("text")
        _bare(caught.value)
        client.settimeout(0.2)
        with pytest.raises(TimeoutError) as caught:
            await client.sendall(pattern(4_000_000))
        _bare(caught.value)
        client.settimeout(None)
        async with tasks() as tg:
            waiting = tg.spawn(client.recv, 10)
            await settle(waiting)
            with pytest.raises(asock.BusyError) as busy:
                await client.recv(10)
            _bare(busy.value)
            client.close()
            with pytest.raises(OSError) as closed:
                await waiting
        _bare(closed.value)
        server_raw, client_raw = tcp_pair()
        with server_raw, client_raw:
            client_raw.settimeout(0.1)
            with pytest.raises(TimeoutError) as caught:
                await asock.start_tls(client_raw, client_context(), server_hostname="localhost")
            _bare(caught.value)
        server_raw, client_raw = tcp_pair()
        with server_raw, client_raw:
            failures = await gather(
                asock.start_tls(server_raw, server_context(issuer=other_ca()), server_side=True),
                asock.start_tls(client_raw, client_context(), server_hostname="localhost"),
                return_exceptions=True,
            )
        for failure in failures:
            assert isinstance(failure, ssl.SSLError)
            _bare(failure)
    server_raw, client_raw = tcp_pair()
    with client_raw:
        peer = RawTLS(server_raw, server_context(), server_side=True)
        _, client = await gather(
            peer.handshake(),
            asock.start_tls(client_raw, client_context(), server_hostname="localhost", suppress_ragged_eofs=False),
        )
        with client:
            server_raw.close()
            with pytest.raises(ssl.SSLEOFError) as eof:
                await client.recv(10)
            _bare(eof.value)


# -- the end of the stream ----------------------------------------------------------


@pytest.mark.parametrize("suppress", [True, False])
async def test_an_end_without_close_notify(suppress: bool) -> None:
    server_raw, client_raw = tcp_pair()
    with client_raw:
        peer = RawTLS(server_raw, server_context(), server_side=True)
        _, client = await gather(
            peer.handshake(),
            asock.start_tls(client_raw, client_context(), server_hostname="localhost", suppress_ragged_eofs=suppress),
        )
        with client:
            await server_raw.sendall(peer.encrypt(b"last words"))
            server_raw.close()  # no close_notify: a truncation attack looks the same
            assert await client.recv(100) == b"last words"
            if suppress:
                assert await client.recv(100) == b""
                assert await client.recv_into(bytearray(10)) == 0
            else:
                with pytest.raises(ssl.SSLEOFError):
                    await client.recv(100)


async def test_the_end_stays_the_end_while_the_peer_keeps_the_connection_open() -> None:
    server_raw, client_raw = tcp_pair()
    with server_raw, client_raw:
        peer = RawTLS(server_raw, server_context(), server_side=True)
        _, client = await gather(
            peer.handshake(),
            asock.start_tls(client_raw, client_context(), server_hostname="localhost", suppress_ragged_eofs=False),
        )
        with client:
            await server_raw.sendall(peer.encrypt(b"before the end"))
            with pytest.raises(ssl.SSLWantReadError):
                peer.obj.unwrap()  # close_notify, and the TCP connection stays open
            await peer.flush()
            assert await client.recv(100) == b"before the end"
            for _ in range(3):  # at once every time, with nothing to wait for
                assert await wait_for(client.recv(100), 1) == b""
                assert await wait_for(client.recv_into(bytearray(10)), 1) == 0
            # TLS 1.3: the peer's close_notify ends its half only.
            await client.sendall(b"still heard")
            assert await peer.receive() == b"still heard"


async def test_aclose_sends_close_notify_and_the_peer_reads_a_clean_end() -> None:
    async with tls_pair(suppress_ragged_eofs=False) as (server, client):
        await server.sendall(b"bye")
        await server.aclose()
        assert server.fileno() == -1
        assert await client.recv(100) == b"bye"
        assert await client.recv(100) == b""  # close_notify: no SSLEOFError
        assert await client.recv(100) == b""


async def test_aclose_is_bounded_by_the_timeout() -> None:
    async with tls_pair(shrink=True) as (_, client):
        client.settimeout(0.3)
        with pytest.raises(TimeoutError):
            await client.sendall(pattern(4_000_000))  # the server reads nothing
        started = time.monotonic()
        await client.aclose()  # close_notify cannot get through: it gives up after the timeout
        assert time.monotonic() - started < 2
        assert client.fileno() == -1


# -- full duplex: a receive that must send, a send that must wait for it ----------------


def _post_handshake_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """TLS 1.3 post-handshake client authentication: the server asks for the client's
    certificate mid-stream, and the client's *receive* must then send it."""
    server_ctx = server_context()
    ca().configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.post_handshake_auth = True
    client_ctx = client_context(with_cert=True)
    client_ctx.post_handshake_auth = True
    return server_ctx, client_ctx


def _client_email(cert: dict[str, object] | None) -> str:
    assert cert is not None
    return str(dict(cert["subjectAltName"]).get("email"))  # type: ignore[call-overload]


@contextlib.contextmanager
def _no_room(sock: asock.socket) -> Iterator[None]:
    """The kernel takes nothing more from ``sock`` (the send buffer at its minimum, below
    what is queued), however much room acknowledgements free meanwhile.

    A send to a peer that reads nothing leaves room in the kernel now and
    then: acknowledgements keep coming (with the peer's own data, or
    delayed), and room below the writability threshold wakes no sender.
    The tests of a receive's output behind a blocked sender must not depend
    on that room, which the output would fit in.
    """
    size = sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF)
    sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, 1)
    try:
        yield
    finally:
        if sock.fileno() >= 0:
            sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_SNDBUF, size // 2)  # the kernel doubles it


async def test_a_receive_leaves_its_output_to_a_blocked_sender_and_goes_on() -> None:
    payload = pattern(3_000_000)
    async with tls_pair(*_post_handshake_contexts(), shrink=True) as (server, client), tasks() as tg:
        sending = tg.spawn(client.sendall, payload)
        await settle(sending)  # the server reads nothing: the send waits for room
        assert server.getpeercert() is None
        with _no_room(client):
            server.verify_client_post_handshake()
            await server.sendall(b"who are you?")  # carries the certificate request
            # Reading the request makes the client's receive produce its
            # certificate; it queues it behind the blocked send (which will carry
            # it) and returns the data instead of waiting for room.
            assert await wait_for(client.recv(100), 5) == b"who are you?"
            assert not sending.done()
            tls = client._tls
            assert tls.flushed < tls.r_mark  # the certificate is queued, for the sender to flush
        reading = tg.spawn(client.recv, 100)
        await settle(reading, sending)  # both directions wait, each on its own
        received = await read_exactly(server, len(payload))
        await wait_for(sending.wait(), 5)
        assert received == payload
        assert _client_email(server.getpeercert()) == "client@example.org"
        await server.sendall(b"welcome")
        assert await reading == b"welcome"


@pytest.mark.parametrize("ending", ["the peer reads", "close"])
async def test_a_send_waits_for_a_receive_that_flushes_its_own_output(ending: str) -> None:
    async with tls_pair(*_post_handshake_contexts(), shrink=True) as (server, client), tasks() as tg:
        client.settimeout(0.5)
        with pytest.raises(TimeoutError) as caught:
            await client.sendall(pattern(4_000_000))  # fills the kernel's buffers
        sent = bytes_sent(caught.value)
        client.settimeout(None)
        with _no_room(client):
            server.verify_client_post_handshake()
            await server.sendall(b"who are you?")
            assert await client.recv(100) == b"who are you?"
            # No sender now: the next receive sends its certificate first (the
            # peer may need it to go on), waiting for room.
            receiving = tg.spawn(client.recv, 100)
            await settle(receiving)
            # A send must come after that output: it waits for the receive's
            # flush (not for the descriptor, which the receive is waiting on).
            sending = tg.spawn(client.sendall, b"<tail>")
            await settle(receiving, sending)
            tls = client._tls
            assert (tls.writing, tls.peers) == (RECEIVER, 1)  # the receive waits on the descriptor, the send on it
        if ending == "close":
            client.close()
            for task in (receiving, sending):
                with pytest.raises(OSError) as closed:
                    await wait_for(task.wait(), 1)
                assert closed.value.errno == errno.EBADF
            return
        received = await read_exactly(server, sent + 6)
        assert received == pattern(4_000_000)[:sent] + b"<tail>"
        await wait_for(sending.wait(), 5)
        assert _client_email(server.getpeercert()) == "client@example.org"
        await server.sendall(b"done")
        assert await wait_for(receiving.wait(), 5) == b"done"


async def test_full_duplex_bulk_both_ways() -> None:
    up, down = pattern(2_000_000, 1), pattern(2_000_000, 2)
    async with tls_pair(shrink=True) as (server, client):
        results = await wait_for(
            gather(
                client.sendall(up),
                read_exactly(server, len(up)),
                server.sendall(down),
                read_exactly(client, len(down)),
            ),
            30,
        )
        assert results[1] == up and results[3] == down


# -- sessions, SNI, ALPN, client certificates, versions ----------------------------------


async def test_session_resumption() -> None:
    server_ctx, client_ctx = server_context(), client_context()
    async with tls_pair(server_ctx, client_ctx) as (server, client):
        await server.sendall(b"ticket")  # TLS 1.3 tickets come after the handshake
        assert await client.recv(10) == b"ticket"
        session = client.session
        assert session is not None and session.has_ticket
        assert not client.session_reused
    async with tls_pair(server_ctx, client_ctx, session=session) as (server, client):
        assert client.session_reused and server.session_reused
        await client.sendall(b"resumed")
        assert await server.recv(10) == b"resumed"


async def test_sni_alpn_and_client_certificates() -> None:
    seen: list[str | None] = []
    server_ctx = server_context(require_client_cert=True)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    server_ctx.sni_callback = lambda obj, name, ctx: seen.append(name)  # type: ignore[assignment,misc]
    client_ctx = client_context(with_cert=True)
    client_ctx.set_alpn_protocols(["http/1.1"])
    async with tls_pair(server_ctx, client_ctx) as (server, client):
        assert seen == ["localhost"]
        assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "http/1.1"
        assert _client_email(server.getpeercert()) == "client@example.org"
        await client.sendall(b"mutual")
        assert await server.recv(10) == b"mutual"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["1.2", "1.3"])
async def test_pinned_versions(version: ssl.TLSVersion) -> None:
    name = "TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
    async with tls_pair(server_context(version=version), client_context(version=version), shrink=True) as (s, c):
        assert s.version() == c.version() == name
        payload = pattern(500_000)
        echoed, _, _ = await gather(read_exactly(c, len(payload)), c.sendall(payload), _echo_n(s, len(payload)))
        assert echoed == payload
        if version == ssl.TLSVersion.TLSv1_2:
            assert len(c.get_channel_binding("tls-unique") or b"") == 12
    with pytest.raises(ssl.SSLError):
        async with tls_pair(server_context(version=ssl.TLSVersion.TLSv1_3),
                            client_context(version=ssl.TLSVersion.TLSv1_2)):  # fmt: skip
            pass


async def _echo_n(sock: asock.socket, n: int) -> None:
    while n:
        data = await sock.recv(min(n, 65536))
        await sock.sendall(data)
        n -= len(data)


# -- STARTTLS: cleartext, TLS, cleartext again -------------------------------------------


async def test_starttls_there_and_back() -> None:
    a_raw, b_raw = tcp_pair()
    with a_raw, b_raw:
        await a_raw.sendall(b"EHLO\r\n")
        assert await b_raw.recv(100) == b"EHLO\r\n"
        await b_raw.sendall(b"220 go ahead\r\n")
        assert await a_raw.recv(100) == b"220 go ahead\r\n"
        b, a = await gather(
            asock.start_tls(b_raw, server_context(), server_side=True),
            asock.start_tls(a_raw, client_context(), server_hostname="localhost"),
        )
    with a, b:
        await a.sendall(b"secret from a")
        assert await read_exactly(b, 13) == b"secret from a"
        await b.sendall(b"secret from b")
        assert await read_exactly(a, 13) == b"secret from b"

        async def b_side() -> asock.socket:
            assert await b.recv(100) == b""  # a's close_notify
            plain = await b.unwrap()
            # In the clear at once, while a may still be reading b's close_notify:
            # its unwrap must not swallow this.
            await plain.sendall(b"clear from b")
            return plain

        a_plain, b_plain = await gather(a.unwrap(), b_side())
    with a_plain, b_plain:
        assert type(a_plain) is asock.socket and type(b_plain) is asock.socket
        assert a.fileno() == -1 and b.fileno() == -1
        assert await read_exactly(a_plain, 12) == b"clear from b"
        await a_plain.sendall(b"clear from a")
        assert await read_exactly(b_plain, 12) == b"clear from a"
        a_plain.shutdown(asock.SHUT_WR)
        assert await b_plain.recv(100) == b""


# -- serve(ssl=...) -------------------------------------------------------------------


async def test_serve_goes_on_while_clients_fail_their_handshakes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asock.serve")
    handled: list[bytes] = []

    async def handler(conn: asock.socket) -> None:
        data = await conn.recv(100)
        handled.append(data)
        await conn.sendall(data.upper())

    server = await asock.start_server(handler, ("127.0.0.1", 0), ssl=server_context(), ssl_handshake_timeout=0.5)
    async with server:
        address = server.sockets[0].getsockname()

        async def good(text: bytes) -> None:
            async with await asock.create_connection(address, timeout=5, ssl=client_context(),
                                                     server_hostname="localhost") as sock:  # fmt: skip
                await sock.sendall(text)
                assert await read_exactly(sock, len(text)) == text.upper()

        async def wrong_ca() -> None:
            with pytest.raises(ssl.SSLCertVerificationError):
                await asock.create_connection(address, timeout=5, ssl=client_context(trust=other_ca()),
                                              server_hostname="localhost")  # fmt: skip

        async def plain_text() -> None:
            async with await asock.create_connection(address, timeout=5) as sock:
                await sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                await _quiet_read(sock, 3)  # the server closes it (maybe after an alert)

        async def stall() -> None:
            async with await asock.create_connection(address, timeout=5) as sock:
                started = time.monotonic()
                assert await _quiet_read(sock, 3) == b""  # closed by the server
                assert 0.4 < time.monotonic() - started < 2.5

        await gather(good(b"first"), stall(), wrong_ca(), plain_text(), good(b"second"))
        await good(b"third")
        assert sorted(handled) == [b"first", b"second", b"third"]
        for _ in range(50):
            if server.active_connections == 0:
                break
            await anyio.sleep(0.02)
        assert server.active_connections == 0
        assert server.is_serving()
    failures = [r.getMessage() for r in caplog.records if r.name == "asock.serve" and "TLS handshake" in r.getMessage()]
    assert len(failures) == 3, failures
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "TLS handshake" in r.getMessage())
    assert any("timed out" in message for message in failures)
    assert any("alert unknown ca" in message for message in failures)


async def test_serve_refuses_bad_tls_arguments() -> None:
    with pytest.raises(TypeError, match=r"ssl must be an ssl\.SSLContext"):
        await asock.start_server(_echo, ("127.0.0.1", 0), ssl=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ssl_handshake_timeout must be a positive number"):
        await asock.start_server(_echo, ("127.0.0.1", 0), ssl=server_context(), ssl_handshake_timeout=0)


# -- streams, anyio, sendfile ------------------------------------------------------------


async def test_open_connection_and_stream_over_tls() -> None:
    ended: list[bytes] = []

    async def handler(conn: asock.socket) -> None:
        conn._tls.suppress_ragged_eofs = False  # type: ignore[attr-defined]
        stream = asock.Stream(conn)
        async for line in stream:
            await stream.write(line.upper())
        ended.append(await conn.recv(10))  # the client's close_notify: a clean end, no SSLEOFError

    async with await asock.start_server(handler, ("127.0.0.1", 0), ssl=server_context()) as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asock.open_connection("localhost", port, ssl=client_context())
        await writer.write(b"abc\n")
        assert await reader.readline() == b"ABC\n"
        sock = reader.socket
        assert isinstance(sock, asock.SSLSocket)
        assert writer.get_extra_info("ssl_object") is sock
        assert writer.get_extra_info("cipher")[1] == "TLSv1.3"
        assert writer.get_extra_info("peercert")["subjectAltName"]
        assert writer.get_extra_info("sslcontext") is sock.context
        assert not writer.can_write_eof()
        with pytest.raises(NotImplementedError):
            writer.write_eof()
        async with asock.Stream(sock) as stream:
            await stream.write(b"hello\nworld\n")
            assert await stream.readexactly(3) == b"HEL"
            assert await stream.readline() == b"LO\n"
            assert await stream.readline() == b"WORLD\n"
        assert sock.fileno() == -1
        for _ in range(100):
            if ended:
                break
            await anyio.sleep(0.01)
    assert ended == [b""]


async def test_anyio_adapter_over_tls() -> None:
    from asock.anyio import AsockSocketStream

    async with tls_pair() as (server, client):
        stream = AsockSocketStream(client)
        await stream.send(b"through anyio")
        assert await read_exactly(server, 13) == b"through anyio"
        await server.sendall(b"back")
        assert await stream.receive() == b"back"
        await server.aclose()
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await stream.aclose()


async def test_sendfile_over_tls(tmp_path: Path) -> None:
    content = pattern(300_000, 5)
    path = tmp_path / "payload"
    path.write_bytes(content)
    async with tls_pair() as (server, client):
        with path.open("rb") as file:
            async with tasks() as tg:
                reader = tg.spawn(read_exactly, server, 100_000)
                assert await client.sendfile(file, 1000, 100_000) == 100_000
                assert await reader == content[1000:101_000]
                assert file.tell() == 101_000
                # Offset 0 means "from where the file is", as the stdlib's send loop reads it.
                reader = tg.spawn(read_exactly, server, len(content) - 101_000)
                assert await client.sendfile(file) == len(content) - 101_000
                assert await reader == content[101_000:]
                assert file.tell() == len(content)
        with pytest.raises(ValueError, match="binary mode"), path.open("r") as text:
            await client.sendfile(text)


# -- the core without asyncio ---------------------------------------------------------------


def test_the_tls_core_imports_no_asyncio() -> None:
    code = "import sys, asock._tls; print(sorted(m for m in sys.modules if m.split('.')[0] in ('asyncio', 'trio')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_tls_core_runs_with_a_blocking_waiter() -> None:
    """The operations are the driver-independent core: here a waiter that blocks in
    poll (as the sync facade's does) runs them, against a stdlib peer in a thread."""
    import _socket
    import select

    from asock import _core
    from asock._tls import BOTH, RECEIVER, SENDER, TLSState

    async def wait(direction: int, when: float | None, what: object) -> None:
        poller = select.poll()
        poller.register(native.fileno(), select.POLLIN if direction == _core.READ else select.POLLOUT)
        poller.poll(None if when is None else max(0, int((when - time.monotonic()) * 1000) + 1))

    def run(op: Any) -> Any:
        return _core.run_sync(_core.drive(op, wait, "test", 10.0))

    def echo(tls: ssl.SSLSocket) -> None:
        while data := tls.recv(65536):
            tls.sendall(data)

    theirs, ours = tcp_pair()
    peer = ThreadPeer(stdlib.socket(fileno=theirs.detach()), server_context(), True, echo)
    native = _socket.socket(fileno=ours.detach())
    try:
        native.setblocking(False)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
        tls = TLSState(native, obj, incoming, outgoing, True, lambda everyone: None)
        tls.claim(BOTH, "do_handshake", None)
        run(tls.handshake())
        tls.release(BOTH)
        payload = pattern(200_000)
        tls.claim(SENDER, "sendall", None)
        run(tls.send(payload))
        tls.release(SENDER)
        echoed = bytearray()
        tls.claim(RECEIVER, "recv", None)
        while len(echoed) < len(payload):
            echoed += run(tls.receive(65536))
        tls.release(RECEIVER)
        assert bytes(echoed) == payload
        tls.claim(SENDER, "close", None)
        run(tls.close_notify())
        tls.release(SENDER)
        peer.outcome()  # the stdlib saw our close_notify: its recv returned b""
    finally:
        native.close()
