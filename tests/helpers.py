"""Small tools the async tests share: tasks that run on every backend (asyncio,
uvloop, trio) with the handles the tests need, letting tasks reach their wait,
filling a send buffer, a listener whose backlog is full, a reader thread,
``bytes_sent``."""

from __future__ import annotations

import contextlib
import os
import select
import socket as stdlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest

import asock

T = TypeVar("T")

#: What ``fill_send_buffer`` sends, so a reader can tell filler from payload.
FILLER = b"f"


def ipv6_usable() -> bool:
    """Whether ::1 can be bound here (containers often lack IPv6)."""
    if not stdlib.has_ipv6:
        return False
    try:
        with stdlib.socket(stdlib.AF_INET6, stdlib.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_usable(), reason="::1 is not usable on this machine")


# -- tasks on every backend --------------------------------------------------------


class Task:
    """A child task of ``tasks()``, with what the tests use of an asyncio task.

    ``await task`` (or ``await task.wait()``) gives its result or raises its
    exception; ``cancel()`` cancels it (on every backend, with the backend's
    own cancellation exception, ``cancelled_exc()``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._scope = anyio.CancelScope()
        self._finished = anyio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    async def _run(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        with self._scope:
            try:
                self._value = await fn(*args)
            except BaseException as exc:  # kept for whoever awaits the task, as asyncio does
                self._error = exc
                if not isinstance(exc, (Exception, anyio.get_cancelled_exc_class())):
                    raise
            finally:
                self._finished.set()

    def done(self) -> bool:
        return self._finished.is_set()

    def cancel(self) -> None:
        self._scope.cancel()

    def cancelled(self) -> bool:
        return self.done() and isinstance(self._error, anyio.get_cancelled_exc_class())

    def exception(self) -> BaseException | None:
        assert self.done(), f"{self!r} has not finished"
        return self._error

    def result(self) -> Any:
        assert self.done(), f"{self!r} has not finished"
        if self._error is not None:
            raise self._error
        return self._value

    async def wait(self) -> Any:
        await self._finished.wait()
        return self.result()

    def __await__(self) -> Generator[Any, None, Any]:
        return self.wait().__await__()

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<Task {self.name} {state}>"


class Tasks:
    """Starts tasks in a task group (``spawn``); see ``tasks()``."""

    def __init__(self, group: anyio.abc.TaskGroup) -> None:
        self._group = group
        self.started: list[Task] = []

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Task:
        task = Task(getattr(fn, "__qualname__", repr(fn)))
        self._group.start_soon(task._run, fn, args)
        self.started.append(task)
        return task


@contextlib.asynccontextmanager
async def tasks() -> AsyncIterator[Tasks]:
    """A task group for the test's tasks: ``async with tasks() as tg: task = tg.spawn(fn, *args)``.

    Leaving it with a task still running fails the test (the task is
    cancelled first, so nothing hangs): a test must see its tasks through.
    """
    async with anyio.create_task_group() as group:
        spawner = Tasks(group)
        failed = False
        try:
            yield spawner
        except BaseException:
            failed = True
            raise
        finally:
            pending = [task for task in spawner.started if not task.done()]
            for task in pending:
                task.cancel()
    if pending and not failed:
        pytest.fail(f"test left {len(pending)} task(s) running: {pending!r}", pytrace=False)


def cancelled_exc() -> type[BaseException]:
    """The running backend's cancellation exception (asyncio.CancelledError, trio.Cancelled)."""
    return anyio.get_cancelled_exc_class()


def backend() -> str:
    """The running event loop: "asyncio" (the default loop), "uvloop" or "trio"."""
    import sniffio

    name = sniffio.current_async_library()
    if name == "asyncio":
        import asyncio

        if type(asyncio.get_running_loop()).__module__.startswith("uvloop"):
            return "uvloop"
    return name


async def wait_for(awaitable: Awaitable[T], timeout: float) -> T:
    """``await`` with a time limit: ``TimeoutError`` after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        return await awaitable


async def settle(*tasks: Task) -> None:
    """Run the loop until the tasks are parked in their wait; fail if one ended."""
    await ticks(5)
    await anyio.sleep(0.02)
    for task in tasks:
        if task.done():
            task.result()  # surfaces the exception, if that is why it ended
            pytest.fail(f"{task!r} completed although it should be waiting")


async def ticks(n: int) -> None:
    """Let the loop run ``n`` iterations (on trio: ``n`` schedule points)."""
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


async def fill_send_buffer(sock: asock.socket) -> int:
    """Send filler until the kernel refuses more; return how many bytes it took."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    chunk = FILLER * 65536
    total = 0
    try:
        while True:
            try:
                total += await sock.send(chunk)
            except BlockingIOError:
                return total
    finally:
        sock.settimeout(timeout)


def full_backlog_listener(stack: contextlib.ExitStack) -> stdlib.socket:
    """A loopback listener whose accept queue is full.

    Linux drops a SYN that finds the accept queue full, so a connect to this
    listener stays in progress until ``listen(n)`` makes room (the client's
    SYN is retransmitted about a second later).
    """
    listener = stack.enter_context(stdlib.socket())
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    for _ in range(8):
        probe = stack.enter_context(stdlib.socket())
        probe.setblocking(False)
        probe.connect_ex(address)
        _, writable, _ = select.select([], [probe], [], 0.05)
        if not writable:
            return listener
    pytest.fail("could not fill the listener's backlog")


class Reader(threading.Thread):
    """Reads a stdlib socket to EOF in a thread, so a blocked sender can finish."""

    def __init__(self, sock: stdlib.socket, limit: int | None = None) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.limit = limit
        self.chunks: list[bytes] = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.sock.settimeout(20)
            got = 0
            while self.limit is None or got < self.limit:
                want = 65536 if self.limit is None else min(65536, self.limit - got)
                data = self.sock.recv(want)
                if not data:
                    break
                self.chunks.append(data)
                got += len(data)
        except BaseException as exc:
            self.error = exc

    def result(self) -> bytes:
        self.join(30)
        assert not self.is_alive(), "reader thread did not finish"
        if self.error is not None:
            raise self.error
        return b"".join(self.chunks)


def drain(sock: stdlib.socket) -> bytes:
    """Everything readable on a stream socket right now."""
    chunks = []
    sock.setblocking(False)
    try:
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        sock.setblocking(True)
    return b"".join(chunks)


def bytes_sent(exc: BaseException) -> int:
    """``bytes_sent`` of an exception, or of the cancellation behind a wait_for timeout."""
    while exc is not None:
        if hasattr(exc, "bytes_sent"):
            value: int = exc.bytes_sent
            return value
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    raise AssertionError("no bytes_sent on the exception or its cause")


def wrap(native: stdlib.socket) -> asock.socket:
    """An asock socket taking over a stdlib socket's descriptor."""
    return asock.socket(fileno=native.detach())


def abstract_name() -> str:
    """A fresh name in Linux's abstract AF_UNIX namespace (nothing to clean up)."""
    return f"\0asock-test-{os.getpid()}-{os.urandom(6).hex()}"


async def gather(*awaitables: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """Run ``awaitables`` concurrently, on every backend; their results, in order.

    A failure cancels the others and the first one (in time) is raised once
    they have ended, bare (not in an exception group); with
    ``return_exceptions`` every one runs to its end, and a failure takes its
    place among the results, as ``asyncio.gather``'s.  A cancellation from
    outside is not a failure: it leaves as usual.
    """
    results: list[Any] = [None] * len(awaitables)
    failures: list[BaseException] = []

    async def run(index: int, awaitable: Awaitable[Any], group: anyio.abc.TaskGroup) -> None:
        try:
            results[index] = await awaitable
        except Exception as exc:
            failures.append(exc)
            results[index] = exc
            if not return_exceptions:
                group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index, awaitable in enumerate(awaitables):
            group.start_soon(run, index, awaitable, group)
    if failures and not return_exceptions:
        raise failures[0]
    return results
