"""``python -m asock`` / ``asock``: an echo server, a netcat-like client, the benchmark.

Exit codes: 0 success, 1 runtime failure (cannot listen or connect, the
connection broke, the benchmark failed), 2 usage error (bad arguments, or a
command that cannot run in this installation).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO

import asock

__all__ = ["main"]

_PROG = "asock"
_PROGRESS = re.compile(r"progress (\d+)/(\d+)(?: (.*))?$")


class _UsageError(Exception):
    """A mistake on the command line that argparse cannot see: exit 2."""


class _Failure(Exception):
    """A runtime failure with a message for the user: exit 1."""


def _port(text: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not a number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: must be between 0 and 65535")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="asock command-line tools: an echo server, a netcat-like client and the benchmark.",
        epilog="Exit status: 0 on success, 1 on a runtime failure (for example connection refused), "
        "2 on a usage error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {asock.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    echo = commands.add_parser(
        "echo",
        help="run an echo server",
        description="Run an asock echo server: every byte received on a connection is sent back. "
        "Prints 'listening on HOST:PORT' on stderr once ready; stops gracefully on Ctrl-C or SIGTERM.",
    )
    echo.add_argument("--host", default="127.0.0.1", help="address or host name to listen on (default: %(default)s)")
    echo.add_argument("--port", type=_port, default=8007, help="TCP port, 0 for any free port (default: %(default)s)")
    echo.add_argument(
        "--max-connections", type=int, default=None, metavar="N", help="serve at most N connections at once"
    )
    echo.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the default asyncio loop")

    connect = commands.add_parser(
        "connect",
        help="connect to HOST PORT and relay stdin/stdout (like netcat)",
        description="Connect to HOST PORT; send standard input to the socket and the socket's data to standard "
        "output.  At the end of standard input the sending half is shut down (the peer sees EOF); the command "
        "exits when the peer closes the connection.",
    )
    connect.add_argument("host", metavar="HOST", help="host name or address")
    connect.add_argument("port", metavar="PORT", type=_port, help="TCP port")
    connect.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="bound the connection setup")
    connect.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the default asyncio loop")

    bench = commands.add_parser(
        "bench",
        usage="%(prog)s [-h] [--script SCRIPT] [BENCH_OPTION ...]",
        help="run the benchmark's quick subset and print the comparison table",
        description="Run the quick subset of the benchmark (examples/bench/run.py from the source repository) "
        "with a progress bar on stderr, and print its comparison table on stdout.  Other options go to the "
        "benchmark script unchanged (e.g. --duration 2, --impl asock-uvloop; see run.py --help).",
    )
    bench.add_argument(
        "--script", type=Path, default=None, help="benchmark script to run (default: the repository's run.py)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if args[:1] == ["bench"]:
        args, passthrough = _split_bench(args)
    options = parser.parse_args(args)
    try:
        if options.command == "echo":
            if options.max_connections is not None and options.max_connections < 1:
                raise _UsageError("--max-connections must be at least 1")
            return _run(_echo(options.host, options.port, options.max_connections), options.uvloop)
        if options.command == "connect":
            if options.timeout is not None and not options.timeout > 0:
                raise _UsageError("--timeout must be a positive number of seconds")
            return _run(_connect(options.host, options.port, options.timeout), options.uvloop)
        return _bench(options.script, passthrough)
    except _UsageError as exc:
        parser.exit(2, f"{_PROG} {options.command}: error: {exc}\n")
    except _Failure as exc:
        print(f"{_PROG} {options.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _split_bench(args: list[str]) -> tuple[list[str], list[str]]:
    """``bench``'s own options, and the rest (in order) for the benchmark script."""
    own = [args[0]]
    passthrough: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--":
            passthrough.extend(rest)
        elif arg in ("-h", "--help") or arg.startswith("--script="):
            own.append(arg)
        elif arg == "--script":
            own.extend([arg, *[value for value in [next(rest, None)] if value is not None]])
        else:
            passthrough.append(arg)
    return own, passthrough


def _run(coro: Coroutine[Any, Any, int], use_uvloop: bool) -> int:
    factory = None
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            coro.close()
            raise _Failure("--uvloop needs the uvloop package (pip install 'asock[uvloop]')") from None
        factory = uvloop.new_event_loop
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    loop = factory() if factory is not None else asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# -- echo ------------------------------------------------------------------


async def _echo_handler(conn: asock.socket) -> None:
    while data := await conn.recv(65536):
        await conn.sendall(data)


async def _echo(host: str, port: int, max_connections: int | None) -> int:
    try:
        infos = await asock.getaddrinfo(host, port, 0, asock.SOCK_STREAM, 0, asock.AI_PASSIVE)
    except asock.gaierror as exc:
        raise _Failure(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    try:
        listener = asock.create_server(address, family=family)
    except OSError as exc:
        raise _Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = listener.getsockname()
    server = await asock.start_server(_echo_handler, listener, max_connections=max_connections)
    print(f"listening on {_format(bound)}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with server:
            stopping = asyncio.ensure_future(stop.wait())
            serving = asyncio.ensure_future(server.serve_forever())
            await asyncio.wait({stopping, serving}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if serving.done():
                serving.result()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return 0


def _format(address: Any) -> str:
    if isinstance(address, tuple):
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


# -- connect ---------------------------------------------------------------


def _stdin_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes]) -> None:
    """Feed stdin to the loop from a daemon thread: works for ttys, pipes and files alike.

    A thread, rather than ``connect_read_pipe``, because regular files cannot
    be polled and a non-blocking tty would stay non-blocking for the shell.
    The bounded queue gives back-pressure; the thread is a daemon so a stdin
    that never ends cannot keep the process alive.
    """
    fd = sys.stdin.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        try:
            asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):
            return  # the loop is gone
        if not chunk:
            return


async def _pump_stdin(sock: asock.socket, queue: asyncio.Queue[bytes]) -> None:
    while chunk := await queue.get():
        await sock.sendall(chunk)
    sock.shutdown(asock.SHUT_WR)


async def _pump_stdout(sock: asock.socket, out: TextIO) -> None:
    stdout = out.buffer
    while data := await sock.recv(65536):
        stdout.write(data)
        stdout.flush()


async def _connect(host: str, port: int, timeout: float | None) -> int:
    try:
        sock = await asock.create_connection((host, port), timeout=timeout)
    except asock.gaierror as exc:
        raise _Failure(f"cannot resolve {host!r}: {exc.strerror}") from None
    except TimeoutError:
        raise _Failure(f"connecting to {host}:{port} timed out") from None
    except OSError as exc:
        raise _Failure(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)
    threading.Thread(target=_stdin_reader, args=(loop, queue), name="asock-stdin", daemon=True).start()
    with sock:
        sock.settimeout(None)
        sending = asyncio.ensure_future(_pump_stdin(sock, queue))
        receiving = asyncio.ensure_future(_pump_stdout(sock, sys.stdout))
        try:
            # The session ends when the peer closes; stdin may still be open.
            await receiving
            if sending.done() and not sending.cancelled() and sending.exception() is not None:
                await sending
        except OSError as exc:
            raise _Failure(f"connection to {host}:{port} failed: {exc.strerror or exc}") from None
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
    return 0


# -- bench -----------------------------------------------------------------


def _bench_script() -> Path:
    return Path(asock.__file__).resolve().parent.parent / "examples" / "bench" / "run.py"


def _bench(script: Path | None, args: Sequence[str]) -> int:
    path = script if script is not None else _bench_script()
    if not path.is_file():
        raise _UsageError(
            f"the benchmark script {str(path)!r} was not found; it ships with asock's source repository "
            "(examples/bench/run.py), not with an installed wheel: run this from a source checkout"
        )
    command = [sys.executable, str(path), "--quick", "--progress", *args]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1) as child:
        assert child.stderr is not None
        bar = _ProgressBar(sys.stderr)
        for line in child.stderr:
            match = _PROGRESS.match(line.rstrip("\n"))
            if match:
                bar.update(int(match.group(1)), int(match.group(2)), match.group(3) or "")
            else:
                bar.clear()
                sys.stderr.write(line)
        bar.finish()
        status = child.wait()
    if status != 0:
        raise _Failure(f"the benchmark failed (exit status {status})")
    return 0


class _ProgressBar:
    """Redraws one line on a terminal; prints one line per update elsewhere (logs, CI)."""

    _WIDTH = 30

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._drawn = False

    def update(self, done: int, total: int, label: str) -> None:
        filled = self._WIDTH * done // total if total > 0 else 0
        text = f"[{'#' * filled}{'.' * (self._WIDTH - filled)}] {done}/{total} {label}".rstrip()
        if self._tty:
            self._out.write(f"\r\x1b[K{text}")
            self._drawn = True
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def clear(self) -> None:
        if self._drawn:
            self._out.write("\r\x1b[K")
            self._drawn = False

    def finish(self) -> None:
        if self._drawn:
            self._out.write("\n")
            self._drawn = False
        self._out.flush()
