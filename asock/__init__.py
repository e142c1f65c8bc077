"""asock: sockets that are asyncio-native.

``asock`` mirrors the stdlib ``socket`` module for asyncio: ``asock.socket`` is
always non-blocking and its blocking methods are coroutines that wait on the
running loop (the default loop or uvloop).  Every constant, exception and pure
helper of the stdlib module is re-exported unchanged; name resolution is
asynchronous.  ``asock.sync`` is a drop-in replacement for the stdlib module
built on the same non-blocking core.
"""

from socket import *  # noqa: F403  (constants, exceptions and pure helpers, unchanged)
from socket import __all__ as _stdlib_names

from ._async_socket import socket
from ._connect import create_connection, create_server, fromfd, recv_fds, send_fds, socketpair
from ._core import BusyError
from ._resolve import getaddrinfo, getfqdn, gethostbyaddr, gethostbyname, gethostbyname_ex, getnameinfo

#: The socket class, under the stdlib's other name for it.
SocketType = socket

__version__ = "0.1.0"

__all__ = sorted({*_stdlib_names, "BusyError", "getfqdn"} - {"fromshare"})

del _stdlib_names
