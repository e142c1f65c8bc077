"""Every code example in README.md runs, on both event loops.

The README's fenced blocks are read in order.  A ```python block is run
according to the HTML comment ``<!-- readme-test: KIND [python>=X.Y] -->`` on
the line before it (invisible when the README is rendered):

- no marker: a complete program.  It runs in a fresh interpreter and must exit
  0 without writing anything to stderr (unclosed sockets would: their
  ResourceWarning is shown).
- ``server``: a program that serves an echo on 127.0.0.1:8007 forever.  It
  runs in a fresh interpreter with 8007 replaced by a port that was free a
  moment before; the test connects to it, checks the echo, runs every
  ``client`` block against it, then kills it.  It must not have written
  anything to stderr by then (``asock.serve`` logs a failed handler there).
- ``client``: a program that talks to the echo server on port 8007 (same
  replacement) and prints what it got back, which must be ``b'hello'``.
- ``sock``: a snippet that runs inside a coroutine (``await`` at its top
  level), in this process on the test's event loop (on every backend, trio
  included, unless it calls asyncio itself), with ``asyncio``,
  ``asock``, ``sock`` (a connected TCP asock socket over 127.0.0.1, timeout
  None, whose peer neither sends nor reads) and ``big_payload`` (64 MiB,
  more than the kernel buffers hold).  Each one gets a fresh ``sock``.  It
  must print, and every line must be either ``timed out`` or
  ``N bytes were accepted by the kernel`` with 0 < N < len(big_payload).

``python>=X.Y`` skips the block on older Pythons.  Programs run on uvloop by
installing its event loop policy before the block runs, so the README's
``asyncio.run(...)`` is what starts the loop.  ```sh blocks must be valid shell
(``bash -n``) and must not be Python; no other kind of block is expected.

The README's prose about where ``bytes_sent`` is found when asyncio's own
timeouts or a cancellation cut a ``sendall`` short is pinned at the end, with
the same on every backend: a cancel scope, anyio's and trio's deadlines.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import backend, cancelled_exc, wait_for

import asock

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

KINDS = {"program", "server", "client", "sock"}
LANGUAGES = {"python", "sh"}
LOOPS = ["asyncio", "uvloop"]
#: The port the README's servers and clients use; the tests replace it.
README_PORT = "8007"
#: What the README's client prints: the server's echo of its b"hello".
CLIENT_OUTPUT = "b'hello'\n"
BIG_PAYLOAD = bytes(64 * 1024 * 1024)
SOCK_OUTPUT = re.compile(r"timed out|(?P<sent>\d+) bytes were accepted by the kernel")

FENCE = re.compile(r"^```(?P<info>\S*)\s*$")
MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<words>.*?)\s*-->\s*$")
VERSION = re.compile(r"^python>=(?P<major>\d+)\.(?P<minor>\d+)$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    kind: str  # for python blocks; "" for others
    min_python: tuple[int, int] | None
    source: str

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"


def parse_readme(text: str) -> list[Block]:
    """The fenced blocks of ``text``, failing on an unclosed fence or a marker that is not understood."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md:{start + 1}: fenced block is never closed"
        assert FENCE.match(lines[i])["info"] == "", f"README.md:{i + 1}: a closing fence has a language"  # type: ignore[index]
        i += 1
        kind, min_python = "", None
        previous = start - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        marker = MARKER.match(lines[previous]) if previous >= 0 else None
        if marker is not None:
            kind, *options = marker["words"].split()
            assert kind in KINDS - {"program"}, f"README.md:{previous + 1}: unknown readme-test kind {kind!r}"
            for option in options:
                version = VERSION.match(option)
                assert version is not None, f"README.md:{previous + 1}: unknown readme-test option {option!r}"
                min_python = (int(version["major"]), int(version["minor"]))
        language = match["info"]
        if language == "python" and not kind:
            kind = "program"
        assert language == "python" or marker is None, f"README.md:{previous + 1}: marker before a {language} block"
        blocks.append(Block(start + 1, language, kind, min_python, "\n".join(body) + "\n"))
    return blocks


BLOCKS = parse_readme(README.read_text(encoding="utf-8"))


def blocks(language: str, kind: str | None = None) -> list[Any]:
    return [pytest.param(b, id=b.name) for b in BLOCKS if b.language == language and (kind is None or b.kind == kind)]


def skip_if_too_old(block: Block) -> None:
    if block.min_python is not None and sys.version_info < block.min_python:
        pytest.skip(f"{block.name} needs Python >= {'.'.join(map(str, block.min_python))}")


# -- the blocks themselves ---------------------------------------------------------


def test_readme_has_examples_of_every_kind() -> None:
    """Guards the parser: if it stopped finding blocks, every parametrized test below would vanish silently."""
    found = {b.kind for b in BLOCKS if b.language == "python"}
    assert found == KINDS, f"python blocks found: {sorted(found)}"
    for block in BLOCKS:
        assert block.language in LANGUAGES, f"{block.name}: unexpected block language {block.language!r}"


@pytest.mark.parametrize("block", blocks("sh"))
def test_sh_block_is_shell_not_python(block: Block) -> None:
    done = subprocess.run(["bash", "-n"], input=block.source, capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 0, f"{block.name} is not valid shell:\n{done.stderr}"
    with pytest.raises(SyntaxError):
        ast.parse(block.source, filename=block.name)
    # Line by line too, since some Python lines are valid shell (``import x``
    # and ``x = 1`` are commands): a shell line may happen to parse as a
    # Python expression (``mypy``, ``bash .ci/run``), never as a statement.
    for number, line in enumerate(block.source.splitlines(), start=block.line + 1):
        try:
            tree = ast.parse(line.strip())
        except SyntaxError:
            continue
        for statement in tree.body:
            python = not isinstance(statement, ast.Expr) or isinstance(
                statement.value, (ast.Await, ast.Call, ast.Yield, ast.YieldFrom)
            )
            assert not python, f"README.md:{number} in a sh block is Python: {line!r}"


@pytest.mark.parametrize("block", blocks("python"))
def test_python_block_compiles(block: Block) -> None:
    # Only snippets run inside a coroutine may await at their top level.
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if block.kind == "sock" else 0
    compile(block.source, block.name, "exec", flags=flags)


# -- programs, servers and clients: each in a fresh interpreter ----------------------

#: Runs a README block as ``__main__`` on the requested loop: ``python -c RUNNER LOOP FILE``.
RUNNER = """\
import asyncio, sys
loop, path = sys.argv[1:]
if loop == "uvloop":
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
with open(path, encoding="utf-8") as f:
    source = f.read()
sys.argv = [path]
exec(compile(source, path, "exec"), {"__name__": "__main__", "__file__": path})
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Test this checkout, whether or not the package is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _command(loop: str, path: Path) -> list[str]:
    return [sys.executable, "-W", "default::ResourceWarning", "-c", RUNNER, loop, str(path)]


def _write(block: Block, tmp_path: Path, port: int | None = None) -> Path:
    source = block.source
    if port is not None:
        assert README_PORT in source, f"{block.name} no longer uses port {README_PORT}"
        source = source.replace(README_PORT, str(port))
    path = tmp_path / f"readme_{block.line}.py"
    path.write_text(source, encoding="utf-8")
    return path


def run_program(block: Block, loop: str, tmp_path: Path, port: int | None = None) -> str:
    """Run a block to completion; return its stdout, failing on an exit status or any stderr."""
    done = subprocess.run(
        _command(loop, _write(block, tmp_path, port)),
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(),
        check=False,
    )
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, f"{block.name} exited {done.returncode}\n{output}"
    assert done.stderr == "", f"{block.name} wrote to stderr:\n{done.stderr}"
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_accepting(proc: subprocess.Popen[bytes], port: int, timeout: float = 20) -> bool:
    """Wait until 127.0.0.1:port accepts; False if the server exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    pytest.fail(f"the server did not accept on port {port} within {timeout} s")


@contextlib.contextmanager
def running_server(block: Block, loop: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start a server block on a free port (another one if that was taken meanwhile); kill and reap it after."""
    for _attempt in range(3):
        port = free_port()
        with subprocess.Popen(
            _command(loop, _write(block, tmp_path, port)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
        ) as proc:
            try:
                if _wait_accepting(proc, port):
                    yield proc, port
                    return
                _, err = proc.communicate(timeout=10)
                if b"Address already in use" not in err:
                    pytest.fail(f"{block.name} exited {proc.returncode} before accepting:\n{err.decode()}")
            finally:
                if proc.poll() is None:
                    proc.kill()
    pytest.fail(f"{block.name}: three free ports were taken before the server could bind them")


def echo_once(port: int) -> None:
    message = f"asock readme {uuid.uuid4().hex}".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(message)
        received = b""
        while len(received) < len(message):
            chunk = conn.recv(4096)
            assert chunk, f"the server closed the connection after {received!r}"
            received += chunk
    assert received == message


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("block", blocks("python", "program"))
def test_program(block: Block, loop: str, tmp_path: Path) -> None:
    skip_if_too_old(block)
    run_program(block, loop, tmp_path)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("block", blocks("python", "server"))
def test_server_echoes_and_serves_the_client(block: Block, loop: str, tmp_path: Path) -> None:
    skip_if_too_old(block)
    clients = [b for b in BLOCKS if b.kind == "client"]
    with running_server(block, loop, tmp_path) as (proc, port):
        echo_once(port)
        for client in clients:
            skip_if_too_old(client)
            assert run_program(client, loop, tmp_path, port) == CLIENT_OUTPUT, client.name
        echo_once(port)  # still serving after its clients left
        assert proc.poll() is None, f"{block.name} exited {proc.returncode} while serving"
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert err == b"", f"{block.name} wrote to stderr while serving:\n{err.decode()}"


# -- snippets on a connected socket: in this process, on the test's loop --------------


@contextlib.asynccontextmanager
async def connected_sock() -> AsyncIterator[asock.socket]:
    """A connected TCP socket over 127.0.0.1 (timeout None) whose peer never sends or reads."""
    with asock.create_server(("127.0.0.1", 0)) as listener, asock.socket() as sock:
        await sock.connect(listener.getsockname())
        peer, _ = await listener.accept()
        with peer:
            yield sock


def uses_asyncio(block: Block) -> bool:
    """Whether a snippet calls asyncio itself (``asyncio.timeout``, ...): then it runs on asyncio's loops only."""
    tree = ast.parse(block.source)
    return any(isinstance(node, ast.Name) and node.id == "asyncio" for node in ast.walk(tree))


def sock_snippets() -> list[Any]:
    """The ``sock`` snippets; those that use asyncio's API are asyncio_only, the others run on every backend."""
    return [
        pytest.param(b, id=b.name, marks=[pytest.mark.asyncio_only] if uses_asyncio(b) else [])
        for b in BLOCKS
        if b.language == "python" and b.kind == "sock"
    ]


def test_some_sock_snippets_run_on_every_backend() -> None:
    """Guards the asyncio_only marking: the plain timeout snippets do not need asyncio."""
    assert any(not uses_asyncio(b) for b in BLOCKS if b.kind == "sock")


@pytest.mark.parametrize("block", sock_snippets())
async def test_sock_snippet(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    skip_if_too_old(block)
    code = compile(block.source, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    async with connected_sock() as sock:
        namespace = {"asyncio": asyncio, "asock": asock, "sock": sock, "big_payload": BIG_PAYLOAD}
        result = eval(code, namespace)  # a coroutine if the snippet awaits at its top level
        if inspect.iscoroutine(result):
            await wait_for(result, 30)
    lines = capsys.readouterr().out.splitlines()
    assert lines, f"{block.name} printed nothing"
    for line in lines:
        match = SOCK_OUTPUT.fullmatch(line)
        assert match is not None, f"{block.name} printed {line!r}"
        if match["sent"] is not None:
            assert 0 < int(match["sent"]) < len(BIG_PAYLOAD), line


# -- where bytes_sent is, as the README's prose says ---------------------------------
#
# The README speaks of asyncio's own timeouts and ``task.cancel()``: those are
# asyncio_only.  The same guarantee on every backend (trio included): a cancel
# scope cancelled by another task, and anyio's and trio's deadlines.

ASYNCIO_ONLY = pytest.mark.asyncio_only


async def _cut_short(how: str) -> BaseException:
    """Run a sendall of more than the buffers hold to a peer that does not read; return what stopped it."""
    a, b = asock.socketpair()
    with a, b:
        if how == "socket timeout":
            a.settimeout(0.2)
            with pytest.raises(TimeoutError) as info:
                await a.sendall(BIG_PAYLOAD)
            return info.value
        if how == "asyncio.timeout":
            with pytest.raises(TimeoutError) as info:
                async with asyncio.timeout(0.2):
                    await a.sendall(BIG_PAYLOAD)
            return info.value
        if how == "wait_for":
            with pytest.raises(asyncio.TimeoutError) as info:
                await asyncio.wait_for(a.sendall(BIG_PAYLOAD), 0.2)
            return info.value
        if how == "anyio.fail_after":
            with pytest.raises(TimeoutError) as info, anyio.fail_after(0.2):
                await a.sendall(BIG_PAYLOAD)
            return info.value
        if how == "trio.fail_after":
            import trio

            with pytest.raises(trio.TooSlowError) as slow, trio.fail_after(0.2):
                await a.sendall(BIG_PAYLOAD)
            return slow.value
        caught: list[BaseException] = []
        if how == "task.cancel":

            async def send() -> None:
                try:
                    await a.sendall(BIG_PAYLOAD)
                except asyncio.CancelledError as exc:
                    caught.append(exc)
                    raise

            task = asyncio.create_task(send())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return caught[0]
        assert how == "cancel scope"
        scope = anyio.CancelScope()

        async def send_in_scope() -> None:
            with scope:
                try:
                    await a.sendall(BIG_PAYLOAD)
                except cancelled_exc() as exc:
                    caught.append(exc)
                    raise

        async with anyio.create_task_group() as group:
            group.start_soon(send_in_scope)
            await anyio.sleep(0.2)
            scope.cancel()
        assert scope.cancelled_caught
        return caught[0]


@pytest.mark.parametrize(
    "how",
    [
        "socket timeout",
        pytest.param("asyncio.timeout", marks=ASYNCIO_ONLY),
        pytest.param("wait_for", marks=ASYNCIO_ONLY),
        pytest.param("task.cancel", marks=ASYNCIO_ONLY),
        "cancel scope",
        "anyio.fail_after",
        "trio.fail_after",
    ],
)
async def test_where_bytes_sent_is(how: str) -> None:
    if how == "asyncio.timeout" and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout is new in Python 3.11")
    if how == "trio.fail_after" and backend() != "trio":
        pytest.skip("trio's own deadline")
    exc = await _cut_short(how)
    if how == "socket timeout":
        # asock's own TimeoutError("timed out") carries the count.
        assert str(exc) == "timed out" and exc.__cause__ is None
        carrier = exc
    elif how in ("task.cancel", "cancel scope"):
        # The cancellation that left sendall carries it itself.
        assert isinstance(exc, cancelled_exc())
        carrier = exc
    elif how in ("anyio.fail_after", "trio.fail_after"):
        # The deadline's own exception, raised while the cancellation that
        # left sendall was handled: the count is on its __context__.
        assert not hasattr(exc, "bytes_sent")
        assert isinstance(exc.__context__, cancelled_exc())
        carrier = exc.__context__
    else:
        # asyncio's TimeoutError, raised from the CancelledError that left sendall.
        assert not hasattr(exc, "bytes_sent")
        assert isinstance(exc.__cause__, asyncio.CancelledError)
        carrier = exc.__cause__
        if how == "wait_for" and sys.version_info < (3, 11):
            # 3.10's wait_for raises from a new CancelledError whose context is sendall's.
            assert not hasattr(carrier, "bytes_sent")
            assert carrier.__context__ is not None
            carrier = carrier.__context__
    sent = carrier.bytes_sent  # type: ignore[attr-defined]
    assert 0 < sent < len(BIG_PAYLOAD)
