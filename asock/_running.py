"""Which async library runs the calling task: asyncio (any loop) or trio.

trio is never imported here: a program that has not imported it cannot be
running it.  Everything asock does differently under trio is in ``_trio``.
"""

from __future__ import annotations

import sys
from asyncio.events import _get_running_loop
from types import ModuleType

__all__ = ["trio_waiter"]


def trio_waiter() -> ModuleType | None:
    """``asock._trio`` when the caller runs under trio; None under asyncio (or outside both)."""
    if "trio" not in sys.modules or _get_running_loop() is not None:
        return None
    from . import _trio

    return _trio if _trio.current_token() is not None else None
