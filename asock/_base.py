"""What every asock socket class shares: the plain methods, which never wait.

The async ``asock.socket`` holds its native socket in ``_sock``; the facade
``asock.sync.socket`` *is* its native socket (a subclass of the C type).
Either way the C type's own methods are called on ``_native()`` unbound,
never the facade's waiting overrides.  Both keep the mode
in ``_timeout``; the descriptor itself stays non-blocking in every mode.
"""

from __future__ import annotations

import _socket
import os
import socket as _stdlib

from . import _core

TYPE_CHECKING = False  # not typing's: see _core
if TYPE_CHECKING:
    from typing import Any, TypeVar

    _Self = TypeVar("_Self", bound="SocketBase")

__all__ = ["SocketBase"]

_c = _socket.socket
_c_family = _c.family.__get__
_c_type = _c.type.__get__


class SocketBase:
    """The mode setters and getters, inheritance, enums, ``dup`` and the refusal to pickle."""

    if not TYPE_CHECKING:
        # Empty, so the facade can also derive from the C type; the classes
        # that mix this in declare ``_timeout`` in theirs.
        __slots__ = ()

    _timeout: float | None

    def _native(self) -> _socket.socket:
        """The C socket object the core's operations call: its methods never wait."""
        raise NotImplementedError

    def settimeout(self, value: float | None) -> None:
        """settimeout(timeout): None waits as long as it takes, 0.0 never waits, t > 0 bounds each call."""
        timeout = _core.parse_timeout(value)
        # Re-assert O_NONBLOCK (whoever shares the descriptor may have
        # cleared it), and fail on a closed socket as the stdlib does.
        _c.setblocking(self._native(), False)
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        """gettimeout() -> timeout in seconds, or None"""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """setblocking(flag): True is settimeout(None), False is settimeout(0.0)."""
        blocking = _core.parse_blocking(flag)
        _c.setblocking(self._native(), False)
        self._timeout = None if blocking else 0.0

    def getblocking(self) -> bool:
        """getblocking() -> False only in non-blocking mode (timeout 0.0)"""
        return self._timeout != 0.0

    def get_inheritable(self) -> bool:
        """Whether child processes inherit the descriptor."""
        return os.get_inheritable(_c.fileno(self._native()))

    def set_inheritable(self, inheritable: bool) -> None:
        """Set whether child processes inherit the descriptor."""
        os.set_inheritable(_c.fileno(self._native()), inheritable)

    @property
    def family(self) -> _stdlib.AddressFamily:
        """The address family, as the stdlib's enum where it has one."""
        family: _stdlib.AddressFamily = _convert(_c_family(self._native()), _stdlib.AddressFamily)
        return family

    @property
    def type(self) -> _stdlib.SocketKind:
        """The socket type, as the stdlib's enum where it has one."""
        kind: _stdlib.SocketKind = _convert(_c_type(self._native()), _stdlib.SocketKind)
        return kind

    def dup(self: _Self) -> _Self:
        """dup() -> a new socket of the same class on a duplicate of the descriptor, same mode."""
        sock = self._native()
        cls: Any = type(self)  # both classes take the stdlib's constructor arguments
        new: _Self = cls(_c_family(sock), _c_type(sock), sock.proto, _socket.dup(_c.fileno(sock)))
        new._timeout = self._timeout
        return new

    def __getstate__(self) -> object:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


def _convert(value: int, enum: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        return value
