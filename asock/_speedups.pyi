# The optional C extension (asock/_speedups.c); asock/_sync_socket.py binds what it returns.
from collections.abc import Callable
from typing import Any

def methods(cls: type, socket_type: type, wait_first: int, /) -> dict[str, Callable[..., Any]]: ...
def async_steps(
    cls: type, reference: dict[str, Callable[..., Any]], constants: dict[str, Any], /
) -> dict[str, Callable[..., Any]]: ...
