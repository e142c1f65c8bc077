"""Name resolution that never blocks the event loop.

Each helper runs the stdlib's own function in a worker thread (the asyncio
loop's default executor, or trio's thread pool), so results (address-family
enums, error types and messages) are exactly the stdlib's on every loop,
uvloop and trio included.
"""

from __future__ import annotations

import _socket
import asyncio
import functools
import socket as _stdlib
from typing import Any

from ._running import trio_waiter

__all__ = [
    "getaddrinfo",
    "getfqdn",
    "gethostbyaddr",
    "gethostbyname",
    "gethostbyname_ex",
    "getnameinfo",
    "resolve_address",
]

async def _off_loop(func: Any, *args: Any) -> Any:
    """Run the stdlib's blocking call in a worker thread of the running async library."""
    trio = trio_waiter()
    if trio is not None:
        return await trio.run_in_thread(func, *args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args))


async def getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[_stdlib.AddressFamily, _stdlib.SocketKind, int, str, tuple[Any, ...]]]:
    """``socket.getaddrinfo`` without blocking the event loop."""
    result: list[Any] = await _off_loop(_stdlib.getaddrinfo, host, port, family, type, proto, flags)
    return result


async def getnameinfo(sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
    """``socket.getnameinfo`` without blocking the event loop."""
    result: tuple[str, str] = await _off_loop(_stdlib.getnameinfo, sockaddr, flags)
    return result


async def gethostbyname(hostname: str) -> str:
    """``socket.gethostbyname`` without blocking the event loop."""
    result: str = await _off_loop(_stdlib.gethostbyname, hostname)
    return result


async def gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    """``socket.gethostbyname_ex`` without blocking the event loop."""
    result: tuple[str, list[str], list[str]] = await _off_loop(_stdlib.gethostbyname_ex, hostname)
    return result


async def gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    """``socket.gethostbyaddr`` without blocking the event loop."""
    result: tuple[str, list[str], list[str]] = await _off_loop(_stdlib.gethostbyaddr, ip_address)
    return result


async def getfqdn(name: str = "") -> str:
    """``socket.getfqdn`` without blocking the event loop."""
    result: str = await _off_loop(_stdlib.getfqdn, name)
    return result


def _is_numeric(family: int, host: str) -> bool:
    if host in ("", "<broadcast>"):
        return True
    # A numeric address of the other family is no name either: the native
    # call rejects it without DNS, with the stdlib's own error.
    for candidate in (_socket.AF_INET, _socket.AF_INET6):
        try:
            # An IPv6 literal may carry a zone ("fe80::1%eth0"): still numeric.
            _socket.inet_pton(candidate, host.partition("%")[0] if candidate == _socket.AF_INET6 else host)
        except (OSError, ValueError):
            continue
        return True
    try:
        _socket.inet_aton(host)  # the short IPv4 forms ("127.1"), also parsed without DNS
    except (OSError, ValueError):
        return False
    return True


async def resolve_address(family: int, kind: int, proto: int, address: Any) -> Any:
    """Resolve a ``(host, port, ...)`` address whose host is a name.

    The native socket would resolve such a name itself, inside ``connect`` or
    ``sendto``, blocking the loop for as long as DNS takes.  Numeric hosts,
    non-IP families and malformed addresses pass through untouched, so the
    native call reports their errors exactly as the stdlib does.
    """
    if (
        family not in (_socket.AF_INET, _socket.AF_INET6)
        or not isinstance(address, tuple)
        or not 2 <= len(address) <= (2 if family == _socket.AF_INET else 4)
        or not isinstance(address[0], str)
        or not isinstance(address[1], int)
        or not 0 <= address[1] <= 65535
        or _is_numeric(family, address[0])
    ):
        return address
    infos = await getaddrinfo(address[0], address[1], family, kind, proto)
    resolved = infos[0][4]
    if family == _socket.AF_INET6 and len(address) > 2:
        # Keep the caller's flowinfo and scope id where it gave them.
        return (resolved[0], resolved[1], *address[2:])
    return resolved
