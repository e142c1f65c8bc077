"""A transfer across two network namespaces joined by a veth pair.

Loopback skips the whole network path (no device, no qdisc, no real MTU);
a veth pair between two namespaces has all of it, and still never leaves
the machine: the only addresses are private ones on the two veth ends.
Needs root and iproute2 (``ip netns``); skips cleanly otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIZE = 4 * 2**20
SUBNET = 200 + os.getpid() % 50  # 10.200-249.x: unlikely to clash with a parallel run

pytestmark = pytest.mark.timeout(120)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def namespaces() -> Iterator[tuple[str, str, str]]:
    """Two namespaces joined by a veth pair; yields (server ns, client ns, server address)."""
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's ip command")
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    tag = f"asock{os.getpid()}"
    server_ns, client_ns = f"{tag}-srv", f"{tag}-cli"
    veth_a, veth_b = f"av{os.getpid() % 100000}a", f"av{os.getpid() % 100000}b"  # names: at most 15 bytes
    server_ip, client_ip = f"10.{SUBNET}.0.1", f"10.{SUBNET}.0.2"
    created: list[str] = []
    try:
        try:
            for ns in (server_ns, client_ns):
                ip("netns", "add", ns)
                created.append(ns)
            ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        except (subprocess.CalledProcessError, OSError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"cannot create namespaces or veth here: {exc} {stderr.decode(errors='replace').strip()}")
        for dev, ns, address in ((veth_a, server_ns, server_ip), (veth_b, client_ns, client_ip)):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{address}/30", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield server_ns, client_ns, server_ip
    finally:
        # Deleting a namespace destroys the veth end inside it, and its peer.
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        if not created:
            subprocess.run(["ip", "link", "del", veth_a], capture_output=True, timeout=10)


SERVER = """
import asyncio, hashlib, random, sys
import asock

async def main(host, loop_name):
    with asock.create_server((host, 0)) as server:
        print("READY", server.getsockname()[1], flush=True)
        conn, _ = await server.accept()
        async with conn:
            conn.settimeout(30)
            digest = hashlib.sha256()
            got = 0
            while got < SIZE:
                chunk = await conn.recv(1 << 16)
                if not chunk:
                    sys.exit(f"EOF after {got} bytes")
                digest.update(chunk)
                got += len(chunk)
            await conn.sendall(digest.hexdigest().encode())
            await conn.sendall(random.Random(2).randbytes(SIZE))
            conn.shutdown(asock.SHUT_WR)
            assert await conn.recv(1) == b""

SIZE = int(sys.argv[3])
if sys.argv[2] == "uvloop":
    import uvloop
    uvloop.run(main(sys.argv[1], sys.argv[2]))
else:
    asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

ASYNC_CLIENT = """
import asyncio, hashlib, random, sys
import asock

async def main(host, port):
    payload = random.Random(1).randbytes(SIZE)
    async with await asock.create_connection((host, port), timeout=30) as sock:
        await sock.sendall(payload)
        reply = bytearray()
        while chunk := await sock.recv(1 << 16):
            reply += chunk
    check(payload, bytes(reply))

def check(payload, reply):
    digest, data = reply[:64].decode(), reply[64:]
    assert digest == hashlib.sha256(payload).hexdigest(), "the server saw different bytes"
    assert len(data) == SIZE, len(data)
    assert hashlib.sha256(data).digest() == hashlib.sha256(random.Random(2).randbytes(SIZE)).digest()
    print("OK")

SIZE = int(sys.argv[4])
if sys.argv[3] == "uvloop":
    import uvloop
    uvloop.run(main(sys.argv[1], int(sys.argv[2])))
else:
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

SYNC_CLIENT = """
import hashlib, random, sys
import asock.sync as socket

SIZE = int(sys.argv[4])
payload = random.Random(1).randbytes(SIZE)
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30) as sock:
    sock.sendall(payload)
    reply = bytearray()
    while chunk := sock.recv(1 << 16):
        reply += chunk
digest, data = bytes(reply[:64]).decode(), bytes(reply[64:])
assert digest == hashlib.sha256(payload).hexdigest(), "the server saw different bytes"
assert len(data) == SIZE, len(data)
assert hashlib.sha256(data).digest() == hashlib.sha256(random.Random(2).randbytes(SIZE)).digest()
print("OK")
"""


def in_ns(ns: str, code: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args]


@pytest.mark.parametrize(
    "server_loop,client",
    [("asyncio", "asyncio"), ("uvloop", "uvloop"), ("asyncio", "sync")],
)
def test_transfer_across_namespaces(namespaces: tuple[str, str, str], server_loop: str, client: str) -> None:
    server_ns, client_ns, server_ip = namespaces
    if client == "sync":
        pytest.importorskip("asock.sync")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        in_ns(server_ns, SERVER, server_ip, server_loop, str(SIZE)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        assert ready and ready[0] == "READY", server.stderr.read() if server.stderr else ready
        port = ready[1]
        code = SYNC_CLIENT if client == "sync" else ASYNC_CLIENT
        done = subprocess.run(
            in_ns(client_ns, code, server_ip, port, client, str(SIZE)),
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "OK"
        _, err = server.communicate(timeout=30)
        assert server.returncode == 0, err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_namespaces_are_isolated(namespaces: tuple[str, str, str]) -> None:
    """The test addresses exist only inside the namespaces, never in the root one."""
    server_ns, client_ns, server_ip = namespaces
    root = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=10, check=True)
    assert server_ip not in root.stdout
    inside = subprocess.run(["ip", "-n", server_ns, "-o", "addr"], capture_output=True, text=True, timeout=10)
    assert f"inet {server_ip}/30" in inside.stdout
    route = subprocess.run(
        ["ip", "-n", client_ns, "route", "get", server_ip], capture_output=True, text=True, timeout=10
    )
    assert route.returncode == 0 and "dev av" in route.stdout, route.stdout + route.stderr
