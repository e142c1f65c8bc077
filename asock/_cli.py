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
import ssl
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
    echo.add_argument("--tls", action="store_true", help="serve TLS (needs --cert)")
    echo.add_argument("--cert", metavar="FILE", help="the server's certificate chain (PEM), for --tls")
    echo.add_argument("--key", metavar="FILE", help="its private key (PEM), if not in the --cert file")

    connect = commands.add_parser(
        "connect",
        help="connect to HOST PORT and relay stdin/stdout (like netcat)",
        description="Connect to HOST PORT; send standard input to the socket and the socket's data to standard "
        "output.  At the end of standard input the sending half is shut down (the peer sees EOF; over TLS, "
        "close_notify); the command exits when the peer closes the connection.",
    )
    connect.add_argument("host", metavar="HOST", help="host name or address")
    connect.add_argument("port", metavar="PORT", type=_port, help="TCP port")
    connect.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="bound the connection setup")
    connect.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the default asyncio loop")
    connect.add_argument(
        "--tls", action="store_true", help="speak TLS, checking the server's certificate and host name"
    )
    connect.add_argument(
        "--cafile", metavar="FILE", help="trust the CA certificates in FILE (PEM) instead of the system's, for --tls"
    )
    connect.add_argument(
        "--insecure", action="store_true", help="with --tls, do not check the certificate or the host name"
    )

    bench = commands.add_parser(
        "bench",
        usage="%(prog)s [-h] [--script SCRIPT] [BENCH_OPTION ...]",
        help="run the benchmark's quick subset and print the comparison table",
        description="Run the quick subset of the echo benchmark that ships with asock, with a progress bar on "
        "stderr, and print its comparison table on stdout.  Its C load client is compiled with gcc (or $CC) on "
        "first use, into $XDG_CACHE_HOME/asock (default ~/.cache/asock).  Other options go to the benchmark "
        "unchanged (e.g. --duration 2, --impl asock-uvloop; see examples/bench/run.py --help).",
    )
    bench.add_argument(
        "--script", type=Path, default=None, help="benchmark script to run instead (default: the packaged one)"
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
            context = _server_context(options.tls, options.cert, options.key)
            return _run(_echo(options.host, options.port, options.max_connections, context), options.uvloop)
        if options.command == "connect":
            if options.timeout is not None and not options.timeout > 0:
                raise _UsageError("--timeout must be a positive number of seconds")
            context = _client_context(options.tls, options.cafile, options.insecure)
            return _run(_connect(options.host, options.port, options.timeout, context), options.uvloop)
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


# -- TLS -------------------------------------------------------------------


def _server_context(tls: bool, cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not tls:
        if cert is not None or key is not None:
            raise _UsageError("--cert and --key need --tls")
        return None
    if cert is None:
        raise _UsageError("--tls needs --cert (and --key, unless the key is in the --cert file)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise _Failure(f"cannot load the certificate {cert!r}{f' and key {key!r}' if key else ''}: {exc}") from None
    return context


def _client_context(tls: bool, cafile: str | None, insecure: bool) -> ssl.SSLContext | None:
    if not tls:
        if cafile is not None or insecure:
            raise _UsageError("--cafile and --insecure need --tls")
        return None
    if insecure and cafile is not None:
        raise _UsageError("--insecure checks nothing: it cannot be combined with --cafile")
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise _Failure(f"cannot load the CA certificates {cafile!r}: {exc}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# -- echo ------------------------------------------------------------------


async def _echo_handler(conn: asock.socket) -> None:
    while data := await conn.recv(65536):
        await conn.sendall(data)


async def _echo(host: str, port: int, max_connections: int | None, context: ssl.SSLContext | None = None) -> int:
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
    server = await asock.start_server(_echo_handler, listener, max_connections=max_connections, ssl=context)
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
    if isinstance(sock, asock.SSLSocket):
        # TLS's end of our data: close_notify, after which reading goes on.
        await sock._send_close_notify()
    else:
        sock.shutdown(asock.SHUT_WR)


async def _pump_stdout(sock: asock.socket, out: TextIO) -> None:
    stdout = out.buffer
    while data := await sock.recv(65536):
        stdout.write(data)
        stdout.flush()


async def _connect(host: str, port: int, timeout: float | None, context: ssl.SSLContext | None = None) -> int:
    try:
        sock = await asock.create_connection((host, port), timeout=timeout, ssl=context)
    except asock.gaierror as exc:
        raise _Failure(f"cannot resolve {host!r}: {exc.strerror}") from None
    except TimeoutError:
        raise _Failure(f"connecting to {host}:{port} timed out") from None
    except ssl.SSLCertVerificationError as exc:
        raise _Failure(f"the TLS handshake with {host}:{port} failed: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise _Failure(f"the TLS handshake with {host}:{port} failed: {exc.reason or exc}") from None
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


def _bench_command(script: Path | None, args: Sequence[str]) -> list[str]:
    """The benchmark's command line: ``script``, else the packaged benchmark with its load client built."""
    if script is not None:
        if not script.is_file():
            raise _UsageError(f"the benchmark script {str(script)!r} was not found")
        return [sys.executable, str(script), "--quick", "--progress", *args]
    from . import _bench

    # Built here, before the child starts, so that a missing compiler or
    # OpenSSL is one line from this command rather than a benchmark failure.
    try:
        _bench.build_loadgen()
        if any("-tls-" in arg for arg in args):
            _bench.build_loadgen(tls=True)
    except _bench.BenchError as exc:
        raise _Failure(str(exc)) from None
    return [*_bench.python_command("asock._bench"), "--quick", "--progress", *args]


def _bench(script: Path | None, args: Sequence[str]) -> int:
    command = _bench_command(script, args)
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
