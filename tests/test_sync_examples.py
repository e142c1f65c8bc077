"""The stdlib docs' four echo programs, in their asock.sync form, run end to end.

Each program runs in its own process.  The docs' servers print nothing until a
client connects, so the test picks a free port and waits until the kernel shows
a listening socket on it (/proc/net/tcp*) before starting the client.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 30

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _command(name: str, *args: str) -> list[str]:
    # Unclosed sockets would show up on stderr, which must stay empty.
    return [sys.executable, "-W", "default::ResourceWarning", str(EXAMPLES / name), *args]


def _free_port(family: int, host: str) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return True
    return False


def _run_pair(server: str, client: str, server_host: str, client_host: str, port: int) -> tuple[str, str]:
    with subprocess.Popen(
        _command(server, server_host, str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        try:
            deadline = time.monotonic() + TIMEOUT
            while not _listening(port):
                if proc.poll() is not None:
                    out, err = proc.communicate()
                    pytest.fail(f"{server} exited {proc.returncode} before listening\n{out}\n{err}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{server} did not listen on port {port} within {TIMEOUT} s")
                time.sleep(0.02)
            done = subprocess.run(
                _command(client, client_host, str(port)),
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                env=_env(),
                check=False,
            )
            assert done.returncode == 0, f"{client} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            assert done.stderr == "", done.stderr
            out, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, f"{server} exited {proc.returncode}\n{out}\n{err}"
            assert err == "", err
        finally:
            if proc.poll() is None:
                proc.kill()
    return out, done.stdout


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_ipv4_pair() -> None:
    port = _free_port(socket.AF_INET, "127.0.0.1")
    server_out, client_out = _run_pair("sync_echo_server.py", "sync_echo_client.py", "127.0.0.1", "127.0.0.1", port)
    assert server_out.startswith("Connected by ('127.0.0.1', "), server_out
    assert client_out == "Received b'Hello, world'\n"


@pytest.mark.parametrize(
    ("server_host", "client_host", "family"),
    [
        pytest.param("127.0.0.1", "127.0.0.1", socket.AF_INET, id="ipv4"),
        pytest.param("::1", "::1", socket.AF_INET6, id="ipv6"),
        # The server takes the first address 'localhost' gives; the client
        # walks the list until one connects, whichever family that is.
        pytest.param("localhost", "localhost", socket.AF_INET, id="localhost"),
    ],
)
def test_dual_pair(server_host: str, client_host: str, family: int) -> None:
    if (family == socket.AF_INET6 or server_host == "localhost") and not _ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    port = _free_port(family, "::1" if family == socket.AF_INET6 else "127.0.0.1")
    server_out, client_out = _run_pair(
        "sync_echo_server_dual.py", "sync_echo_client_dual.py", server_host, client_host, port
    )
    assert server_out.startswith("Connected by ("), server_out
    assert client_out == "Received b'Hello, world'\n"
