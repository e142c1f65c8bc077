"""Cancellation and timeout fuzz over TLS.

Receiving side: a peer streams random data in random chunks while the
reader's calls (random sizes, recv and recv_into) are cancelled, time out or
find nothing in non-blocking mode at random moments; one run also has the
server ask for the client's certificate now and then, so the fuzzed receive
must send mid-stream.  The bytes received must be exactly those sent.

Sending side: ``sendall`` and ``send`` are cut short at random while the
peer reads slowly; the peer must receive exactly the concatenation of what
each call reported (all of it, or the ``bytes_sent`` prefix): nothing lost,
nothing twice, nothing out of order.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest
from helpers import bytes_sent, cancelled_exc, gather, tasks, ticks, wait_for
from tlshelpers import ca, client_context, read_all, server_context, tls_pair

import asock

FUZZ_SECONDS = 1.2
# On a loaded machine the reader lags and finds data at every call, so few
# calls wait long enough to be interrupted: the fuzz then goes on, up to this
# long, until it has interrupted as many calls as the test asks for.
FUZZ_SECONDS_AT_MOST = 15
RECV_INTERRUPTIONS = 20
SEND_INTERRUPTIONS = 10
# A deadline's or the socket's timeout, or non-blocking mode's refusal; a
# cancellation is told apart from the test's own by where it comes from.
INTERRUPTIONS = (TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _contexts(post_handshake_auth: bool) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server_ctx, client_ctx = server_context(), client_context(with_cert=post_handshake_auth)
    if post_handshake_auth:
        ca().configure_trust(server_ctx)
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        server_ctx.post_handshake_auth = client_ctx.post_handshake_auth = True
    return server_ctx, client_ctx


async def _interrupted(call: Callable[[], Awaitable[bytes]], rng: random.Random, sock: asock.socket) -> bytes | None:
    """One receive, interrupted at random; None when it was cut short."""
    how = rng.randrange(5)
    try:
        if how == 0:
            return await call()
        if how == 1:
            return await wait_for(call(), rng.choice([0, 0.0005, 0.002]))
        if how == 2:
            sock.settimeout(rng.choice([0.0005, 0.001, 0.003]))
            try:
                return await call()
            finally:
                sock.settimeout(None)
        if how == 3:
            sock.setblocking(False)
            try:
                return await call()
            finally:
                sock.setblocking(True)
        async with tasks() as tg:
            task = tg.spawn(call)
            await ticks(rng.randrange(4))
            task.cancel()
            try:
                return await task
            except cancelled_exc() as exc:
                if exc is not task.exception():
                    raise  # the test itself is being cancelled
                return None
    except INTERRUPTIONS:
        return None


@pytest.mark.parametrize(("seed", "post_handshake_auth"), [(1, False), (2, False), (3, True)])
async def test_receive_fuzz(seed: int, post_handshake_auth: bool) -> None:
    rng = random.Random(seed)
    async with tls_pair(*_contexts(post_handshake_auth), shrink=True) as (server, client):
        down = bytearray()  # server to client: the fuzzed direction
        up = bytearray()  # client to server, at the same time
        started = time.monotonic()
        requests = 0
        interrupted = 0

        def going_on() -> bool:
            elapsed = time.monotonic() - started
            return elapsed < FUZZ_SECONDS or (interrupted <= RECV_INTERRUPTIONS and elapsed < FUZZ_SECONDS_AT_MOST)

        async def server_writer() -> None:
            nonlocal requests
            while going_on():
                chunk = rng.randbytes(rng.choice([1, 10, 500, 4000, 17000, 70000]))
                down.extend(chunk)
                if post_handshake_auth and rng.random() < 0.05:
                    try:
                        server.verify_client_post_handshake()  # the client's receive will have to answer
                        requests += 1
                    except ssl.SSLError as exc:
                        # One request at a time: the last one is not answered yet.
                        assert exc.reason in ("REQUEST_SENT", "REQUEST_PENDING"), exc
                await server.sendall(chunk)
                if rng.random() < 0.3:
                    await anyio.sleep(rng.choice([0, 0.0005, 0.002]))
            await server._send_close_notify()

        async def client_writer() -> None:
            while going_on():
                chunk = rng.randbytes(rng.choice([10, 3000, 20000]))
                up.extend(chunk)
                await client.sendall(chunk)
                await anyio.sleep(rng.choice([0, 0.001, 0.005]))
            await client._send_close_notify()

        def size() -> int:
            return rng.choice([1, 7, 100, 1500, 16384, 65536])

        async def recv() -> bytes:
            return await client.recv(size())

        async def recv_into() -> bytes:
            buffer = bytearray(size())
            return bytes(buffer[: await client.recv_into(buffer)])

        received = bytearray()

        async def fuzzed_reader() -> None:
            nonlocal interrupted
            while True:
                data = await _interrupted(rng.choice([recv, recv_into]), rng, client)
                if data is None:
                    interrupted += 1
                    continue
                if not data:
                    break
                received.extend(data)

        # A failure anywhere ends the test at once instead of leaving the others waiting.
        _, _, got, _ = await gather(server_writer(), client_writer(), read_all(server), fuzzed_reader())
        assert got == up
        assert interrupted > RECV_INTERRUPTIONS, "the fuzz did not interrupt enough calls to mean anything"
        assert len(received) == len(down)
        assert received == down
        if post_handshake_auth:
            assert requests > 0
            assert server.getpeercert() is not None  # the client answered mid-stream


@pytest.mark.parametrize("seed", [4, 5])
async def test_send_fuzz(seed: int) -> None:
    rng = random.Random(seed)
    async with tls_pair(shrink=True) as (server, client), tasks() as tg:
        expected = bytearray()
        started_at = time.monotonic()

        async def slow_reader() -> bytes:
            got = bytearray()
            while data := await server.recv(rng.choice([100, 5000, 65536])):
                got += data
                if rng.random() < 0.2:
                    await anyio.sleep(rng.choice([0.001, 0.01]))
            return bytes(got)

        reading = tg.spawn(slow_reader)
        interrupted = 0
        while (elapsed := time.monotonic() - started_at) < FUZZ_SECONDS or (
            interrupted <= SEND_INTERRUPTIONS and elapsed < FUZZ_SECONDS_AT_MOST
        ):
            chunk = rng.randbytes(rng.choice([1, 100, 16384, 40000, 300_000]))
            started = False

            async def call(chunk: bytes = chunk) -> int:
                nonlocal started
                started = True
                if rng.random() < 0.2:
                    return await client.send(chunk)
                await client.sendall(chunk)
                return len(chunk)

            how = rng.randrange(4)
            try:
                if how == 0:
                    done = await call()
                elif how == 1:
                    done = await wait_for(call(), rng.choice([0.0005, 0.002, 0.01]))
                elif how == 2:
                    client.settimeout(rng.choice([0.001, 0.005]))
                    try:
                        done = await call()
                    finally:
                        client.settimeout(None)
                else:
                    # Cancelled by a scope of its own (which catches only its own cancellation).
                    with anyio.move_on_after(rng.choice([0, 0.0005, 0.003])):
                        try:
                            done = await call()
                        except cancelled_exc() as exc:
                            interrupted += 1
                            done = bytes_sent(exc) if started else 0
                            raise
            except TimeoutError as exc:
                interrupted += 1
                done = bytes_sent(exc) if started else 0
            assert 0 <= done <= len(chunk)
            expected += chunk[:done]
        await client._send_close_notify()
        received = await wait_for(reading.wait(), 30)
        assert interrupted > SEND_INTERRUPTIONS, "the fuzz did not interrupt enough calls to mean anything"
        assert len(received) == len(expected)
        assert received == expected
