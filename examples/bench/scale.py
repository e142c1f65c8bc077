"""Memory per idle connection: one server process holding N connections.

    python examples/bench/scale.py [--conns 10000] [--impl asock-asyncio --impl streams-asyncio ...] [--json]

For each implementation: start an echo server process, read its resident
memory (VmRSS, after ``gc.collect()``), open N connections to it from a client
process, echo one byte on each (so every handler has been through a full
receive and send and is back to waiting), read the server's memory again, and
report (RSS held - RSS before) / N.  Then the client closes everything and the
server must see every connection go.  Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from typing import IO, Any

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

IMPLS = ["asock-asyncio", "asock-uvloop", "streams-asyncio", "streams-uvloop"]
DEFAULT_IMPLS = ["asock-asyncio", "streams-asyncio"]
TARGET = 0.5  # asock's bytes per connection <= TARGET x streams' (same loop)


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {needed} descriptors needed; lower --conns")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def pin(index: int) -> None:
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(0, {cpus[index]})


# -- the server process ---------------------------------------------------------


async def serve(impl: str, conns: int) -> None:
    """Echo server; answers 'stat' on stdin with 'STAT <open connections> <VmRSS KiB>'."""
    loop = asyncio.get_running_loop()
    active = 0
    stop = asyncio.Event()

    if impl.startswith("asock"):
        import asock

        async def handle_asock(conn: asock.socket) -> None:
            nonlocal active
            active += 1
            try:
                async with conn:
                    while data := await conn.recv(1024):
                        await conn.sendall(data)
            except OSError:
                pass
            finally:
                active -= 1

        srv = asock.create_server(("127.0.0.1", 0), backlog=4096)
        port = srv.getsockname()[1]
        tasks: set[asyncio.Task[None]] = set()

        async def accept_loop() -> None:
            while True:
                conn, _ = await srv.accept()
                task = asyncio.create_task(handle_asock(conn))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        acceptor = asyncio.create_task(accept_loop())
    else:

        async def handle_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal active
            active += 1
            try:
                while data := await reader.read(1024):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                active -= 1
                writer.close()

        server = await asyncio.start_server(handle_streams, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]

    pending = b""

    def on_stdin() -> None:
        nonlocal pending
        chunk = os.read(0, 4096)
        if not chunk:
            stop.set()
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip() == b"stat":
                gc.collect()
                print(f"STAT {active} {rss_kib()}", flush=True)
            elif line.strip() == b"trace":
                report_allocations(active)

    loop.add_reader(0, on_stdin)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"READY {port}", flush=True)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(0)
        if impl.startswith("asock"):
            acceptor.cancel()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(acceptor, *tasks, return_exceptions=True)
            srv.close()
        else:
            server.close()


_baseline: tracemalloc.Snapshot | None = None


def report_allocations(active: int) -> None:
    """--trace: the first call takes a baseline, the next reports the growth per connection."""
    global _baseline
    gc.collect()
    if not tracemalloc.is_tracing():
        print("END", flush=True)
        return
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    if _baseline is None or not active:
        _baseline = snap
        print("END", flush=True)
        return
    stats = snap.compare_to(_baseline, "lineno")
    total = sum(st.size_diff for st in stats)
    print(f"TRACE {total / active:.0f} B per connection in Python objects; top allocation sites:")
    for st in stats[:15]:
        frame = st.traceback[0]
        where = f"{os.path.relpath(frame.filename)}:{frame.lineno}"
        print(f"TRACE {st.size_diff / active:8.0f} B  {st.count_diff / active:5.2f} blocks  {where}")
    print("END", flush=True)


def run_server(impl: str, conns: int, trace: bool) -> int:
    if trace:
        tracemalloc.start()
    raise_nofile(conns + 256)
    pin(0)
    loop: asyncio.AbstractEventLoop
    if impl.endswith("uvloop"):
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve(impl, conns))
    finally:
        loop.close()
    return 0


# -- the client process -----------------------------------------------------------


def run_client(port: int, conns: int) -> int:
    """Open the connections, echo one byte on each, hold them until stdin closes."""
    raise_nofile(conns + 256)
    pin(1)
    socks: list[socket.socket] = []
    try:
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            socks.append(s)
        for s in socks:
            s.sendall(b"x")
        for s in socks:
            if s.recv(1) != b"x":
                raise RuntimeError("bad echo")
        print(f"CONNECTED {len(socks)}", flush=True)
        sys.stdin.read()
    finally:
        for s in socks:
            s.close()
    return 0


# -- the driver ---------------------------------------------------------------------


def read_line(stream: IO[bytes], timeout: float, what: str) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise RuntimeError(f"timed out waiting for {what}")
    line = stream.readline().decode().strip()
    if not line:
        raise RuntimeError(f"process exited while waiting for {what}")
    return line


def trace(server: subprocess.Popen[bytes]) -> list[str]:
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(b"trace\n")
    server.stdin.flush()
    lines = []
    while (line := read_line(server.stdout, 60, "the allocation report")) != "END":
        lines.append(line.removeprefix("TRACE "))
    return lines


def stat(server: subprocess.Popen[bytes]) -> tuple[int, int]:
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(b"stat\n")
    server.stdin.flush()
    _, active, rss = read_line(server.stdout, 30, "the server's memory report").split()
    return int(active), int(rss)


def wait_for_count(server: subprocess.Popen[bytes], want: int, timeout: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        active, rss = stat(server)
        if active == want or time.monotonic() > deadline:
            return active, rss
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(impl: str, conns: int, want_trace: bool = False) -> dict[str, Any]:
    me = os.path.abspath(__file__)
    # Unbuffered: read_line waits with select(), which cannot see bytes that
    # a buffered reader has already pulled out of the pipe.
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "bufsize": 0}
    cmd = [sys.executable, me, "--serve", impl, "--conns", str(conns)] + (["--trace"] if want_trace else [])
    server = subprocess.Popen(cmd, **pipes)
    client = None
    try:
        assert server.stdout is not None
        port = int(read_line(server.stdout, 30, "the server to listen").split()[1])
        _, before = stat(server)
        if want_trace:
            trace(server)
        start = time.monotonic()
        client = subprocess.Popen([sys.executable, me, "--client", str(port), "--conns", str(conns)], **pipes)
        assert client.stdout is not None
        line = read_line(client.stdout, 120 + conns / 100, "the client to connect")
        if line != f"CONNECTED {conns}":
            raise RuntimeError(f"client: {line}")
        active, held = wait_for_count(server, conns, 30)
        if active != conns:
            raise RuntimeError(f"the server holds {active} of {conns} connections")
        setup = time.monotonic() - start
        allocations = trace(server) if want_trace else []
        stop(client)  # closing its stdin makes it close every connection
        client = None
        after, _ = wait_for_count(server, 0, 30)
        if after != 0:
            raise RuntimeError(f"{after} connections still open on the server after the client closed them")
        return {
            "impl": impl,
            "conns": conns,
            "rss_before_kib": before,
            "rss_held_kib": held,
            "bytes_per_conn": (held - before) * 1024 / conns,
            "setup_s": setup,
            "allocations": allocations,
        }
    finally:
        if client is not None:
            client.kill()
            stop(client)
        stop(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scale.py", description="memory per idle connection, asock vs streams")
    parser.add_argument("--conns", type=int, default=10000, help="connections held at once (default 10000)")
    parser.add_argument("--impl", action="append", choices=IMPLS, help="implementation (repeatable)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument(
        "--trace", action="store_true", help="print where each server's per-connection memory goes (tracemalloc)"
    )
    parser.add_argument("--serve", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.conns <= 0:
        parser.error("--conns must be positive")
    if args.serve:
        return run_server(args.serve, args.conns, args.trace)
    if args.client:
        return run_client(args.client, args.conns)

    impls = args.impl or DEFAULT_IMPLS
    rows = [measure(impl, args.conns, args.trace) for impl in impls]
    by_impl = {r["impl"]: r for r in rows}
    ratios = []
    for loop in ("asyncio", "uvloop"):
        a, s = by_impl.get(f"asock-{loop}"), by_impl.get(f"streams-{loop}")
        if a and s and s["bytes_per_conn"] > 0:
            ratio = a["bytes_per_conn"] / s["bytes_per_conn"]
            verdict = "PASS" if ratio <= TARGET else "FAIL"
            ratios.append({"loop": loop, "ratio": ratio, "target": TARGET, "verdict": verdict})
    if args.json:
        print(json.dumps({"results": rows, "ratios": ratios}, indent=2))
        return 0
    print(f"{args.conns} idle connections held by one server process (loopback), server RSS after gc.collect()")
    header = ("impl", "conns", "RSS before", "RSS held", "per connection", "setup")
    table = [header]
    for r in rows:
        table.append(
            (
                r["impl"],
                str(r["conns"]),
                f"{r['rss_before_kib'] / 1024:.1f} MiB",
                f"{r['rss_held_kib'] / 1024:.1f} MiB",
                f"{r['bytes_per_conn'] / 1024:.2f} KiB",
                f"{r['setup_s']:.1f} s",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if r["allocations"]:
            print(f"\n{r['impl']} (RSS above includes tracemalloc's own overhead):")
            print("\n".join("  " + line for line in r["allocations"]))
    for r in ratios:
        print(
            f"{r['verdict']}  memory per connection on {r['loop']}: asock / streams = {r['ratio']:.2f}"
            f" (target <= {r['target']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
