"""TLS outside the library: the TLS echo examples end to end, ``asock echo --tls``
/ ``asock connect --tls``, and the benchmark's TLS rows (a smoke run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import asock_cli, echo_server
from test_examples import finish, run_example, server, wait_listening
from tlshelpers import ca, other_ca, server_cert

ROOT = Path(__file__).resolve().parent.parent
# The examples run on each backend; the CLI (``asock echo`` / ``asock connect``)
# takes no --trio, so its test runs on asyncio's loops.
LOOPS = [pytest.param([], id="asyncio"), pytest.param(["--uvloop"], id="uvloop")]
EXAMPLE_LOOPS = [*LOOPS, pytest.param(["--trio"], id="trio")]


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, str]:
    """The test CA's certificate, the server's certificate and key, and a CA nobody used."""
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "cert.pem",
        "key": tmp_path / "key.pem",
        "other_ca": tmp_path / "other-ca.pem",
    }
    ca().cert_pem.write_to_path(str(files["ca"]))
    server_cert().cert_chain_pems[0].write_to_path(str(files["cert"]))
    server_cert().private_key_pem.write_to_path(str(files["key"]))
    other_ca().cert_pem.write_to_path(str(files["other_ca"]))
    return {name: str(path) for name, path in files.items()}


# -- examples/tls_echo_server.py and tls_echo_client.py -------------------------------


@pytest.mark.parametrize("loop", EXAMPLE_LOOPS)
def test_tls_echo_pair_with_certificates_made_at_start_up(loop: list[str]) -> None:
    with server("tls_echo_server.py", "127.0.0.1", "0", "--once", *loop) as proc:
        _, port, output = wait_listening(proc)
        cafile = re.search(rb"CA certificate: (\S+)\n", output)
        assert cafile, output
        assert Path(cafile[1].decode()).is_file()
        out = run_example("tls_echo_client.py", "localhost", str(port), "--message", "over TLS",
                          "--cafile", cafile[1].decode(), *loop)  # fmt: skip
        text = finish(proc, output)
    assert out.startswith("Connected with TLSv1.3 "), out
    assert out.endswith("Received b'over TLS'\n"), out
    assert re.search(r"Connected by \('127\.0\.0\.1', \d+\) with TLSv1\.3", text), text
    assert "Closed ('127.0.0.1'" in text, text  # the client's close_notify: a clean end
    assert not Path(cafile[1].decode()).exists()  # the temporary directory went with the server


def test_tls_echo_pair_with_given_certificates(pem_files: dict[str, str]) -> None:
    with server("tls_echo_server.py", "127.0.0.1", "0", "--cert", pem_files["cert"], "--key", pem_files["key"]) as proc:
        _, port, output = wait_listening(proc)
        assert b"CA certificate" not in output
        out = run_example("tls_echo_client.py", "127.0.0.1", str(port), "--cafile", pem_files["ca"])
        assert out.endswith("Received b'Hello, TLS world'\n"), out
        # A client that trusts another CA fails its handshake; the server goes on.
        failed = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "tls_echo_client.py"), "127.0.0.1", str(port),
             "--cafile", pem_files["other_ca"]],
            capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert failed.returncode == 1
        assert "SSLCertVerificationError" in failed.stderr
        assert "certificate verify failed" in failed.stderr
        out = run_example("tls_echo_client.py", "127.0.0.1", str(port), "--cafile", pem_files["ca"], "--message", "2")
        assert out.endswith("Received b'2'\n"), out
        assert proc.poll() is None


# -- asock echo --tls / asock connect --tls ------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_cli_echo_and_connect_over_tls(loop: list[str], pem_files: dict[str, str]) -> None:
    lines = b"".join(b"line %d over TLS\n" % i for i in range(50))
    with echo_server("--tls", "--cert", pem_files["cert"], "--key", pem_files["key"], *loop) as port:
        # stdin's end sends close_notify; the echo server answers every byte,
        # then its own close_notify, and connect exits.
        result = asock_cli("connect", "--tls", "--cafile", pem_files["ca"], "127.0.0.1", str(port), *loop, input=lines)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == lines
        big = os.urandom(1 << 20)
        result = asock_cli("connect", "--tls", "--insecure", "127.0.0.1", str(port), input=big)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == big
        # The system's CAs do not know the test CA.
        result = asock_cli("connect", "--tls", "127.0.0.1", str(port), input=b"x")
        assert result.returncode == 1
        assert f"the TLS handshake with 127.0.0.1:{port} failed" in result.stderr.decode()
        assert "unable to get local issuer certificate" in result.stderr.decode()


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["echo", "--tls"], 2, "--tls needs --cert"),
        (["echo", "--cert", "x.pem"], 2, "--cert and --key need --tls"),
        (["connect", "--cafile", "x.pem", "127.0.0.1", "1"], 2, "--cafile and --insecure need --tls"),
        (["connect", "--tls", "--insecure", "--cafile", "x.pem", "127.0.0.1", "1"], 2, "cannot be combined"),
        (["echo", "--tls", "--cert", "/nonexistent/cert.pem", "--port", "0"], 1, "cannot load the certificate"),
        (["connect", "--tls", "--cafile", "/nonexistent/ca.pem", "127.0.0.1", "1"], 1, "cannot load the CA"),
    ],
)
def test_cli_tls_option_errors(args: list[str], status: int, message: str) -> None:
    result = asock_cli(*args)
    assert result.returncode == status, result.stderr.decode()
    assert message in result.stderr.decode()


# -- the benchmark's TLS rows ---------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the load client uses epoll (Linux)")
def test_bench_tls_rows_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "bench" / "run.py"), "--impl", "asock-tls-asyncio",
         "--impl", "streams-tls-asyncio", "--size", "1k", "--conns", "50", "--duration", "0.3", "--warmup", "0.1"],
        capture_output=True, text=True, timeout=80,
    )  # fmt: skip
    if proc.returncode == 2 and "C compiler" in proc.stderr:
        pytest.skip("the load client needs gcc")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("asock-tls", "streams-tls"))}
    assert set(rows) == {"asock-tls-asyncio", "streams-tls-asyncio"}, out
    if "SKIP" in rows["asock-tls-asyncio"]:
        pytest.skip(f"TLS rows skipped: {rows['asock-tls-asyncio']}")  # no OpenSSL headers for the client
    assert "x streams-tls-asyncio" in rows["asock-tls-asyncio"], out  # compared with the TLS peer only
    assert "asock-tls-asyncio / streams-tls-asyncio" in out
