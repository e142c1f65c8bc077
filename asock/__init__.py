"""asock: sockets that are asyncio-native.

``asock`` mirrors the stdlib ``socket`` module for asyncio: ``asock.socket`` is
always non-blocking and its blocking methods are coroutines that wait on the
running loop (the default loop or uvloop).  Every constant, exception and pure
helper of the stdlib module is re-exported unchanged; name resolution is
asynchronous.  ``asock.sync`` is a drop-in replacement for the stdlib module
built on the same non-blocking core.
"""

from __future__ import annotations

from ._core import BusyError as BusyError

# The async API is imported on first use: ``import asock.sync`` runs this
# module too, and a program using only the drop-in facade must not pay for
# asyncio (about five times the import time of the stdlib socket module).
# Type checkers and readers see the names here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._async_socket import SocketType as SocketType
    from ._async_socket import socket as socket
    from ._connect import create_connection as create_connection
    from ._connect import create_server as create_server
    from ._connect import fromfd as fromfd
    from ._connect import recv_fds as recv_fds
    from ._connect import send_fds as send_fds
    from ._connect import socketpair as socketpair
    from ._resolve import getaddrinfo as getaddrinfo
    from ._resolve import getfqdn as getfqdn
    from ._resolve import gethostbyaddr as gethostbyaddr
    from ._resolve import gethostbyname as gethostbyname
    from ._resolve import gethostbyname_ex as gethostbyname_ex
    from ._resolve import getnameinfo as getnameinfo
    from ._serve import Server as Server
    from ._serve import serve as serve
    from ._serve import start_server as start_server
    from ._ssl_socket import SSLSocket as SSLSocket
    from ._ssl_socket import start_tls as start_tls
    from ._streams import Stream as Stream
    from ._streams import StreamReader as StreamReader
    from ._streams import StreamWriter as StreamWriter
    from ._streams import open_connection as open_connection

# After the names above, for type checkers; at run time it has none of them.
from ._stdlib import *  # type: ignore[assignment]  # noqa: E402, F403

__version__ = "0.1.0"

_ASYNC_API = {
    "_async_socket": ("SocketType", "socket"),
    "_connect": ("create_connection", "create_server", "fromfd", "recv_fds", "send_fds", "socketpair"),
    "_resolve": ("getaddrinfo", "getfqdn", "gethostbyaddr", "gethostbyname", "gethostbyname_ex", "getnameinfo"),
    "_serve": ("Server", "serve", "start_server"),
    "_ssl_socket": ("SSLSocket", "start_tls"),
    "_streams": ("Stream", "StreamReader", "StreamWriter", "open_connection"),
}

if not TYPE_CHECKING:
    from . import _stdlib

    __all__ = sorted({*_stdlib.__all__, "BusyError", *(name for names in _ASYNC_API.values() for name in names)})
    del _stdlib


def _load_async_api() -> None:
    from importlib import import_module

    namespace = globals()
    for module, names in _ASYNC_API.items():
        loaded = import_module(f"{__name__}.{module}")
        for name in names:
            namespace[name] = getattr(loaded, name)


def __getattr__(name: str) -> object:
    # Only reached for names not set yet: the first one loads the whole async API.
    # Not for private names: ``from . import _submodule`` asks here first, and
    # must not load asyncio into ``import asock.sync``.
    if not name.startswith("_"):
        _load_async_api()
        namespace = globals()
        if name in namespace:
            return namespace[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *globals()["__all__"]})
