"""asock: sockets that are asyncio-native.

``asock`` mirrors the stdlib ``socket`` module for asyncio: ``asock.socket`` is
always non-blocking and its blocking methods are coroutines that wait on the
running loop (the default loop or uvloop).  Every constant, exception and pure
helper of the stdlib module is re-exported unchanged; name resolution is
asynchronous.  ``asock.sync`` is a drop-in replacement for the stdlib module
built on the same non-blocking core.
"""

from typing import TYPE_CHECKING

from ._async_socket import SocketType as SocketType
from ._async_socket import socket as socket
from ._connect import create_connection as create_connection
from ._connect import create_server as create_server
from ._connect import fromfd as fromfd
from ._connect import recv_fds as recv_fds
from ._connect import send_fds as send_fds
from ._connect import socketpair as socketpair
from ._core import BusyError as BusyError
from ._resolve import getaddrinfo as getaddrinfo
from ._resolve import getfqdn as getfqdn
from ._resolve import gethostbyaddr as gethostbyaddr
from ._resolve import gethostbyname as gethostbyname
from ._resolve import gethostbyname_ex as gethostbyname_ex
from ._resolve import getnameinfo as getnameinfo
from ._serve import Server as Server
from ._serve import serve as serve
from ._serve import start_server as start_server
from ._stdlib import *  # type: ignore[assignment]  # noqa: F403  (asock's own names above win)
from ._streams import Stream as Stream
from ._streams import StreamReader as StreamReader
from ._streams import StreamWriter as StreamWriter
from ._streams import open_connection as open_connection

__version__ = "0.1.0"

if not TYPE_CHECKING:
    from . import _stdlib

    __all__ = sorted(
        {*_stdlib.__all__, "BusyError", "SocketType", "socket", "socketpair", "fromfd", "create_connection",
         "create_server", "send_fds", "recv_fds", "getaddrinfo", "getnameinfo", "gethostbyname",
         "gethostbyname_ex", "gethostbyaddr", "getfqdn",
         "Server", "serve", "start_server", "Stream", "StreamReader", "StreamWriter", "open_connection"}
    )
    del _stdlib
