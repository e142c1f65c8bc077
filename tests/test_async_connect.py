"""``create_connection`` (Happy Eyeballs, errors, timeouts), ``create_server``,
and the async name-resolution helpers."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket as stdlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from helpers import cancelled_exc, full_backlog_listener, ipv6_usable, needs_ipv6, settle, tasks, wait_for

import asock
import asock._connect


@pytest.fixture
def server() -> Iterator[asock.socket]:
    with asock.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def _closed_port(host: str = "127.0.0.1") -> int:
    with stdlib.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _info(host: str, port: int) -> tuple[Any, ...]:
    family = stdlib.AF_INET6 if ":" in host else stdlib.AF_INET
    address: tuple[Any, ...] = (host, port, 0, 0) if family == stdlib.AF_INET6 else (host, port)
    return (family, stdlib.SOCK_STREAM, stdlib.IPPROTO_TCP, "", address)


@pytest.fixture
def resolves_to(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make every name resolve to the given ``(host, port)`` list, in order."""
    asked: list[tuple[Any, ...]] = []

    def install(*addresses: tuple[str, int]) -> list[tuple[Any, ...]]:
        async def getaddrinfo(host: Any, port: Any, *args: Any) -> list[Any]:
            asked.append((host, port, *args))
            return [_info(h, p) for h, p in addresses]

        monkeypatch.setattr(asock._connect, "getaddrinfo", getaddrinfo)
        return asked

    return install


async def _accepted_from(server: asock.socket, sock: asock.socket) -> None:
    conn, address = await wait_for(server.accept(), 5)
    with conn:
        assert address == sock.getsockname()


async def test_localhost(server: asock.socket) -> None:
    port = server.getsockname()[1]
    with await wait_for(asock.create_connection(("localhost", port)), 10) as sock:
        assert isinstance(sock, asock.socket)
        assert sock.getpeername() == ("127.0.0.1", port)
        assert sock.gettimeout() is None
        await _accepted_from(server, sock)


async def test_happy_eyeballs_skips_a_dead_address(server: asock.socket, resolves_to: Any) -> None:
    live = server.getsockname()
    asked = resolves_to(("127.0.0.2", _closed_port()), live)
    with await wait_for(asock.create_connection(("service.example", live[1])), 10) as sock:
        assert sock.getpeername() == live
        await _accepted_from(server, sock)
    assert asked[0][:2] == ("service.example", live[1])


async def test_happy_eyeballs_races_past_a_hanging_attempt(server: asock.socket, resolves_to: Any) -> None:
    with contextlib.ExitStack() as stack:
        hanging = full_backlog_listener(stack).getsockname()
        live = server.getsockname()
        resolves_to(hanging, live)
        connecting = asock.create_connection(("service.example", 80), happy_eyeballs_delay=0.05)
        with await wait_for(connecting, 10) as sock:
            assert sock.getpeername() == live
            await _accepted_from(server, sock)


async def test_one_attempt_at_a_time_without_a_delay(server: asock.socket, resolves_to: Any) -> None:
    # happy_eyeballs_delay=None: the second address is only tried once the
    # first attempt has failed, and here it never fails before the deadline.
    with contextlib.ExitStack() as stack:
        hanging = full_backlog_listener(stack).getsockname()
        resolves_to(hanging, server.getsockname())
        with pytest.raises(TimeoutError):
            await asock.create_connection(("service.example", 80), timeout=0.3, happy_eyeballs_delay=None)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            await server.accept()  # the live address was never tried


def test_families_are_interleaved() -> None:
    # RFC 8305 section 4: the first family, then the other, then the rest.
    infos = [_info(*a) for a in (("127.0.0.1", 1), ("127.0.0.2", 2), ("::1", 3), ("::1", 4), ("127.0.0.3", 5))]
    ordered = asock._connect._interleave(infos)
    assert [info[4][1] for info in ordered] == [1, 3, 2, 4, 5]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in 3.11")
async def test_all_errors(resolves_to: Any) -> None:
    dead = [("127.0.0.1", _closed_port()), ("127.0.0.2", _closed_port())]
    resolves_to(*dead)
    with pytest.raises(ExceptionGroup) as info:  # noqa: F821  (3.11+, see the skip)
        await asock.create_connection(("service.example", 80), all_errors=True)
    assert len(info.value.exceptions) == 2
    assert all(isinstance(e, ConnectionRefusedError) for e in info.value.exceptions)
    # Without all_errors: the first address's error, as the stdlib raises it.
    with pytest.raises(ConnectionRefusedError):
        await asock.create_connection(("service.example", 80))


async def test_refused_like_the_stdlib() -> None:
    port = _closed_port()
    with pytest.raises(ConnectionRefusedError) as expected:
        stdlib.create_connection(("127.0.0.1", port)).close()
    with pytest.raises(ConnectionRefusedError) as info:
        await asock.create_connection(("127.0.0.1", port))
    assert str(info.value) == str(expected.value)


async def test_source_address(server: asock.socket) -> None:
    source = ("127.0.0.1", _closed_port())
    with await asock.create_connection(server.getsockname(), source_address=source) as sock:
        assert sock.getsockname() == source
        await _accepted_from(server, sock)


async def test_timeout_bounds_the_whole_call() -> None:
    with contextlib.ExitStack() as stack:
        hanging = full_backlog_listener(stack).getsockname()
        with pytest.raises(TimeoutError) as info:
            await asock.create_connection(hanging, timeout=0.2)
        assert str(info.value) == "timed out"


async def test_timeout_covers_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow(*args: Any) -> list[Any]:
        await anyio.sleep(30)
        return []

    monkeypatch.setattr(asock._connect, "getaddrinfo", slow)
    with pytest.raises(TimeoutError):
        await asock.create_connection(("service.example", 80), timeout=0.2)


async def test_zero_timeout_like_the_stdlib(server: asock.socket) -> None:
    # The stdlib connects in non-blocking mode then, which cannot complete.
    with pytest.raises(OSError) as expected:
        stdlib.create_connection(server.getsockname(), timeout=0).close()
    with pytest.raises(type(expected.value)):
        (await asock.create_connection(server.getsockname(), timeout=0)).close()


@pytest.mark.parametrize("timeout", [None, 7.5])
async def test_timeout_becomes_the_sockets(server: asock.socket, timeout: float | None) -> None:
    with await asock.create_connection(server.getsockname(), timeout=timeout) as sock:
        assert sock.gettimeout() == timeout
        await _accepted_from(server, sock)


async def test_default_timeout_is_getdefaulttimeout(server: asock.socket) -> None:
    previous = asock.getdefaulttimeout()
    asock.setdefaulttimeout(4.0)
    try:
        with await asock.create_connection(server.getsockname()) as sock:
            assert sock.gettimeout() == 4.0
            await _accepted_from(server, sock)
    finally:
        asock.setdefaulttimeout(previous)


async def test_empty_resolution(resolves_to: Any) -> None:
    resolves_to()
    with pytest.raises(OSError, match="getaddrinfo returns an empty list"):
        await asock.create_connection(("service.example", 80))


# -- cancellation: nothing left behind ---------------------------------------------


def _open_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the directory listdir itself had open
        fds.add(int(name))
    return fds


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")


@pytest.fixture
def two_hanging(resolves_to: Any) -> Iterator[None]:
    """Every name resolves to two addresses whose connects hang (full backlogs)."""
    with contextlib.ExitStack() as stack:
        resolves_to(*(full_backlog_listener(stack).getsockname() for _ in range(2)))
        yield


async def _racing(before: set[int], left_open: list[set[int]]) -> asock.socket:
    """Race the two hanging addresses; note what is open, of what was not ``before``, as the call ends."""
    try:
        return await asock.create_connection(("service.example", 80), happy_eyeballs_delay=0.05)
    finally:
        left_open.append(_open_fds() - before)


async def _both_attempts_started(before: set[int]) -> None:
    for _ in range(500):
        if len(_open_fds() - before) >= 2:
            return
        await anyio.sleep(0.01)
    pytest.fail("the race never had both attempts in flight")


@pytest.mark.parametrize("timeout", [None, 30.0])
async def test_cancelled_while_resolving(monkeypatch: pytest.MonkeyPatch, timeout: float | None) -> None:
    resolving = anyio.Event()
    ended = []

    async def slow(*args: Any) -> list[Any]:
        resolving.set()
        try:
            await anyio.sleep(30)
        finally:
            ended.append(True)
        return []

    monkeypatch.setattr(asock._connect, "getaddrinfo", slow)
    lookup_ended_first = []

    async def connect() -> asock.socket:
        try:
            return await asock.create_connection(("service.example", 80), timeout=timeout)
        finally:
            lookup_ended_first.append(ended == [True])

    async with tasks() as tg:
        task = tg.spawn(connect)
        await wait_for(resolving.wait(), 5)
        await settle(task)
        task.cancel()
        with pytest.raises(cancelled_exc()):
            await task
    # The lookup was seen to its end before the call ended.
    assert lookup_ended_first == [True]


@needs_proc
async def test_cancelled_during_the_race_closes_every_attempt(two_hanging: None) -> None:
    # When the cancelled call ends, the sockets of its attempts are closed.
    before = _open_fds()
    left_open: list[set[int]] = []
    async with tasks() as tg:
        task = tg.spawn(_racing, before, left_open)
        await _both_attempts_started(before)
        task.cancel()
        with pytest.raises(cancelled_exc()):
            await task
    assert left_open == [set()]


@needs_proc
async def test_cancel_scope_deadline_during_the_race_closes_every_attempt(two_hanging: None) -> None:
    # A cancel scope delivers its cancellation again at every await, cleanup included.
    before = _open_fds()
    left_open: list[set[int]] = []
    with anyio.move_on_after(0.3) as scope:
        await _racing(before, left_open)
    assert scope.cancelled_caught
    assert left_open == [set()]


@pytest.mark.asyncio_only
@needs_proc
async def test_task_cancel_during_the_race_closes_every_attempt(two_hanging: None) -> None:
    # asyncio's Task.cancel() is delivered once; the cleanup runs uninterrupted.
    before = _open_fds()
    left_open: list[set[int]] = []
    task = asyncio.create_task(_racing(before, left_open))
    await _both_attempts_started(before)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert left_open == [set()]


# -- create_server -------------------------------------------------------------------


def test_create_server_options() -> None:
    with asock.create_server(("127.0.0.1", 0)) as sock:
        assert isinstance(sock, asock.socket)
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR) != 0
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEPORT) == 0
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ACCEPTCONN) == 1
        assert not sock.get_inheritable()
    with asock.create_server(("127.0.0.1", 0), reuse_port=True) as a:
        assert a.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEPORT) == 1
        with asock.create_server(a.getsockname(), reuse_port=True) as b:
            assert b.getsockname() == a.getsockname()


def test_create_server_address_in_use_like_the_stdlib() -> None:
    with asock.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(OSError) as expected:
            stdlib.create_server(taken.getsockname()).close()
        with pytest.raises(OSError) as info:
            asock.create_server(taken.getsockname()).close()
        assert info.value.errno == errno.EADDRINUSE
        assert str(info.value) == str(expected.value)


def test_create_server_argument_errors() -> None:
    with pytest.raises(ValueError, match="dualstack_ipv6 requires AF_INET6 family"):
        asock.create_server(("127.0.0.1", 0), dualstack_ipv6=True)


@needs_ipv6
@pytest.mark.skipif(not stdlib.has_dualstack_ipv6(), reason="no dual-stack IPv6 sockets here")
async def test_create_server_dualstack() -> None:
    assert asock.has_dualstack_ipv6() is stdlib.has_dualstack_ipv6()
    with asock.create_server(("::", 0), family=stdlib.AF_INET6, dualstack_ipv6=True) as server:
        port = server.getsockname()[1]
        assert server.getsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY) == 0
        for host in ("127.0.0.1", "::1"):
            with await asock.create_connection((host, port), timeout=5) as sock:
                conn, address = await wait_for(server.accept(), 5)
                with conn:
                    assert address[1] == sock.getsockname()[1]
                    await sock.sendall(host.encode())
                    assert await conn.recv(100) == host.encode()


@needs_ipv6
def test_create_server_ipv6_only_by_default() -> None:
    with asock.create_server(("::1", 0), family=stdlib.AF_INET6) as server:
        assert server.getsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY) == 1


# -- name resolution -------------------------------------------------------------------

RESOLVERS = [
    ("getaddrinfo", ("localhost", 80)),
    ("getaddrinfo", ("127.0.0.1", "http", stdlib.AF_INET, stdlib.SOCK_STREAM)),
    ("getaddrinfo", (None, 8080, 0, 0, 0, stdlib.AI_PASSIVE)),
    ("getnameinfo", (("127.0.0.1", 80), stdlib.NI_NUMERICHOST | stdlib.NI_NUMERICSERV)),
    ("getnameinfo", (("127.0.0.1", 22), 0)),
    ("gethostbyname", ("localhost",)),
    ("gethostbyname_ex", ("localhost",)),
    ("gethostbyaddr", ("127.0.0.1",)),
    ("getfqdn", ()),
    ("getfqdn", ("localhost",)),
]
if ipv6_usable():
    RESOLVERS.append(("getaddrinfo", ("::1", 443, stdlib.AF_INET6)))


@pytest.mark.parametrize(("name", "args"), RESOLVERS, ids=[f"{n}{a!r}" for n, a in RESOLVERS])
async def test_resolution_matches_the_stdlib(name: str, args: tuple[Any, ...]) -> None:
    expected = getattr(stdlib, name)(*args)
    got = await wait_for(getattr(asock, name)(*args), 10)
    assert got == expected
    if name == "getaddrinfo":
        assert all(type(info[0]) is type(e[0]) for info, e in zip(got, expected, strict=True))


@pytest.mark.parametrize(
    ("name", "args"),
    [("getaddrinfo", ("127.0.0.1", "no-such-service-xyz")), ("getnameinfo", (("127.0.0.1",), 0))],
)
async def test_resolution_errors_match_the_stdlib(name: str, args: tuple[Any, ...]) -> None:
    with pytest.raises(Exception) as expected:
        getattr(stdlib, name)(*args)
    with pytest.raises(type(expected.value)) as info:
        await getattr(asock, name)(*args)
    assert str(info.value) == str(expected.value)


async def test_resolution_does_not_block_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # The stub resolver only returns once the loop has run another task; if
    # resolution ran on the loop's thread, that could never happen.
    loop_ran = threading.Event()
    real = stdlib.getaddrinfo

    def stalled(*args: Any, **kwargs: Any) -> Any:
        assert loop_ran.wait(10), "the event loop was blocked during resolution"
        return real(*args, **kwargs)

    monkeypatch.setattr(stdlib, "getaddrinfo", stalled)

    async def other() -> None:
        await anyio.sleep(0.01)
        loop_ran.set()

    async with tasks() as tg:
        task = tg.spawn(other)
        got = await wait_for(asock.getaddrinfo("localhost", 80), 15)
        await task
    assert got == real("localhost", 80)


async def test_connect_resolves_names(server: asock.socket) -> None:
    port = server.getsockname()[1]
    with asock.socket() as sock:
        await wait_for(sock.connect(("localhost", port)), 10)
        assert sock.getpeername() == ("127.0.0.1", port)
        await _accepted_from(server, sock)
