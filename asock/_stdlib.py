"""The stdlib ``socket`` names that asock re-exports unchanged.

Constants, exceptions and pure helpers are the stdlib's own objects, so
``except socket.timeout`` or ``asock.AF_INET == socket.AF_INET`` keep working.
The names asock defines itself (the socket class, the calls that block) are
left out here and supplied by the async or the sync side.
"""

from socket import *  # noqa: F403

TYPE_CHECKING = False  # not typing's: importing it would cost more than this whole package

#: Defined by asock itself, in an async form (``asock``) or a facade form (``asock.sync``).
OWN_NAMES = frozenset(
    {
        "socket",
        "SocketType",
        "socketpair",
        "fromfd",
        "fromshare",
        "create_connection",
        "create_server",
        "send_fds",
        "recv_fds",
        "getaddrinfo",
        "getnameinfo",
        "gethostbyname",
        "gethostbyname_ex",
        "gethostbyaddr",
        "getfqdn",
    }
)

if not TYPE_CHECKING:
    # Type checkers read the star import above (all of the stdlib's names);
    # at run time the star import of this module must not bring the
    # stdlib's versions of OWN_NAMES in over asock's.
    import socket as _socket_module

    __all__ = [name for name in _socket_module.__all__ if name not in OWN_NAMES]
