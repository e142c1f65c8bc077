"""The async examples run end to end, each in its own process, on every
backend: asyncio's default loop, uvloop (``--uvloop``) and trio (``--trio``).

Servers get port 0 and announce the port the kernel picked ("Listening on HOST
port N"), which is race-free where probing for a free port first is not.  Every
process is killed and reaped even when a check fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

LOOPS = [
    pytest.param([], id="asyncio"),
    pytest.param(["--uvloop"], id="uvloop"),
    pytest.param(["--trio"], id="trio"),
]

LISTENING = re.compile(rb"Listening on (\S+) port (\d+)\n")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Test this checkout, whether or not the package is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # Servers print "Listening on ..." while they keep running: no buffering.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _command(name: str, *args: str) -> list[str]:
    # Unclosed sockets show up on stderr, which every test requires to be empty.
    return [sys.executable, "-W", "default::ResourceWarning", str(EXAMPLES / name), *args]


def run_example(name: str, *args: str, timeout: float = 30) -> str:
    """Run a program to completion; return its stdout, failing on any error output."""
    done = subprocess.run(
        _command(name, *args), capture_output=True, text=True, timeout=timeout, env=_env(), check=False
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stderr == "", done.stderr
    return done.stdout


@contextlib.contextmanager
def server(name: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    # Leaving the Popen block closes the pipes and reaps the process.
    with subprocess.Popen(
        _command(name, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), bufsize=0
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def wait_listening(proc: subprocess.Popen[bytes], timeout: float = 20) -> tuple[str, int, bytes]:
    """Read the server's stdout until it announces its port: ``(host, port, output)``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    output = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while (match := LISTENING.search(output)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                pytest.fail(f"server did not start listening within {timeout} s; output: {output!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                _, err = proc.communicate(timeout=10)
                pytest.fail(f"server exited {proc.returncode} before listening: {output!r}\n{err.decode()}")
            output += chunk
    return match[1].decode(), int(match[2]), output


def finish(proc: subprocess.Popen[bytes], output: bytes, timeout: float = 20) -> str:
    """Wait for a server to exit by itself; return all it printed, failing on any error."""
    out, err = proc.communicate(timeout=timeout)
    text = (output + out).decode()
    assert proc.returncode == 0, f"server exited {proc.returncode}\nstdout:\n{text}\nstderr:\n{err.decode()}"
    assert err == b"", err.decode()
    return text


def _kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


def unique_message() -> str:
    return f"asock example {uuid.uuid4().hex}"


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("loop", LOOPS)
def test_echo_pair(loop: list[str]) -> None:
    message = unique_message()
    with server("echo_server.py", "127.0.0.1", "0", "--once", *loop) as proc:
        host, port, output = wait_listening(proc)
        assert host == "127.0.0.1"
        out = run_example("echo_client.py", host, str(port), "--message", message, *loop)
        assert out == f"Received {message.encode()!r}\n"
        text = finish(proc, output)
    assert re.search(r"Connected by \('127\.0\.0\.1', \d+\)", text), text
    assert "Closed ('127.0.0.1'" in text, text


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("name", ["echo_server.py", "echo_server_dual.py"])
def test_echo_server_serves_concurrent_clients_until_interrupted(name: str, loop: list[str]) -> None:
    with server(name, "127.0.0.1", "0", *loop) as proc:
        host, port, output = wait_listening(proc)
        messages = [unique_message() for _ in range(3)]
        with contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(
                    subprocess.Popen(
                        _command("echo_client.py", host, str(port), "--message", message, *loop),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        env=_env(),
                    )
                )
                for message in messages
            ]
            # Runs first on the way out, so closing the Popens never waits on a hung client.
            stack.callback(_kill_all, clients)
            for client, message in zip(clients, messages, strict=True):
                out, err = client.communicate(timeout=30)
                assert client.returncode == 0, err.decode()
                assert out.decode() == f"Received {message.encode()!r}\n"
        # Still serving after three connections: Ctrl-C stops it cleanly.
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        text = finish(proc, output)
    assert text.count("Connected by") == 3, text
    assert text.count("Closed") == 3, text


DUAL_CASES = [
    pytest.param("127.0.0.1", "localhost", id="ipv4-by-name"),
    pytest.param(
        "::1",
        "::1",
        id="ipv6",
        marks=pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine"),
    ),
]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(("server_host", "client_host"), DUAL_CASES)
def test_echo_dual_pair(loop: list[str], server_host: str, client_host: str) -> None:
    message = unique_message()
    with server("echo_server_dual.py", server_host, "0", "--once", *loop) as proc:
        host, port, output = wait_listening(proc)
        assert host == server_host
        out = run_example("echo_client_dual.py", client_host, str(port), "--message", message, *loop)
        text = finish(proc, output)
    assert out.startswith(f"Connected to ({server_host!r}, {port}"), out
    assert out.endswith(f"Received {message.encode()!r}\n"), out
    assert f"Connected by ({server_host!r}" in text, text


@pytest.mark.parametrize("loop", LOOPS)
def test_echo_client_dual_reports_failure(loop: list[str]) -> None:
    # A port nobody listens on: every address is refused, as in the docs' version.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        done = subprocess.run(
            _command("echo_client_dual.py", "127.0.0.1", str(port), *loop),
            capture_output=True,
            text=True,
            timeout=30,
            env=_env(),
            check=False,
        )
    assert done.returncode == 1
    assert done.stdout == "could not open socket\n"


@pytest.mark.parametrize("loop", LOOPS)
def test_udp_echo_pair(loop: list[str]) -> None:
    message = unique_message()
    with server("udp_echo_server.py", "127.0.0.1", "0", "--once", *loop) as proc:
        host, port, output = wait_listening(proc)
        out = run_example("udp_echo_client.py", host, str(port), "--message", message, *loop)
        text = finish(proc, output)
    assert out == f"Received {message.encode()!r} from ('127.0.0.1', {port})\n"
    assert re.search(rf"Datagram from \('127\.0\.0\.1', \d+\) {re.escape(repr(message.encode()))}", text), text


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")
@pytest.mark.parametrize("loop", LOOPS)
def test_fd_passing(loop: list[str]) -> None:
    out = run_example("fd_passing.py", *loop)
    assert re.fullmatch(
        r"Message: b'here is the file' descriptors: \[\d+\]\n"
        r"File says: b'read through a descriptor that came over a Unix socket\\n'\n",
        out,
    ), out


def test_demo() -> None:
    out = run_example("demo.py")
    # Once per loop: asyncio's default loop, then uvloop (a test dependency).
    assert out.count("asock ") == 2, out
    assert "on asyncio's default event loop" in out
    assert "on uvloop" in out
    assert out.count("echo matches") == 6, out
    assert "DIFFERS" not in out
    assert out.count("raised TimeoutError(timed out)") == 2, out
    assert out.count("then got b'still here'") == 2, out
    assert out.count("server: client closed; echoed 262171 bytes") == 2, out


def test_demo_on_trio() -> None:
    out = run_example("demo.py", "--trio")
    assert out.count("asock ") == 1, out
    assert "on trio" in out
    assert out.count("echo matches") == 3, out
    assert "DIFFERS" not in out
    assert out.count("raised TimeoutError(timed out)") == 1, out
    assert out.count("then got b'still here'") == 1, out
    assert out.count("server: client closed; echoed 262171 bytes") == 1, out


SERVING = re.compile(r"serving on 127\.0\.0\.1:(\d+) with 2 workers: \[(\d+), (\d+)\]\n")


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux's /proc; empty where it cannot tell)."""
    children: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                children.update(int(child) for child in listing.read().split())
    return children


def _stop_workers(proc: subprocess.Popen[str], workers: set[int]) -> None:
    """Ctrl-C the parent, which stops its workers; if that fails, kill them all
    (found through /proc if the parent never said which they are)."""
    if proc.poll() is not None:
        return
    workers = workers | _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for pid in (proc.pid, *workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def _first_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The process's first line of output, or "" if none comes within ``timeout``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return proc.stdout.readline()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
@pytest.mark.parametrize("loop", [pytest.param([], id="asyncio"), pytest.param(["--trio"], id="trio")])
def test_serve_workers(loop: list[str]) -> None:
    """Two worker processes share one port; Ctrl-C stops them all gracefully."""
    workers: set[int] = set()
    with subprocess.Popen(
        _command("serve_workers.py", "--workers", "2", "--port", "0", *loop),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        text=True,
    ) as proc:
        try:
            line = _first_line(proc)
            match = SERVING.fullmatch(line)
            if match is None:
                _stop_workers(proc, workers)
                _, err = proc.communicate(timeout=10)
                pytest.fail(f"serve_workers.py printed {line!r}\n{err}")
            port, workers = int(match[1]), {int(match[2]), int(match[3])}
            pids = set()
            for i in range(32):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                    conn.sendall(b"hello %d\n" % i)
                    with conn.makefile("rb") as replies:
                        pid, text = replies.readline().split(b" ", 1)
                    assert text == b"hello %d\n" % i
                    pids.add(int(pid))
            # SO_REUSEPORT spreads connections over the listeners by a hash of
            # their addresses: with 32 connections both workers get some.
            assert pids == workers
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            _stop_workers(proc, workers)
    assert proc.returncode == 0, err
    assert (out, err) == ("", "")
