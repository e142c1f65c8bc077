"""asock.anyio: asock sockets as anyio SocketStream / SocketListener, on every backend.

They run on every loop the suite runs on (asyncio's default loop, uvloop, and
trio in anyio mode): anyio detects the running library, so its cancel scopes,
task groups and streams run there.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from helpers import cancelled_exc, settle, tasks

anyio = pytest.importorskip("anyio")

from anyio.abc import SocketAttribute  # noqa: E402
from anyio.streams.buffered import BufferedByteReceiveStream  # noqa: E402
from anyio.streams.tls import TLSStream  # noqa: E402

import asock  # noqa: E402
from asock.anyio import AsockSocketListener, AsockSocketStream, connect_tcp  # noqa: E402


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[AsockSocketStream, AsockSocketStream]]:
    """Two connected streams over loopback TCP (client, server)."""
    with asock.create_server(("127.0.0.1", 0)) as listener:
        client = await connect_tcp(*listener.getsockname(), timeout=10)
        conn, _ = await listener.accept()
    server = AsockSocketStream(conn)
    try:
        yield client, server
    finally:
        await client.aclose()
        await server.aclose()


async def test_send_receive_and_eof() -> None:
    async with tcp_pair() as (client, server):
        await client.send(b"hello")
        assert await server.receive() == b"hello"
        await server.send(b"x" * 10)
        assert await client.receive(4) == b"xxxx"
        assert await client.receive() == b"xxxxxx"
        await client.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await server.receive()
        # Half-closed: the other direction still works.
        await server.send(b"reply")
        assert await client.receive() == b"reply"
        with pytest.raises(ValueError):
            await client.receive(0)


async def test_socket_attributes() -> None:
    async with tcp_pair() as (client, server):
        assert client.extra(SocketAttribute.family) == socket.AF_INET
        assert client.extra(SocketAttribute.local_address) == client.extra(SocketAttribute.raw_socket).getsockname()
        assert client.extra(SocketAttribute.remote_address) == server.extra(SocketAttribute.local_address)
        assert client.extra(SocketAttribute.remote_port) == server.extra(SocketAttribute.local_port)
        assert isinstance(client.extra(SocketAttribute.raw_socket), asock.socket)


async def test_closed_stream_raises_closed_resource_error() -> None:
    async with tcp_pair() as (client, _server):
        async with tasks() as tg:
            waiting = tg.spawn(client.receive)
            await settle(waiting)
            await client.aclose()
            with pytest.raises(anyio.ClosedResourceError), anyio.fail_after(5):
                await waiting
        with pytest.raises(anyio.ClosedResourceError):
            await client.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await client.send(b"x")
        with pytest.raises(anyio.ClosedResourceError):
            await client.send_eof()


async def test_two_receivers_is_busy_resource_error() -> None:
    async with tcp_pair() as (client, _server), tasks() as tg:
        first = tg.spawn(client.receive)
        await settle(first)
        with pytest.raises(anyio.BusyResourceError):
            await client.receive()
        first.cancel()
        with contextlib.suppress(cancelled_exc()):
            await first


async def test_reset_connection_is_broken_resource_error() -> None:
    async with tcp_pair() as (client, server):
        # SO_LINGER with a zero timeout makes close() send RST.
        raw = server.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await server.aclose()
        with pytest.raises(anyio.BrokenResourceError) as info:
            await client.receive()
        assert isinstance(info.value.__cause__, ConnectionResetError)


async def test_move_on_after_cancels_a_receive_without_loss() -> None:
    async with tcp_pair() as (client, server):
        await server.send(b"early ")
        assert await client.receive() == b"early "
        with anyio.move_on_after(0.05) as scope:
            await client.receive()
        assert scope.cancelled_caught
        await server.send(b"late")
        assert await client.receive() == b"late"


async def test_fail_after_and_cancel_scope_in_a_task_group() -> None:
    async with tcp_pair() as (client, server):
        with pytest.raises(TimeoutError), anyio.fail_after(0.05):
            await client.receive()
        results: list[bytes] = []

        async def receiver() -> None:
            results.append(await client.receive())

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        assert results == []
        await server.send(b"kept")
        assert await client.receive() == b"kept"


async def test_raw_asock_calls_inside_cancel_scopes() -> None:
    a, b = asock.socketpair()
    with a, b:
        with anyio.move_on_after(0.05):
            await a.recv(10)
        await b.sendall(b"data")
        assert await a.recv(10) == b"data"


async def test_raw_asock_accept_and_recv_into_inside_fail_after() -> None:
    with asock.create_server(("127.0.0.1", 0)) as listener:
        with pytest.raises(TimeoutError), anyio.fail_after(0.05):
            await listener.accept()
        # The listener was left clean: the next accept works.
        client = await asock.create_connection(listener.getsockname(), timeout=10)
        conn, _ = await listener.accept()
        with client, conn:
            buf = bytearray(8)
            with anyio.move_on_after(0.05) as scope:
                await conn.recv_into(buf)
            assert scope.cancelled_caught
            await client.sendall(b"12345678")
            assert await conn.recv_into(buf) == 8 and buf == b"12345678"


async def test_raw_asock_sendall_cut_by_a_cancel_scope_leaves_the_socket_usable() -> None:
    a, b = asock.socketpair()
    with a, b:
        payload = b"x" * (8 << 20)  # far more than the socket buffers hold
        with anyio.move_on_after(0.05) as scope:
            await a.sendall(payload)
        assert scope.cancelled_caught
        received = bytearray()

        async def drain() -> None:
            while not received.endswith(b"END"):
                received.extend(await b.recv(1 << 20))

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            await a.sendall(b"END")
        # A prefix of the payload went out before the cancellation, then the rest.
        assert 0 < len(received) - 3 < len(payload)
        assert received == b"x" * (len(received) - 3) + b"END"


async def test_buffered_byte_receive_stream() -> None:
    async with tcp_pair() as (client, server):
        buffered = BufferedByteReceiveStream(client)
        await server.send(b"line one\nline two\n1234")
        assert await buffered.receive_until(b"\n", 100) == b"line one"
        assert await buffered.receive_until(b"\n", 100) == b"line two"
        assert await buffered.receive_exactly(4) == b"1234"
        await server.send(b"x" * 50)
        with pytest.raises(anyio.DelimiterNotFound):
            await buffered.receive_until(b"\n", 10)


async def test_listener_serves_with_a_task_group() -> None:
    listener = AsockSocketListener(asock.create_server(("127.0.0.1", 0)))
    port = listener.extra(SocketAttribute.local_port)

    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            async for chunk in stream:
                await stream.send(chunk)

    async with anyio.create_task_group() as tg, listener:
        tg.start_soon(listener.serve, echo)
        for i in range(3):
            stream = await connect_tcp("127.0.0.1", port, timeout=10)
            async with stream:
                await stream.send(b"ping %d" % i)
                assert await stream.receive() == b"ping %d" % i
        tg.cancel_scope.cancel()


def _tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client context for a self-signed "localhost" certificate made now."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        _write_cert_with_cryptography(cert, key)
    except ImportError:
        try:
            import trustme
        except ImportError:
            if shutil.which("openssl") is None:
                pytest.skip("no way to make a certificate: install cryptography or trustme")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                 "-keyout", str(key), "-out", str(cert)],
                check=True,
                capture_output=True,
            )
        else:
            ca = trustme.CA()
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("localhost").configure_cert(server_ctx)
            client_ctx = ssl.create_default_context()
            ca.configure_trust(client_ctx)
            return server_ctx, client_ctx
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    return server_ctx, client_ctx


def _write_cert_with_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


async def test_tls_stream_round_trip(tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_contexts(tmp_path)
    async with tcp_pair() as (client, server):
        wrapped: dict[str, TLSStream] = {}

        async def wrap_server() -> None:
            wrapped["server"] = await TLSStream.wrap(server, server_side=True, ssl_context=server_ctx)

        async def wrap_client() -> None:
            wrapped["client"] = await TLSStream.wrap(client, hostname="localhost", ssl_context=client_ctx)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wrap_server)
            tg.start_soon(wrap_client)
        tls_client, tls_server = wrapped["client"], wrapped["server"]
        payload = b"secret " * 20000  # several TLS records

        async def echo_once() -> None:
            received = b""
            while len(received) < len(payload):
                received += await tls_server.receive()
            await tls_server.send(received[::-1])

        async with anyio.create_task_group() as tg:
            tg.start_soon(echo_once)
            await tls_client.send(payload)
            reply = b""
            while len(reply) < len(payload):
                reply += await tls_client.receive()
        assert reply == payload[::-1]
        assert tls_client.extra(anyio.streams.tls.TLSAttribute.server_side) is False
        assert tls_client.extra(SocketAttribute.remote_port) == server.extra(SocketAttribute.local_port)
        # A standard TLS close: both sides exchange close_notify.
        async with anyio.create_task_group() as tg:
            tg.start_soon(tls_server.aclose)
            tg.start_soon(tls_client.aclose)


def test_import_asock_does_not_import_anyio() -> None:
    code = "import sys, asock; assert 'anyio' not in sys.modules, 'anyio imported'"
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
