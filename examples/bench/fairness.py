"""The fairness budget: a reader whose receives always complete at once.

    python examples/bench/fairness.py [--budget 8 --budget 64 ...] [--mib 64]

A thread keeps a socketpair's large buffers full, so every ``recv(4096)`` of
the asock reader completes without waiting.  Next to the reader runs a task
that only does ``await asyncio.sleep(0)`` in a loop.  For each budget (how
many immediate calls a task may make before asock yields once) and loop, the
table shows the reader's receives per second and how long the other task
waited for its turns (p99 and max).  An unbounded budget is asyncio's
``sock_recv`` behaviour: the other task starves until the reader is done.
asock's budget is ``asock._async_socket._BUDGET``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import asock  # noqa: E402
import asock._async_socket as driver  # noqa: E402

UNBOUNDED = 10**9


def feed(sock: socket.socket, total: int) -> None:
    chunk = b"y" * (1 << 20)
    sent = 0
    with sock:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)


async def measure(total: int) -> tuple[float, float, float]:
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    feeder = threading.Thread(target=feed, args=(b, total))
    feeder.start()
    time.sleep(0.2)  # let the buffers fill: from here on every receive completes at once
    waits: list[float] = []
    done = False

    async def other_task() -> None:
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(0)
            waits.append(time.perf_counter() - start)

    reader = asock.socket(fileno=a.detach())
    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    calls = 0
    start = time.perf_counter()
    with reader:
        while await reader.recv(4096):
            calls += 1
    elapsed = time.perf_counter() - start
    done = True
    await other
    feeder.join()
    waits.sort()
    return calls / elapsed, waits[int(len(waits) * 0.99)] * 1e6, waits[-1] * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, action="append", help="budget to try (repeatable)")
    parser.add_argument("--mib", type=int, default=64, help="MiB the reader receives per run (default 64)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per cell, best kept (default 2)")
    args = parser.parse_args(argv)
    budgets = args.budget or [8, 16, 64, 256, UNBOUNDED]
    loops: list[tuple[str, Callable[[Coroutine[Any, Any, Any]], Any]]] = [("asyncio", asyncio.run)]
    try:
        import uvloop

        loops.append(("uvloop", uvloop.run))
    except ImportError:
        pass
    saved = driver._BUDGET
    print(f"current budget: {saved}")
    print(f"{'budget':>9}  {'loop':8}  {'recv/s':>9}  {'other task p99 wait':>19}  {'max wait':>9}")
    try:
        for budget in budgets:
            driver._BUDGET = budget
            for name, run in loops:
                rate, p99, worst = max(run(measure(args.mib << 20)) for _ in range(args.rounds))
                label = "unbounded" if budget == UNBOUNDED else str(budget)
                print(f"{label:>9}  {name:8}  {rate:9,.0f}  {p99:16,.0f} us  {worst:6,.0f} us")
    finally:
        driver._BUDGET = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
