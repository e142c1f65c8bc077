"""Every async test in this suite runs once on each event loop asock supports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,
    "uvloop": uvloop.new_event_loop,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return LOOPS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "asyncio_only: a test of asock with asyncio itself (not run on trio)")


# -- hygiene: no test may leave descriptors open or tasks pending --------------------
#
# The descriptor count is taken before the test's function-scoped event loop
# exists and compared after pytest-asyncio's runner has closed it (in the
# teardown hook below), so the loop's own epoll/self-pipe descriptors never
# count.  Fixtures of a wider scope are set up before any function-scoped
# one, this fixture included, so their descriptors are in the "before" set.
# Pending tasks are looked for at this fixture's teardown: after the test's
# own function-scoped fixtures (set up after it) are finalized, before the
# runner (which it requests) cancels whatever is left and closes the loop.

import asyncio as _asyncio  # noqa: E402  (appended section)
import os as _os  # noqa: E402
from collections.abc import Iterator as _Iterator  # noqa: E402

import pytest as _pytest  # noqa: E402
import pytest_asyncio as _pytest_asyncio  # noqa: E402

_FDS_BEFORE = _pytest.StashKey[set[int]]()


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


@_pytest.fixture(scope="session", autouse=True)
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


@_pytest.fixture(autouse=True)
def _hygiene(request: _pytest.FixtureRequest) -> _Iterator[None]:
    if not _os.path.isdir("/proc/self/fd"):
        yield
        return
    item = request.node
    item.stash[_FDS_BEFORE] = _open_fds()
    loop = None
    if _pytest_asyncio.is_async_test(item):
        scope = getattr(item, "_loop_scope", "function")
        loop = request.getfixturevalue(f"_{scope}_scoped_runner").get_loop()
    yield
    if loop is not None and not loop.is_closed():
        pending = [task for task in _asyncio.all_tasks(loop) if not task.done()]
        if pending:
            _pytest.fail(f"test left {len(pending)} asyncio task(s) pending: {pending!r}", pytrace=False)


@_pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: _pytest.Item, nextitem: _pytest.Item | None) -> _Iterator[None]:
    result = yield
    before = item.stash.get(_FDS_BEFORE, None)
    if before is not None:
        leaked = _open_fds() - before
        if leaked:
            raise AssertionError(f"test left {len(leaked)} descriptor(s) open: {_describe(leaked)}")
    return result
