"""The echo benchmark: run the matrix and print the comparison table.

    asock bench [OPTION ...]                      # the quick subset, from an installed package
    python examples/bench/run.py [--quick] [--duration S] [--warmup S] [--impl NAME ...] [--size N ...]
                                 [--conns N ...] [--repeat N] [--no-pin] [--host H] [--malloc STATE]
                                 [--json] [--progress] [--check] [--render FILE]

Each server implementation (``asock._bench_servers``) runs in its own
process; the load comes from a compiled client (``_bench_loadgen.c``, built
with gcc on first use into a per-user cache directory) in another process,
pinned to a different core where the machine has one.  Each asock row is
compared with the best non-asock implementation of the same cell measured in
the same run (a TLS row with the best TLS one).  The ``*-tls-*`` rows speak
TLS: their load client is the same source built with OpenSSL, and their
certificate is made at start-up (trustme, or the openssl command).  See
examples/bench/README.md in the source repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
#: The load client's source, shipped as package data next to this module.
LOADGEN_SRC = HERE / "_bench_loadgen.c"
#: The directory that holds the ``asock`` package: the servers import asock from there.
PACKAGE_ROOT = HERE.parent

IMPLS = [
    "asock-asyncio",
    "asock-uvloop",
    "asock-sync-threads",
    "streams-asyncio",
    "streams-uvloop",
    "protocol-asyncio",
    "protocol-uvloop",
    "sock-asyncio",
    "sock-uvloop",
    "stdlib-threads",
    "asock-trio",
    "trio-socket",
    "floor-asyncio",
    "floor-uvloop",
    "asock-tls-asyncio",
    "asock-tls-uvloop",
    "streams-tls-asyncio",
    "streams-tls-uvloop",
    "stdlib-tls-threads",
]
SIZES = [100, 1024, 65536]
CONNS = [1, 50]
QUICK_IMPLS = ["asock-asyncio", "asock-uvloop", "streams-uvloop", "floor-asyncio", "floor-uvloop"]


class Target(NamedTuple):
    """A performance target: ``impl``'s metric over ``ref``'s, bounded by ``bound``."""

    impl: str
    ref: str
    size: int
    conns: int
    metric: str
    kind: str  # "min": the ratio must be >= bound; "max": <= bound
    bound: float


TARGETS = [
    # An await-per-read API cannot beat the yardstick (floor-*, see CEILINGS),
    # so asock is held to it, and to the peers a user would otherwise pick.
    Target("asock-uvloop", "streams-uvloop", 1024, 50, "rps", "min", 1.2),
    Target("asock-uvloop", "floor-uvloop", 1024, 50, "rps", "min", 0.95),
    Target("asock-asyncio", "floor-asyncio", 1024, 50, "rps", "min", 0.95),
    Target("asock-uvloop", "floor-uvloop", 100, 1, "p50_us", "max", 1.05),
    Target("asock-asyncio", "floor-asyncio", 100, 1, "p50_us", "max", 1.05),
    Target("asock-tls-uvloop", "streams-tls-uvloop", 1024, 50, "rps", "min", 1.0),
    Target("asock-tls-asyncio", "streams-tls-asyncio", 1024, 50, "rps", "min", 1.3),
    Target("asock-trio", "trio-socket", 1024, 50, "rps", "min", 1.0),
    Target("asock-trio", "trio-socket", 100, 1, "p50_us", "max", 1.0),
]

#: Not targets: what bounds them.  floor-* is a Protocol server that wakes a
#: task per request (servers.FloorProtocol): no server that awaits each read
#: can beat it on the same loop, whatever its I/O is written in.
CEILINGS = [
    Target("floor-uvloop", "protocol-uvloop", 1024, 50, "rps", "info", 0.0),
    Target("floor-asyncio", "streams-asyncio", 1024, 50, "rps", "info", 0.0),
]

#: The rows whose reads go through asyncio's selector transports: each read
#: is a 256 KiB bytes object cut down to what arrived.  In a fresh process
#: glibc serves every such block with mmap + mremap + munmap; once anything
#: has freed a block that large, glibc's dynamic mmap threshold has risen and
#: they come from the heap.  Which state a real server is in depends on its
#: history, so these rows are measured in both (``--malloc best``).
MALLOC_PEERS = {"streams-asyncio", "protocol-asyncio", "floor-asyncio", "streams-tls-asyncio"}
MALLOC_STATES = ("fresh", "warm")

#: Above this client CPU share the client may be what limits the rate.
CLIENT_SATURATED_PCT = 90.0


@dataclass
class Result:
    impl: str
    size: int
    conns: int
    status: str = "ok"  # ok | skip | error
    note: str = ""
    rps: float = 0.0
    mib_s: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    client_cpu_pct: float = 0.0
    # The server process's CPU time per request over the measured window
    # (all its threads), user and system; None where it could not be read.
    server_user_us: float | None = None
    server_sys_us: float | None = None
    requests: int = 0
    errors: int = 0
    mismatches: int = 0
    ratio: float | None = None
    peer: str | None = None
    samples: list[float] = field(default_factory=list)  # req/s of every repeat, to judge the noise
    # The allocator state the row was measured in (see MALLOC_PEERS), and the
    # best req/s of each state measured, where more than one was.
    malloc: str = ""
    malloc_rps: dict[str, float] = field(default_factory=dict)


class BenchError(Exception):
    """A setup problem that stops the whole run (no compiler, bad option)."""


# -- building and processes -------------------------------------------------


def cache_dir() -> Path:
    """Where the compiled load clients live: ``$XDG_CACHE_HOME/asock``, else ``~/.cache/asock``.

    Not the package's directory: an installed package is often read-only, and
    one compiled client serves every checkout and venv of the same source.
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is to be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "asock"


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")


def loadgen_path(tls: bool = False, cc: str | None = None) -> Path:
    """The cached binary for this source and build command (``tls``: the OpenSSL build).

    Named by a hash of the source and the command, so an edited source or
    another compiler gets a fresh build and never a stale binary.
    """
    key = hashlib.sha256(LOADGEN_SRC.read_bytes())
    key.update(repr((cc or "", _build_flags(tls))).encode())
    return cache_dir() / f"loadgen{'-tls' if tls else ''}-{key.hexdigest()[:16]}"


def _build_flags(tls: bool) -> tuple[list[str], list[str]]:
    return (["-O2", "-DWITH_TLS"] if tls else ["-O2"]), (["-lssl", "-lcrypto"] if tls else [])


def build_loadgen(tls: bool = False) -> Path:
    """The load client (with OpenSSL: ``tls``), compiled into the cache on first use."""
    cc = compiler()
    if cc is None:
        raise BenchError("the load client needs a C compiler: install gcc (or set CC)")
    target = loadgen_path(tls, cc)
    if os.access(target, os.X_OK):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Build under a private name and rename: two runs starting together
        # must never execute a half-written binary.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".loadgen-")
    except OSError as exc:
        raise BenchError(f"cannot write the load client to {target.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        flags, libs = _build_flags(tls)
        proc = subprocess.run([cc, *flags, "-o", tmp, str(LOADGEN_SRC), *libs], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchError(_build_failure(proc.stderr, tls))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _build_failure(stderr: str, tls: bool) -> str:
    """One line for a failed build: the usual cause by name, else the compiler's first error."""
    if tls and ("openssl/" in stderr or "-lssl" in stderr or "-lcrypto" in stderr):
        return "the TLS load client needs OpenSSL's headers and libraries (Debian: apt-get install libssl-dev)"
    first = next((line.strip() for line in stderr.splitlines() if "error" in line), stderr.strip()[:200])
    return f"building the {'TLS ' if tls else ''}load client failed: {first}"


def is_tls(impl: str) -> bool:
    return "-tls-" in impl


def make_certificate(directory: str) -> str:
    """A certificate and key for the TLS servers (PEM, one file): trustme's, else openssl's."""
    path = os.path.join(directory, "server.pem")
    try:
        import trustme
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise BenchError("the TLS rows need a certificate: install trustme or the openssl command") from None
        proc = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", "/CN=localhost", "-keyout", path, "-out", path + ".crt"],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise BenchError(f"making a certificate failed:\n{proc.stderr}") from None
        with open(path, "a") as pem, open(path + ".crt") as crt:
            pem.write(crt.read())
        return path
    trustme.CA().issue_cert("localhost", "127.0.0.1", "::1").private_key_and_cert_chain_pem.write_to_path(path)
    return path


def pick_cpus() -> tuple[int | None, int | None]:
    """One core for the server, another for the client, when there are two."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def python_command(module: str) -> list[str]:
    """A command running ``module.main()`` on the same asock as this process, wherever that is.

    (A checkout that is not installed, a venv, site-packages.)  Its directory
    is on the path only while ``asock`` is imported, so that it cannot shadow
    anything else the child imports.
    """
    boot = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import asock; del sys.path[0]; "
        f"from {module} import main; sys.exit(main())"
    )
    return [sys.executable, "-c", boot, str(PACKAGE_ROOT)]


class Server:
    """One server process (asock._bench_servers: started, waited for, stopped."""

    def __init__(
        self, impl: str, cpu: int | None, host: str, cert: str | None = None, warm_malloc: bool = False
    ) -> None:
        self.impl = impl
        self.port = 0
        self.skip_reason = ""
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server; closed in stop())
        cmd = [*python_command("asock._bench_servers"), impl, "--host", host, "--port", "0"]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        if cert is not None:
            cmd += ["--cert", cert]
        if warm_malloc:
            cmd.append("--warm-malloc")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise RuntimeError(f"{self.impl}: server not ready after {timeout} s")
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if line.startswith("READY "):
            self.port = int(line.split()[1])
        elif line.startswith("SKIP "):
            self.skip_reason = line[5:]
        else:
            self.proc.wait(timeout=5)
            raise RuntimeError(f"{self.impl}: server failed to start: {self.stderr_tail()}")

    def stderr_tail(self) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip()
        return text[-2000:] or f"exit status {self.proc.poll()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


def measure(
    impl: str,
    size: int,
    conns: int,
    duration: float,
    warmup: float,
    host: str,
    cpus: tuple[int | None, int | None],
    client: Path,
    cert: str | None = None,
    malloc: str = "",
) -> Result:
    result = Result(impl, size, conns, malloc=malloc)
    tls = is_tls(impl)
    server = Server(impl, cpus[0], host, cert if tls else None, warm_malloc=malloc == "warm")
    try:
        server.wait_ready()
        if server.skip_reason:
            result.status, result.note = "skip", server.skip_reason
            return result
        cmd = [str(client), "--host", host, "--port", str(server.port), "--size", str(size), "--conns", str(conns)]
        cmd += ["--duration", str(duration), "--warmup", str(warmup), "--server-pid", str(server.proc.pid)]
        if tls:
            cmd.append("--tls")
        if cpus[1] is not None:
            cmd += ["--cpu", str(cpus[1])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 60)
        data = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
        keys = ("rps", "mib_s", "p50_us", "p99_us", "client_cpu_pct", "server_user_us", "server_sys_us")
        for key in (*keys, "requests", "errors", "mismatches"):
            if key in data:
                setattr(result, key, data[key])
        if proc.returncode != 0 or server.proc.poll() is not None:
            result.status = "error"
            result.note = (proc.stderr.strip() or f"load client exit status {proc.returncode}")[-500:]
            if server.proc.poll() is not None:
                result.note += f"; server died: {server.stderr_tail()[-500:]}"
        elif not result.requests:
            result.status, result.note = "error", "no request completed in the measured window"
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, OSError) as exc:
        result.status, result.note = "error", str(exc)[-1000:]
    finally:
        server.stop()
    return result


# -- the matrix ---------------------------------------------------------------


def is_asock(impl: str) -> bool:
    return impl.startswith("asock-")


def is_reference(impl: str) -> bool:
    """A yardstick row (floor-*), not something a user would pick instead of asock."""
    return impl.startswith("floor-")


def add_ratios(results: list[Result]) -> None:
    """Each asock row against the fastest non-asock row of its cell (TLS rows against TLS rows)."""
    for row in results:
        if not is_asock(row.impl) or row.status != "ok":
            continue
        peers = [
            r
            for r in results
            if r.size == row.size
            and r.conns == row.conns
            and not is_asock(r.impl)
            and not is_reference(r.impl)
            and is_tls(r.impl) == is_tls(row.impl)
            and r.status == "ok"
        ]
        if peers:
            best = max(peers, key=lambda r: r.rps)
            row.peer = best.impl
            row.ratio = row.rps / best.rps if best.rps else None


def find(results: list[Result], impl: str, size: int, conns: int) -> Result | None:
    for r in results:
        if (r.impl, r.size, r.conns) == (impl, size, conns) and r.status == "ok":
            return r
    return None


def check_targets(results: list[Result], targets: list[Target] = TARGETS) -> list[dict[str, Any]]:
    out = []
    for impl, ref, size, conns, metric, kind, bound in targets:
        what = "req/s" if metric == "rps" else "p50 latency"
        label = f"{fmt_size(size)} x {conns} {what}: {impl} / {ref}"
        a, b = find(results, impl, size, conns), find(results, ref, size, conns)
        entry: dict[str, Any] = {"target": label, "bound": bound, "kind": kind, "ratio": None, "verdict": "n/a"}
        if a is not None and b is not None and getattr(b, metric):
            ratio = getattr(a, metric) / getattr(b, metric)
            entry["ratio"] = ratio
            if kind != "info":
                entry["verdict"] = "PASS" if (ratio >= bound if kind == "min" else ratio <= bound) else "FAIL"
        out.append(entry)
    return out


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import uvloop

        uv = str(getattr(uvloop, "__version__", "?"))
    except ImportError:
        uv = "not installed"
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "uvloop": uv,
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def fmt_size(n: int) -> str:
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def parse_size(text: str) -> int:
    t = text.strip().lower().replace(" ", "")
    for suffix, mult in (("kib", 1024), ("k", 1024), ("mib", 1 << 20), ("m", 1 << 20), ("b", 1)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


def format_table(results: list[Result], targets: list[dict[str, Any]], info: dict[str, Any], argv: list[str]) -> str:
    lines = [
        f"asock echo benchmark: {info['cpu'] or 'unknown CPU'}, {info['cpus']} CPUs, Python {info['python']}, "
        f"uvloop {info['uvloop']}, load average at start {info['loadavg']}",
        f"server on CPU {info['pinned'][0]}, client on CPU {info['pinned'][1]}"
        if info["pinned"][0] is not None
        else "server and client not pinned",
        MALLOC_HEADER.get(info.get("malloc", "fresh"), ""),
        "command: python examples/bench/run.py " + " ".join(argv),
        "",
    ]
    header: tuple[str, ...] = (
        "impl",
        "size",
        "conns",
        "req/s",
        "MiB/s",
        "p50 us",
        "p99 us",
        "client CPU",
        "server CPU us/req",
        "vs best peer",
    )
    both = any(len(r.malloc_rps) > 1 for r in results)
    if both:
        header += ("malloc: kept (other)",)
    rows: list[tuple[str, ...]] = [header]
    saturated = False
    for r in results:
        if r.status != "ok":
            row: tuple[str, ...] = (r.impl, fmt_size(r.size), str(r.conns), r.status.upper(), "", "", "", "", "")
            rows.append((*row, r.note[:60], *([""] if both else [])))
            continue
        cpu = f"{r.client_cpu_pct:.0f}%"
        if r.client_cpu_pct >= CLIENT_SATURATED_PCT:
            cpu += "*"
            saturated = True
        ratio = f"{r.ratio:.2f}x {r.peer}" if r.ratio is not None else "(yardstick)" if is_reference(r.impl) else ""
        server = (
            f"{r.server_user_us:.1f} + {r.server_sys_us:.1f}"
            if r.server_user_us is not None and r.server_sys_us is not None
            else ""
        )
        rows.append(
            (
                r.impl,
                fmt_size(r.size),
                str(r.conns),
                f"{r.rps:,.0f}",
                f"{r.mib_s:,.1f}",
                f"{r.p50_us:,.0f}",
                f"{r.p99_us:,.0f}",
                cpu,
                server,
                ratio,
                *([malloc_cell(r)] if both else []),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {3, 4, 5, 6, 7, 8}
    for n, row in enumerate(rows):
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if saturated:
        lines.append(f"* client CPU >= {CLIENT_SATURATED_PCT:.0f}%: the client may have limited this row.")
    if any(r.server_user_us is not None for r in results):
        lines.append("server CPU us/req: user + system CPU time of the server process per request, same window.")
    lines += ["", "targets:"]
    for t in targets:
        ratio = f"{t['ratio']:.2f}" if t["ratio"] is not None else "-"
        op = ">=" if t["kind"] == "min" else "<="
        lines.append(f"  {t['verdict']:4}  {t['target']} = {ratio} (target {op} {t['bound']})")
    ceilings = [c for c in check_targets(results, CEILINGS) if c["ratio"] is not None]
    if ceilings:
        lines += ["", "ceilings (a task woken per request, I/O by the loop's transport; see FloorProtocol):"]
        lines += [f"        {c['target']} = {c['ratio']:.2f}" for c in ceilings]
    return "\n".join(lines)


MALLOC_HEADER = {
    "best": "allocator: the default-loop peers (" + ", ".join(sorted(MALLOC_PEERS)) + ") in a fresh and a warm "
    "glibc malloc state, the better kept (--malloc best)",
    "fresh": "allocator: every server in a fresh glibc malloc state (--malloc fresh)",
    "warm": "allocator: every server with glibc's mmap threshold raised at start-up (--malloc warm)",
}


def malloc_cell(r: Result) -> str:
    others = [f"{state} {rps:,.0f}" for state, rps in r.malloc_rps.items() if state != r.malloc]
    return f"{r.malloc} ({', '.join(others)})" if others else ""


def render(path: str) -> int:
    with open(path) as f:
        saved = json.load(f)
    results = [Result(**r) for r in saved["results"]]
    info = {**saved["machine"], "pinned": tuple(saved["settings"]["cpus"])}
    info.setdefault("malloc", saved["settings"].get("malloc", "fresh"))
    print(format_table(results, check_targets(results), info, saved["settings"]["argv"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        del argv[0]  # a wrapper passing "-- ARGS" through (python -m asock bench -- --duration 2)
    parser = argparse.ArgumentParser(prog="run.py", description="asock echo benchmark matrix")
    parser.add_argument("--quick", action="store_true", help="1 KiB x 50 conns, 5 implementations, 1 s each")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per cell (default 3, quick 1)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds first (default 1, quick 0.3)")
    parser.add_argument("--impl", action="append", choices=IMPLS, help="only this implementation (repeatable)")
    parser.add_argument("--size", action="append", type=parse_size, help="only this message size (100, 1k, 64k)")
    parser.add_argument("--conns", action="append", type=int, help="only this many connections (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, help="measure each cell N times, keep the best req/s")
    parser.add_argument(
        "--no-pin", action="store_true", help="let the OS place server and client (default: one core each)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to use (127.0.0.1 or ::1)")
    parser.add_argument(
        "--malloc",
        choices=("best", "fresh", "warm"),
        default="best",
        help="glibc allocator state of the servers: 'fresh' as started, 'warm' with the mmap threshold raised "
        "at start-up, 'best' (default) the default-loop peers in both, keeping the better",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable results instead of the table")
    parser.add_argument("--progress", action="store_true", help="print 'progress <done>/<total> <label>' to stderr")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    parser.add_argument("--render", metavar="FILE", help="print the table of a saved --json run and exit")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.render)

    impls = args.impl or (QUICK_IMPLS if args.quick else IMPLS)
    sizes = args.size or ([1024] if args.quick else SIZES)
    conns_list = args.conns or ([50] if args.quick else CONNS)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 3.0)
    warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    if duration <= 0 or warmup < 0 or args.repeat < 1 or any(s <= 0 for s in sizes) or any(c <= 0 for c in conns_list):
        parser.error("duration, sizes, conns and repeat must be positive")
    try:
        clients = {False: build_loadgen()}
    except BenchError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    # The TLS rows need a TLS load client and a certificate; without either
    # they are skipped, with the reason, and the rest of the run goes on.
    tls_skip = ""
    cert_dir = tempfile.TemporaryDirectory(prefix="asock-bench-")
    cert = None
    if any(is_tls(impl) for impl in impls):
        try:
            clients[True] = build_loadgen(tls=True)
            cert = make_certificate(cert_dir.name)
        except BenchError as exc:
            tls_skip = str(exc).splitlines()[0]

    def states(impl: str) -> tuple[str, ...]:
        if args.malloc != "best":
            return (args.malloc,)
        return MALLOC_STATES if impl in MALLOC_PEERS else ("fresh",)

    info = machine_info()
    cpus = (None, None) if args.no_pin else pick_cpus()
    info["pinned"] = cpus
    info["malloc"] = args.malloc
    cells = [(s, c) for s in sizes for c in conns_list]
    total = len(cells) * sum(len(states(impl)) for impl in impls) * args.repeat
    done = 0
    skipped: dict[str, str] = {}
    best: dict[tuple[str, int, int], Result] = {}
    # Cell by cell, every implementation back to back: the rows compared with
    # each other are measured close together in time, under the same noise.
    for size, conns in cells:
        for _ in range(args.repeat):
            for impl, malloc in [(name, state) for name in impls for state in states(name)]:
                key = (impl, size, conns)
                if is_tls(impl) and tls_skip:
                    skipped[impl] = tls_skip
                if impl in skipped:
                    r = Result(impl, size, conns, status="skip", note=skipped[impl])
                else:
                    client = clients[is_tls(impl)]
                    r = measure(impl, size, conns, duration, warmup, args.host, cpus, client, cert, malloc)
                    if r.status == "skip":
                        skipped[impl] = r.note
                prev = best.get(key)
                samples = (prev.samples if prev is not None else []) + ([r.rps] if r.status == "ok" else [])
                per_state = dict(prev.malloc_rps) if prev is not None else {}
                if r.status == "ok":
                    per_state[malloc] = max(r.rps, per_state.get(malloc, 0.0))
                # Best of the repeats (and allocator states) by req/s, but a
                # failed repeat is never hidden behind a good one.
                better = r.status == "ok" and (prev is None or prev.status == "skip" or r.rps > prev.rps)
                if prev is None or r.status == "error" or (prev.status != "error" and better):
                    best[key] = r
                best[key].samples = samples
                best[key].malloc_rps = per_state
                done += 1
                if args.progress:
                    label = f"{impl} {fmt_size(size)} x{conns}"
                    label += f" ({malloc} malloc)" if len(states(impl)) > 1 else ""
                    print(f"progress {done}/{total} {label}", file=sys.stderr, flush=True)
    cert_dir.cleanup()
    results = [best[(i, s, c)] for s, c in cells for i in impls]
    add_ratios(results)
    targets = check_targets(results)
    if args.json:
        payload = {
            "machine": info,
            "settings": {
                "duration": duration,
                "warmup": warmup,
                "repeat": args.repeat,
                "cpus": cpus,
                "malloc": args.malloc,
                "argv": argv,
            },
            "results": [asdict(r) for r in results],
            "targets": targets,
            "ceilings": check_targets(results, CEILINGS),
        }
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(results, targets, info, argv))
    failed = [r for r in results if r.status == "error"]
    for r in failed:
        print(f"run.py: {r.impl} {fmt_size(r.size)} x{r.conns} failed: {r.note}", file=sys.stderr)
    if failed:
        return 1
    if args.check and any(t["verdict"] == "FAIL" for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
