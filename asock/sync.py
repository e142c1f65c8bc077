"""A drop-in replacement for the stdlib ``socket`` module::

    import asock.sync as socket

Every public name of the stdlib module is here.  ``socket``, ``socketpair``,
``fromfd``, ``create_connection``, ``create_server`` and ``accept()`` give
``asock.sync.socket`` objects: the stdlib's blocking, non-blocking and timeout
modes, reproduced over a descriptor that is always non-blocking and driven by
the same operation core as the async ``asock.socket``.  Constants, exceptions,
name resolution and the other helpers are the stdlib's own objects, and so is
the process-wide default timeout (``getdefaulttimeout``/``setdefaulttimeout``),
which both asock sides share.

As in the stdlib, ``SocketType`` is the C base type ``_socket.socket``, of
which every facade socket is an instance.
"""

from __future__ import annotations

import socket as _stdlib
from socket import *  # noqa: F403  (constants, exceptions and helpers, unchanged)
from socket import AddressInfo, MsgFlag, SocketIO  # noqa: F401  (public, not in the stdlib's __all__)

from ._make import GLOBAL_DEFAULT_TIMEOUT as _GLOBAL_DEFAULT_TIMEOUT
from ._make import connection_failed, make_fromfd, make_server, make_socketpair
from ._sync_socket import socket  # type: ignore[assignment]  # the facade's class stands in for the stdlib's

TYPE_CHECKING = False  # not typing's: importing it would double this module's import time
if TYPE_CHECKING:
    from typing import Any

# Private names of the stdlib module that stdlib-based code and CPython's own
# tests reach for.
_GiveupOnSendfile: type[Exception] = getattr(_stdlib, "_GiveupOnSendfile")  # noqa: B009
_LOCALHOST: str = getattr(_stdlib, "_LOCALHOST")  # noqa: B009
_LOCALHOST_V6: str = getattr(_stdlib, "_LOCALHOST_V6")  # noqa: B009

__all__ = list(_stdlib.__all__)


def socketpair(family: int | None = None, type: int = SOCK_STREAM, proto: int = 0) -> tuple[socket, socket]:  # type: ignore[no-redef]  # replaces the star-imported stdlib one  # noqa: F405
    """socketpair([family[, type[, proto]]]) -> (socket object, socket object)

    A connected pair, AF_UNIX unless told otherwise.
    """
    return make_socketpair(socket, family, type, proto)


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket:  # type: ignore[no-redef]  # replaces the star-imported stdlib one
    """fromfd(fd, family, type[, proto]) -> socket object on a duplicate of ``fd``."""
    result: socket = make_fromfd(socket, fd, family, type, proto)
    return result


def create_server(  # type: ignore[no-redef]  # replaces the star-imported stdlib one
    address: Any,
    *,
    family: int = AF_INET,  # noqa: F405
    backlog: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
) -> socket:
    """A listening socket bound to ``address``, as the stdlib's ``create_server``."""
    result: socket = make_server(
        socket, address, family=family, backlog=backlog, reuse_port=reuse_port, dualstack_ipv6=dualstack_ipv6
    )
    return result


def create_connection(  # type: ignore[no-redef]  # replaces the star-imported stdlib one
    address: tuple[str | None, int | str],
    timeout: float | None = _GLOBAL_DEFAULT_TIMEOUT,
    source_address: Any = None,
    *,
    all_errors: bool = False,
) -> socket:
    """Connect to ``(host, port)`` and return the socket, as the stdlib does.

    The addresses ``getaddrinfo`` gives are tried one after the other until
    one connects; ``timeout`` applies to each socket (and stays its timeout).
    When every attempt fails, the last error is raised, or with
    ``all_errors=True`` an ``ExceptionGroup`` of all of them.
    """
    host, port = address
    failures: list[OSError] = []
    # The module globals are looked up at call time, so code (and tests)
    # that swap ``socket`` or ``getaddrinfo`` on this module are honoured.
    for family, kind, proto, _canonname, sockaddr in getaddrinfo(host, port, 0, SOCK_STREAM):  # noqa: F405
        sock = None
        try:
            sock = socket(family, kind, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            failures.append(exc)
        except BaseException:
            # A bad timeout or source address: the stdlib leaks the socket here.
            if sock is not None:
                sock.close()
            raise
        if sock is not None:
            sock.close()
    try:
        raise connection_failed(failures, all_errors, first=False)
    finally:
        failures.clear()  # the tracebacks reference this frame: drop the cycle
