"""The suite's configuration: every async test runs on asyncio's default loop,
uvloop and trio, under anyio's pytest plugin (``anyio_mode = "auto"``).

A test about asock's behaviour with asyncio itself is marked ``asyncio_only``
and skipped on trio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop

#: asyncio's loops, for tests that make and run loops by hand.
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,
    "uvloop": uvloop.new_event_loop,
}

#: The backends, as anyio's pytest plugin takes them.
BACKENDS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param("trio", id="trio"),
]

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "asyncio_only: a test of asock with asyncio itself (not run on trio)")


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    if request.param == "trio" and request.node.get_closest_marker("asyncio_only") is not None:
        pytest.skip("a test of asock's behaviour with asyncio itself")
    return request.param


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (
            isinstance(item, pytest.Function)
            and asyncio.iscoroutinefunction(item.obj)
            and not hasattr(item.obj, "hypothesis")
        ):
            item.obj = _no_task_left(item.obj)


# -- hygiene: no test may leave descriptors open or tasks running -------------------
#
# The descriptor count is taken before the test's event loop exists and
# compared after anyio's runner has closed it (in the teardown hook below), so
# the loop's own descriptors never count.  Fixtures of a wider scope are set up
# before any function-scoped one, this fixture included, so their descriptors
# are in the "before" set.  Tasks: under trio none can outlive the test (a
# nursery waits for its children); on asyncio the test itself is wrapped so
# that, when it returns, any task it started and left running fails it.

import functools as _functools  # noqa: E402  (a section of its own)
import os as _os  # noqa: E402
from collections.abc import Callable as _Callable  # noqa: E402
from collections.abc import Iterator as _Iterator  # noqa: E402
from typing import Any as _Any  # noqa: E402

_FDS_BEFORE = pytest.StashKey[set[int]]()


def _open_fds() -> set[int]:
    """Open descriptors; the one listdir used is closed by now, so readlink skips it."""
    fds = set()
    for name in _os.listdir("/proc/self/fd"):
        try:
            _os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        fds.add(int(name))
    return fds


def _describe(fds: set[int]) -> str:
    described = []
    for fd in sorted(fds):
        try:
            described.append(f"{fd} -> {_os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            described.append(f"{fd} -> (closed meanwhile)")
    return ", ".join(described)


@pytest.fixture(scope="session", autouse=True)
def _process_wide_descriptors() -> None:
    """Open now what libraries open once per process and keep, so no test is blamed for it.

    libuv (under uvloop) creates a pipe pair the first time any loop is made
    and keeps it until the process exits.
    """
    try:
        import uvloop
    except ImportError:
        return
    uvloop.new_event_loop().close()


@pytest.fixture(autouse=True)
def _hygiene(request: pytest.FixtureRequest) -> _Iterator[None]:
    if _os.path.isdir("/proc/self/fd"):
        request.node.stash[_FDS_BEFORE] = _open_fds()
    yield


def _no_task_left(test: _Callable[..., _Any]) -> _Callable[..., _Any]:
    @_functools.wraps(test)
    async def checked(*args: _Any, **kwargs: _Any) -> _Any:
        if asyncio.events._get_running_loop() is None:
            return await test(*args, **kwargs)  # trio
        before = asyncio.all_tasks()
        result = await test(*args, **kwargs)
        pending = [task for task in asyncio.all_tasks() - before if not task.done()]
        if pending:
            pytest.fail(f"test left {len(pending)} asyncio task(s) pending: {pending!r}", pytrace=False)
        return result

    return checked


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> _Iterator[None]:
    result = yield
    before = item.stash.get(_FDS_BEFORE, None)
    if before is not None:
        leaked = _open_fds() - before
        if leaked:
            raise AssertionError(f"test left {len(leaked)} descriptor(s) open: {_describe(leaked)}")
    return result
