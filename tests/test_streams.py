"""asock.Stream / StreamReader / StreamWriter / open_connection: asyncio's stream semantics over asock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest
from helpers import cancelled_exc, settle, tasks, ticks, wait_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import asock


@asynccontextmanager
async def pair(limit: int = 2**16) -> AsyncIterator[tuple[asock.Stream, asock.socket]]:
    a, b = asock.socketpair()
    with a, b:
        yield asock.Stream(a, limit=limit), b


async def test_readline_whole_split_and_several_per_chunk() -> None:
    async with pair() as (stream, peer):
        await peer.sendall(b"one\ntwo\nthr")
        assert await stream.readline() == b"one\n"
        assert await stream.readline() == b"two\n"
        async with tasks() as tg:
            task = tg.spawn(stream.readline)
            await settle(task)
            await peer.sendall(b"ee\n")
            assert await wait_for(task, 10) == b"three\n"


async def test_readline_at_eof_returns_the_partial_line_then_empty() -> None:
    async with pair() as (stream, peer):
        await peer.sendall(b"last")
        peer.shutdown(asock.SHUT_WR)
        assert not stream.at_eof()
        assert await stream.readline() == b"last"
        assert stream.at_eof()
        assert await stream.readline() == b""


async def test_async_iteration_over_lines() -> None:
    async with pair() as (stream, peer):
        await peer.sendall(b"a\nbb\n\nccc")
        peer.shutdown(asock.SHUT_WR)
        assert [line async for line in stream] == [b"a\n", b"bb\n", b"\n", b"ccc"]


async def test_readexactly() -> None:
    async with pair() as (stream, peer):
        await peer.sendall(b"abc")
        async with tasks() as tg:
            task = tg.spawn(stream.readexactly, 5)
            await settle(task)
            await peer.sendall(b"defgh")
            assert await wait_for(task, 10) == b"abcde"
        assert await stream.readexactly(0) == b""
        peer.shutdown(asock.SHUT_WR)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await stream.readexactly(10)
        assert info.value.partial == b"fgh"
        assert info.value.expected == 10
        with pytest.raises(ValueError, match="less than zero"):
            await stream.readexactly(-1)


async def test_readuntil_with_a_separator_split_across_sends() -> None:
    async with pair() as (stream, peer):
        await peer.sendall(b"HEAD\r")
        async with tasks() as tg:
            task = tg.spawn(stream.readuntil, b"\r\n")
            await settle(task)
            await peer.sendall(b"\nBODY")
            assert await wait_for(task, 10) == b"HEAD\r\n"
        peer.shutdown(asock.SHUT_WR)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await stream.readuntil(b"\r\n")
        assert info.value.partial == b"BODY"
        assert info.value.expected is None
        with pytest.raises(ValueError, match="one-byte"):
            await stream.readuntil(b"")


async def test_read() -> None:
    async with pair() as (stream, peer):
        assert await stream.read(0) == b""
        await peer.sendall(b"0123456789")
        assert await stream.read(4) == b"0123"
        assert await stream.read(100) == b"456789"
        await peer.sendall(b"rest")
        peer.shutdown(asock.SHUT_WR)
        assert await stream.read() == b"rest"
        assert await stream.read(5) == b""
        assert stream.at_eof()


async def test_a_peer_that_never_sends_a_newline_gets_a_clear_error() -> None:
    # The peer keeps the connection open and sends 64 KiB of no newline:
    # readline must give up after `limit`, not buffer until EOF.
    async with pair(limit=1024) as (stream, peer), tasks() as tg:
        sender = tg.spawn(peer.sendall, b"x" * 65536)
        with pytest.raises(ValueError, match="limit"):
            await stream.readline()
        assert len(stream._buffer) <= 1024 + 65536
        sender.cancel()
        with contextlib.suppress(cancelled_exc()):
            await sender


async def test_limit_overrun_keeps_the_data_for_readuntil() -> None:
    async with pair(limit=8) as (stream, peer):
        await peer.sendall(b"0123456789ABCDEF")
        with pytest.raises(asyncio.LimitOverrunError, match="not found"):
            await stream.readuntil(b"\n")
        # asyncio leaves the data in the buffer: it can still be read.
        assert await stream.readexactly(16) == b"0123456789ABCDEF"
        await peer.sendall(b"0123456789\nok\n")
        with pytest.raises(asyncio.LimitOverrunError, match="is found") as info:
            await stream.readuntil(b"\n")
        assert info.value.consumed == 10
        # readline drops the overlong line, separator included, and goes on.
        with pytest.raises(ValueError, match="is found"):
            await stream.readline()
        assert await stream.readline() == b"ok\n"


async def test_a_line_of_exactly_limit_bytes_is_accepted() -> None:
    async with pair(limit=8) as (stream, peer):
        await peer.sendall(b"12345678\n")
        assert await stream.readline() == b"12345678\n"


@pytest.mark.parametrize("how", ["cancel", "deadline", "timeout"])
async def test_a_cancelled_readline_loses_nothing(how: str) -> None:
    async with pair() as (stream, peer):
        await peer.sendall(b"partial ")
        if how == "cancel":
            async with tasks() as tg:
                task = tg.spawn(stream.readline)
                await settle(task)
                task.cancel()
                with pytest.raises(cancelled_exc()):
                    await task
        elif how == "deadline":
            with pytest.raises(TimeoutError), anyio.fail_after(0.05):
                await stream.readline()
        else:
            stream.socket.settimeout(0.05)
            with pytest.raises(TimeoutError):
                await stream.readline()
            stream.socket.settimeout(None)
        await peer.sendall(b"line\n")
        assert await stream.readline() == b"partial line\n"


async def test_a_cancelled_readexactly_loses_nothing() -> None:
    async with pair() as (stream, peer):
        await peer.sendall(b"abc")
        with pytest.raises(TimeoutError), anyio.fail_after(0.05):
            await stream.readexactly(6)
        await peer.sendall(b"def")
        assert await stream.readexactly(6) == b"abcdef"


async def test_two_readers_at_once_is_an_error() -> None:
    async with pair() as (stream, _peer), tasks() as tg:
        first = tg.spawn(stream.readline)
        await settle(first)
        with pytest.raises(RuntimeError):
            await stream.readline()
        first.cancel()
        with contextlib.suppress(cancelled_exc()):
            await first


async def test_writer_write_writelines_write_eof() -> None:
    async with pair() as (stream, peer):
        async with tasks() as tg:
            received = tg.spawn(asock.StreamReader(peer).read)
            await stream.write(b"hello ")
            # More than the socket buffers hold: write() returns once all is sent.
            await stream.writelines([b"big ", bytearray(b"x" * 300000), memoryview(b"\n")])
            await stream.sendall(b"end")
            assert stream.can_write_eof()
            stream.write_eof()
            assert await wait_for(received, 10) == b"hello big " + b"x" * 300000 + b"\nend"
        # Only the sending half is shut: the stream still reads.
        await peer.sendall(b"reply\n")
        assert await stream.readline() == b"reply\n"
        assert stream.get_extra_info("socket") is stream.socket
        assert stream.get_extra_info("sockname") == stream.socket.getsockname()
        assert stream.get_extra_info("nonsense", 42) == 42


async def test_closing() -> None:
    a, b = asock.socketpair()
    with b:
        async with asock.Stream(a) as stream:
            assert not stream.is_closing()
            assert "asock.Stream" in repr(stream)
        assert stream.is_closing()
        assert a.fileno() == -1
        assert await b.recv(10) == b""
        stream.close()  # idempotent
        await stream.aclose()
        await stream.wait_closed()


async def test_limit_must_be_positive() -> None:
    a, b = asock.socketpair()
    with a, b, pytest.raises(ValueError):
        asock.StreamReader(a, limit=0)


async def test_open_connection_to_a_server() -> None:
    async def handler(conn: asock.socket) -> None:
        stream = asock.Stream(conn)
        async for line in stream:
            await stream.write(line.upper())

    async with await asock.start_server(handler, ("127.0.0.1", 0)) as server:
        host, port = server.sockets[0].getsockname()
        reader, writer = await asock.open_connection(host, port, limit=100, timeout=10)
        try:
            assert reader.limit == 100
            assert reader.socket is writer.socket
            await writer.write(b"abc\ndef\n")
            assert await reader.readline() == b"ABC\n"
            assert await reader.readuntil(b"F\n") == b"DEF\n"
            writer.write_eof()
            assert await reader.read() == b""
        finally:
            writer.close()


# -- the same answers as asyncio.StreamReader --------------------------------

ops = st.one_of(
    st.just(("readline",)),
    st.tuples(st.just("read"), st.integers(-1, 12)),
    st.tuples(st.just("readexactly"), st.integers(0, 12)),
    st.tuples(st.just("readuntil"), st.sampled_from([b"\n", b"ab", b"\r\n", b"xyz"])),
)


async def run_ops(reader: Any, operations: list[Any]) -> list[Any]:
    results: list[Any] = []
    for name, *args in operations:
        try:
            results.append(await getattr(reader, name)(*args))
        except asyncio.IncompleteReadError as exc:
            results.append(("IncompleteReadError", exc.partial, exc.expected))
        except asyncio.LimitOverrunError:
            # Where the overrun is detected depends on how the data arrived;
            # after it, the buffers may differ, so the comparison stops here.
            results.append("LimitOverrunError")
            break
        except ValueError:
            results.append("ValueError")
            break
    return results


def same_answers(test: Any) -> Any:
    """The cases of the comparison with asyncio.StreamReader (hypothesis's decorators)."""
    # The edges of the limit: a last line of exactly `limit` bytes, and one more.
    test = example(payload=b"abcd", operations=[("readline",)], limit=4)(test)
    test = example(payload=b"abcde", operations=[("readline",), ("read", -1)], limit=4)(test)
    test = example(payload=b"abcdx\nz", operations=[("readuntil", b"x\n"), ("read", -1)], limit=4)(test)
    test = example(payload=b"abcdx", operations=[("readuntil", b"xy"), ("read", -1)], limit=4)(test)
    test = given(
        payload=st.lists(st.sampled_from([b"a", b"b", b"\n", b"\r", b"x", b"yz", b"ab\n"]), max_size=30).map(b"".join),
        operations=st.lists(ops, max_size=8),
        limit=st.sampled_from([4, 16, 2**16]),
    )(test)
    return settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])(test)


async def asock_answers(payload: bytes, operations: list[Any], limit: int) -> list[Any]:
    async with pair(limit=limit) as (stream, peer):
        await peer.sendall(payload)
        peer.shutdown(asock.SHUT_WR)
        return await run_ops(stream, operations)


@pytest.mark.asyncio_only  # the reference runs on the test's own loop
@same_answers
async def test_matches_asyncio_stream_reader(payload: bytes, operations: list[Any], limit: int) -> None:
    reference = asyncio.StreamReader(limit=limit)
    reference.feed_data(payload)
    reference.feed_eof()
    expected = await run_ops(reference, operations)
    assert await asock_answers(payload, operations, limit) == expected


def reference_answers(payload: bytes, operations: list[Any], limit: int) -> list[Any]:
    """asyncio.StreamReader's answers, on an event loop of its own (for a worker thread)."""

    async def answers() -> list[Any]:
        reference = asyncio.StreamReader(limit=limit)
        reference.feed_data(payload)
        reference.feed_eof()
        return await run_ops(reference, operations)

    return asyncio.run(answers())


@same_answers
async def test_matches_asyncio_stream_reader_on_every_backend(
    payload: bytes, operations: list[Any], limit: int
) -> None:
    expected = await anyio.to_thread.run_sync(reference_answers, payload, operations, limit)
    assert await asock_answers(payload, operations, limit) == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunks=st.lists(st.sampled_from([b"a", b"bc\n", b"\n", b"def", b"g\nh"]), min_size=1, max_size=12),
    cancel_after=st.lists(st.integers(0, 3), min_size=1, max_size=12),
    op=st.sampled_from(["readline", "readexactly", "readuntil"]),
)
async def test_cancelled_reads_never_lose_bytes(chunks: list[bytes], cancel_after: list[int], op: str) -> None:
    """Whatever read is cancelled, after however many loop turns, every byte is read once, in order."""
    payload = b"".join(chunks)
    got: list[bytes] = []

    def read() -> Any:
        if op == "readline":
            return stream.readline()
        if op == "readexactly":
            return stream.readexactly(3)
        return stream.readuntil(b"g\n")

    async with pair() as (stream, peer):
        for i, chunk in enumerate(chunks):
            await peer.sendall(chunk)
            async with tasks() as tg:
                task = tg.spawn(read)
                await ticks(cancel_after[i % len(cancel_after)])
                task.cancel()
                try:
                    got.append(await task)
                except cancelled_exc():
                    pass
        peer.shutdown(asock.SHUT_WR)
        got.append(await stream.read())
    assert b"".join(got) == payload
