"""``asock bench`` from an installed package: the benchmark ships inside it.

The load client is compiled on first use into the per-user cache
(``$XDG_CACHE_HOME/asock``), named by a hash of its source; without a
compiler, or without OpenSSL for the TLS client, the command says so in one
line and exits 1.  Loopback only; no speed is asserted.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from asock import _bench

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the load client uses epoll (Linux)"),
]

needs_compiler = pytest.mark.skipif(_bench.compiler() is None, reason="the load client needs gcc")


def cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asock", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def installed_copy(tmp_path: Path) -> Path:
    """The package alone, as pip puts it in site-packages: no examples/ next to it."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "asock", site / "asock", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def base_env(tmp_path: Path, site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "PYTHONPATH")}
    return {**env, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}


def test_cache_dir_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _bench.cache_dir() == tmp_path / "asock"
    # The XDG rule: a relative value is ignored.
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    assert _bench.cache_dir() == Path.home() / ".cache" / "asock"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _bench.cache_dir() == Path.home() / ".cache" / "asock"


@needs_compiler
@pytest.mark.timeout(60)
def test_loadgen_is_compiled_on_first_use_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = _bench.build_loadgen()
    assert built.parent == tmp_path / "asock"
    assert built.stat().st_mode & stat.S_IXUSR
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no temporary file left behind
    first = built.stat().st_mtime_ns

    # Built once: the second call finds it, and does not need the compiler.
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(_bench, "compiler", lambda: shutil.which("gcc") or shutil.which("cc"))
    assert _bench.build_loadgen() == built
    assert built.stat().st_mtime_ns == first

    # An edited source is another binary, never the stale one.
    edited = tmp_path / "loadgen.c"
    edited.write_text(_bench.LOADGEN_SRC.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(_bench, "LOADGEN_SRC", edited)
    rebuilt = _bench.build_loadgen()
    assert rebuilt != built and rebuilt.parent == built.parent
    assert sorted(p.name for p in built.parent.iterdir()) == sorted([built.name, rebuilt.name])
    usage = subprocess.run([str(rebuilt)], capture_output=True, text=True, timeout=10)
    assert usage.returncode == 2 and "--port" in usage.stderr  # a working load client: its usage


def test_no_compiler_is_one_line_and_exit_1(tmp_path: Path) -> None:
    site = installed_copy(tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**base_env(tmp_path, site), "PATH": str(empty)}
    result = cli("--duration", "1", env=env, cwd=tmp_path)
    assert result.returncode == 1, result
    assert result.stderr == "asock bench: the load client needs a C compiler: install gcc (or set CC)\n"
    assert result.stdout == ""
    assert not (tmp_path / "cache" / "asock").exists() or not any((tmp_path / "cache" / "asock").iterdir())


@needs_compiler
@pytest.mark.timeout(60)
def test_no_openssl_headers_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """The TLS client is built only for TLS rows; a compiler without OpenSSL fails in one line."""
    real = _bench.compiler()
    fake = tmp_path / "cc-without-openssl"
    fake.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" -DWITH_TLS "*)\n'
        '  echo "loadgen.c:47:10: fatal error: openssl/err.h: No such file or directory" >&2; exit 1;;\n'
        "esac\n"
        f'exec "{real}" "$@"\n'
    )
    fake.chmod(0o755)
    site = installed_copy(tmp_path)
    env = {**base_env(tmp_path, site), "CC": str(fake)}
    result = cli("--impl", "asock-tls-asyncio", env=env, cwd=tmp_path)
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asock bench: the TLS load client needs OpenSSL's headers"), lines


@needs_compiler
@pytest.mark.timeout(60)
def test_installed_package_runs_the_benchmark(tmp_path: Path) -> None:
    """From a copy of the package alone, away from the checkout: servers, runner and client all found."""
    site = installed_copy(tmp_path)
    env = base_env(tmp_path, site)
    result = cli(
        "--impl", "asock-asyncio", "--impl", "sock-asyncio", "--duration", "0.3", "--warmup", "0",
        env=env, cwd=tmp_path, timeout=50,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith(("asock-", "sock-"))}
    assert set(rows) == {"asock-asyncio", "sock-asyncio"}, result.stdout
    assert "x sock-asyncio" in rows["asock-asyncio"], result.stdout
    assert "2/2 sock-asyncio 1 KiB x50" in result.stderr  # the progress bar, one line per step off a terminal
    cached = list((tmp_path / "cache" / "asock").iterdir())
    assert [p.name.startswith("loadgen-") for p in cached] == [True], cached
