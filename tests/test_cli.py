"""``python -m asock``: run as subprocesses, the way scripts use it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def asock_cli(*args: str, input: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "asock", *args], input=input, capture_output=True, timeout=timeout, env=ENV
    )


@contextmanager
def echo_server(*args: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "asock", "echo", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        yield int(match.group(1))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help() -> None:
    result = asock_cli("--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    for command in ("echo", "connect", "bench"):
        assert command in out
    assert "Exit status" in out
    for command in ("echo", "connect", "bench"):
        sub = asock_cli(command, "--help")
        assert sub.returncode == 0
        assert f"usage: asock {command}" in sub.stdout.decode()


def test_no_command_is_a_usage_error() -> None:
    result = asock_cli()
    assert result.returncode == 2
    assert b"usage:" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["connect", "127.0.0.1", "70000"], "invalid port '70000': must be between 0 and 65535"),
        (["connect", "127.0.0.1", "http"], "invalid port 'http': not a number"),
        (["connect", "127.0.0.1"], "the following arguments are required: PORT"),
        (["echo", "--port", "-5"], "invalid port '-5'"),
        (["echo", "--max-connections", "0"], "--max-connections must be at least 1"),
        (["connect", "127.0.0.1", "80", "--timeout", "0"], "--timeout must be a positive number"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = asock_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr.decode()


@pytest.mark.parametrize("loop", [[], ["--uvloop"]], ids=["asyncio", "uvloop"])
def test_echo_and_connect_pipe_lines_through(loop: list[str]) -> None:
    lines = b"".join(b"line %d\n" % i for i in range(50))
    with echo_server(*loop) as port:
        # stdin's EOF half-closes the connection; the echo server then
        # closes its side and connect exits.
        result = asock_cli("connect", "127.0.0.1", str(port), *loop, input=lines)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == lines
        big = os.urandom(1 << 20)
        result = asock_cli("connect", "127.0.0.1", str(port), input=big)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == big


def test_connect_exits_when_the_peer_closes_even_if_stdin_stays_open() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        proc = subprocess.Popen(
            [sys.executable, "-m", "asock", "connect", "127.0.0.1", str(listener.getsockname()[1])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        try:
            listener.settimeout(20)
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"greetings\n")
            assert proc.stdout is not None
            assert proc.stdout.read() == b"greetings\n"  # until the CLI exits
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()  # closes stdin, only now


def test_connection_refused_exits_1() -> None:
    port = free_port()
    result = asock_cli("connect", "127.0.0.1", str(port))
    assert result.returncode == 1
    assert f"cannot connect to 127.0.0.1:{port}" in result.stderr.decode()
    assert "refused" in result.stderr.decode().lower()


def test_echo_on_an_address_that_is_not_ours_exits_1() -> None:
    result = asock_cli("echo", "--host", "192.0.2.1", "--port", "0")  # TEST-NET-1, never local
    assert result.returncode == 1
    assert "cannot listen on 192.0.2.1:0" in result.stderr.decode()


def test_echo_on_a_busy_port_exits_1() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = asock_cli("echo", "--port", str(port))
    assert result.returncode == 1
    assert "Address already in use" in result.stderr.decode()


FAKE_BENCH = """
import sys
assert sys.argv[1:3] == ["--quick", "--progress"], sys.argv
for i in range(1, 4):
    print(f"progress {i}/3 impl-{i}", file=sys.stderr, flush=True)
print("a warning the user should see", file=sys.stderr, flush=True)
print("| impl | msg/s |")
print("| asock | 123 |")
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
"""


def test_bench_renders_progress_and_prints_the_table(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(FAKE_BENCH)
    result = asock_cli("bench", "--script", str(script))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == ["| impl | msg/s |", "| asock | 123 |"]
    err = result.stderr.decode()
    # Not a terminal: one bar line per step.
    assert "[" + "#" * 10 + "." * 20 + "] 1/3 impl-1" in err
    assert "[" + "#" * 30 + "] 3/3 impl-3" in err
    assert "a warning the user should see" in err
    assert "progress 1/3" not in err


def test_bench_failure_exits_1(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(FAKE_BENCH)
    result = asock_cli("bench", "--script", str(script), "3")
    assert result.returncode == 1
    assert "the benchmark failed (exit status 3)" in result.stderr.decode()


def test_bench_without_the_script_exits_2(tmp_path: Path) -> None:
    result = asock_cli("bench", "--script", str(tmp_path / "missing.py"))
    assert result.returncode == 2
    assert "not found" in result.stderr.decode()


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="the load client needs gcc")
def test_bench_runs_the_packaged_benchmark() -> None:
    from asock import _cli

    command = _cli._bench_command(None, ["--json"])
    assert "from asock._bench import main" in command[2]
    assert command[-3:] == ["--quick", "--progress", "--json"]


def test_bench_passes_other_options_through_in_order(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text("import sys\nprint(sys.argv[1:])\n")
    result = asock_cli("bench", "--duration", "2", "--script", str(script), "--impl", "asock-uvloop", "--", "--json")
    assert result.returncode == 0, result.stderr.decode()
    expected = ["--quick", "--progress", "--duration", "2", "--impl", "asock-uvloop", "--json"]
    assert result.stdout.decode().strip() == repr(expected)


def test_other_commands_reject_unknown_options() -> None:
    result = asock_cli("echo", "--duration", "2")
    assert result.returncode == 2
    assert "unrecognized arguments: --duration" in result.stderr.decode()
