"""Making sockets of either class: listening sockets, pairs, descriptors.

None of this ever waits, so one definition serves the async ``asock.socket``
and the facade ``asock.sync.socket``: each takes the class to build.  Also
the one rule both ``create_connection`` functions end with when every
attempt failed.
"""

from __future__ import annotations

import _socket
import os
import socket as _stdlib
import sys

TYPE_CHECKING = False  # not typing's: see _core
if TYPE_CHECKING:
    from typing import Any

__all__ = ["GLOBAL_DEFAULT_TIMEOUT", "connection_failed", "make_fromfd", "make_server", "make_socketpair"]

#: Stands for "use getdefaulttimeout()" in ``create_connection``: the stdlib's own sentinel.
GLOBAL_DEFAULT_TIMEOUT: Any = getattr(_stdlib, "_GLOBAL_DEFAULT_TIMEOUT")  # noqa: B009  (private to the stdlib)


def make_server(
    cls: Any,
    address: Any,
    *,
    family: int = _socket.AF_INET,
    backlog: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
) -> Any:
    """Build a bound, listening socket of class ``cls`` (stdlib rules)."""
    if reuse_port and not hasattr(_socket, "SO_REUSEPORT"):
        raise ValueError("SO_REUSEPORT not supported on this platform")
    if dualstack_ipv6:
        if not _stdlib.has_dualstack_ipv6():
            raise ValueError("dualstack_ipv6 not supported on this platform")
        if family != _socket.AF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = cls(family, _socket.SOCK_STREAM)
    try:
        # Lets a restarted server bind while old connections sit in
        # TIME_WAIT; unlike SO_REUSEPORT it never lets two servers share a
        # port, so it is safe to set by default.
        if os.name not in ("nt", "cygwin") and hasattr(_socket, "SO_REUSEADDR"):
            try:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            except OSError:
                pass
        if reuse_port:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEPORT, 1)
        if _socket.has_ipv6 and family == _socket.AF_INET6:
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 0 if dualstack_ipv6 else 1)
        try:
            sock.bind(address)
        except OSError as err:
            raise OSError(err.errno, f"{err.strerror} (while attempting to bind on address {address!r})") from None
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise


def make_fromfd(cls: Any, fd: int, family: int, type: int, proto: int) -> Any:
    """A ``cls`` socket on a duplicate of ``fd`` (which is left open)."""
    duplicate = _socket.dup(fd)
    try:
        return cls(family, type, proto, duplicate)
    except BaseException:
        os.close(duplicate)  # the stdlib leaks it when the arguments are bad
        raise


def make_socketpair(cls: Any, family: int | None, type: int, proto: int) -> tuple[Any, Any]:
    """A connected pair of ``cls`` sockets (AF_UNIX unless told otherwise)."""
    if family is None:
        family = _socket.AF_UNIX if hasattr(_socket, "AF_UNIX") else _socket.AF_INET
    a, b = _socket.socketpair(family, type, proto)
    try:
        return cls(family, type, proto, a.detach()), cls(family, type, proto, b.detach())
    finally:
        a.close()
        b.close()


def connection_failed(errors: list[OSError], all_errors: bool, first: bool) -> BaseException:
    """What ``create_connection`` raises when no attempt connected.

    The stdlib's message when there was no address to try; with
    ``all_errors`` an ``ExceptionGroup`` of every attempt's error; otherwise
    one error: the first address's (``first``, as Happy Eyeballs reports) or
    the last one's (as the stdlib's sequential attempts do).
    """
    if not errors:
        return OSError("getaddrinfo returns an empty list")
    if all_errors:
        message = "create_connection failed"
        if sys.version_info >= (3, 11):
            return ExceptionGroup(message, errors)  # noqa: F821
        # Python 3.10 has no ExceptionGroup: keep every error reachable.
        err = OSError(f"{message}: " + "; ".join(str(e) for e in errors))
        setattr(err, "exceptions", errors)  # noqa: B010  (the attribute ExceptionGroup has)
        return err
    return errors[0] if first else errors[-1]
