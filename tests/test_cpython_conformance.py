"""CPython's own socket tests, run against ``asock.sync``.

``test.test_socket`` and ``test.test_timeout`` of the running Python are loaded
(under private module names, so the real ones stay untouched) while
``sys.modules["socket"]`` is ``asock.sync``: every ``socket.`` in them, including
the base classes their test classes subclass at import time, is the facade.
``test.support.socket_helper`` is rebound for the duration of the run too.

Every TestCase class of both modules is collected, except the ones in
``EXCLUDED``: address families and features the facade does not cover (it
covers AF_INET, AF_INET6 and AF_UNIX stream and datagram sockets), and the few
tests that inspect CPython internals rather than behaviour.
"""

from __future__ import annotations

import importlib.util
import sys
import unittest
from collections.abc import Iterator
from types import ModuleType

import pytest

import asock.sync

try:
    from test.support import os_helper, socket_helper, threading_helper  # noqa: F401
except ImportError:  # a Python built without its test package
    pytest.skip("the installed Python has no 'test' package", allow_module_level=True)

# Imported now, so that they (and whatever they import) bind the real module.
import multiprocessing  # noqa: F401
import queue  # noqa: F401
import select  # noqa: F401
import signal  # noqa: F401
import tempfile  # noqa: F401

#: Test classes (or "Class.test_method") not run, each with the reason.
EXCLUDED: dict[str, str] = {
    # Address families and protocols outside AF_INET / AF_INET6 / AF_UNIX.
    "BasicCANTest": "AF_CAN",
    "CANTest": "AF_CAN",
    "ISOTPTest": "AF_CAN (ISO-TP)",
    "J1939Test": "AF_CAN (J1939)",
    "BasicRDSTest": "AF_RDS",
    "RDSTest": "AF_RDS",
    "BasicQIPCRTRTest": "AF_QIPCRTR",
    "BasicVSOCKTest": "AF_VSOCK",
    "ThreadedVSOCKSocketStreamTest": "AF_VSOCK (hangs where /dev/vsock exists without a peer)",
    "BasicBluetoothTest": "AF_BLUETOOTH",
    "TIPCTest": "AF_TIPC",
    "TIPCThreadableTest": "AF_TIPC",
    "LinuxKernelCryptoAPI": "AF_ALG",
    "BasicHyperVTest": "AF_HYPERV",
    # CPython internals (Python >= 3.13): the stdlib module's private
    # pure-Python socketpair() for platforms without one.
    "PurePythonSocketPairTest": "tests socket._fallback_socketpair, a private stdlib helper",
    # CPython internals: these assert that the descriptor's O_NONBLOCK flag
    # follows the Python-level mode (clear in blocking mode).  asock keeps
    # every descriptor non-blocking in every mode (blocking and timeout modes
    # wait with poll, then retry the syscall);
    # tests/test_sync_modes.py checks the same modes' behaviour instead.
    "NonBlockingTCPTests.testSetBlocking": "reads O_NONBLOCK, which asock keeps set in every mode",
    "NonBlockingTCPTests.testSetBlocking_overflow": "reads O_NONBLOCK, which asock keeps set in every mode",
    "NonblockConstantTest.test_SOCK_NONBLOCK": "reads O_NONBLOCK, which asock keeps set in every mode",
}


def _load(name: str) -> ModuleType:
    """Load ``test.<name>`` as a private copy whose ``import socket`` is asock.sync."""
    spec = importlib.util.find_spec(f"test.{name}")
    assert spec is not None and spec.origin is not None
    private = importlib.util.spec_from_file_location(f"asock_conformance_{name}", spec.origin)
    assert private is not None and private.loader is not None
    module = importlib.util.module_from_spec(private)
    real = sys.modules["socket"]
    sys.modules["socket"] = asock.sync
    try:
        private.loader.exec_module(module)
    finally:
        sys.modules["socket"] = real
    assert module.socket is asock.sync
    return module


def _collect(module: ModuleType) -> None:
    for name, value in vars(module).items():
        if not (isinstance(value, type) and issubclass(value, unittest.TestCase)):
            continue
        if value.__module__ != module.__name__:
            continue
        if name in globals():
            raise AssertionError(f"test class {name!r} defined twice")
        if name in EXCLUDED:
            value = unittest.skip(f"excluded: {EXCLUDED[name]}")(value)
        globals()[name] = value
    for key, reason in EXCLUDED.items():
        cls_name, _, method = key.partition(".")
        cls = vars(module).get(cls_name)
        if method and cls is not None:
            setattr(cls, method, unittest.skip(f"excluded: {reason}")(getattr(cls, method)))


def _close_when_setup_skips(cls: type[unittest.TestCase]) -> None:
    """Harness fix, not a test change: ``TCPTimeoutTestCase.setUp`` opens a
    socket and then skips when the internet is unreachable, so its tearDown
    never closes it, and this suite turns ResourceWarning into an error."""
    set_up = cls.setUp

    def setUp(self: unittest.TestCase) -> None:
        try:
            set_up(self)
        except BaseException:
            self.tearDown()
            raise

    cls.setUp = setUp  # type: ignore[method-assign]


_collect(_load("test_socket"))
_timeout = _load("test_timeout")
_close_when_setup_skips(_timeout.TCPTimeoutTestCase)
_collect(_timeout)


@pytest.fixture(autouse=True, scope="module")
def _facade_in_socket_helper() -> Iterator[None]:
    """socket_helper's own sockets (find_unused_port, ...) are facade sockets too."""
    real = socket_helper.socket
    socket_helper.socket = asock.sync  # type: ignore[attr-defined]
    try:
        yield
    finally:
        socket_helper.socket = real  # type: ignore[attr-defined]
