"""Pins the public surface of ``asock``: the stdlib module's names, which of
them are asock's own, and asock's additions."""

from __future__ import annotations

import inspect
import socket as stdlib

import pytest

import asock

STDLIB_NAMES = set(stdlib.__all__) - {"fromshare"}  # fromshare is Windows-only

#: Coroutine functions: they wait on the running loop.
ASYNC_OWN = {
    "create_connection",
    "getaddrinfo",
    "getnameinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getfqdn",
    "send_fds",
    "recv_fds",
    "start_tls",
}
#: asock's own plain callables: they hand out asock sockets.
PLAIN_OWN = {"socket", "SocketType", "socketpair", "fromfd", "create_server"}
#: Names the stdlib does not have.
ADDITIONS = {
    "BusyError",
    # serve() and the buffered streams
    "Server",
    "serve",
    "start_server",
    "Stream",
    "StreamReader",
    "StreamWriter",
    "open_connection",
    # TLS
    "SSLSocket",
}


def test_all_is_pinned() -> None:
    assert set(asock.__all__) == STDLIB_NAMES | ASYNC_OWN | PLAIN_OWN | ADDITIONS
    assert len(asock.__all__) == len(set(asock.__all__))
    for name in asock.__all__:
        assert hasattr(asock, name), name


def test_star_import_gives_all() -> None:
    namespace: dict[str, object] = {}
    exec("from asock import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(asock.__all__)


@pytest.mark.parametrize("name", sorted(STDLIB_NAMES - ASYNC_OWN - PLAIN_OWN))
def test_stdlib_objects_are_reexported_unchanged(name: str) -> None:
    assert getattr(asock, name) is getattr(stdlib, name)


@pytest.mark.parametrize("name", sorted(ASYNC_OWN))
def test_async_names_are_asocks_coroutines(name: str) -> None:
    ours = getattr(asock, name)
    assert ours is not getattr(stdlib, name, None)
    assert inspect.iscoroutinefunction(ours), name
    assert ours.__module__.startswith("asock.")
    assert ours.__doc__


@pytest.mark.parametrize("name", sorted(PLAIN_OWN))
def test_plain_names_are_asocks(name: str) -> None:
    ours = getattr(asock, name)
    assert ours is not getattr(stdlib, name)
    assert not inspect.iscoroutinefunction(ours)
    assert ours.__module__.startswith("asock.")


def test_socket_class() -> None:
    assert asock.SocketType is asock.socket
    assert asock.socket.__module__.startswith("asock.")
    assert not issubclass(asock.socket, stdlib.socket)  # no blocking socket underneath
    coroutines = {
        "accept", "connect", "connect_ex", "recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg",
        "recvmsg_into", "send", "sendall", "sendto", "sendmsg", "sendfile",
    }  # fmt: skip
    plain = {
        "bind", "listen", "close", "detach", "dup", "fileno", "getpeername", "getsockname", "getsockopt",
        "setsockopt", "shutdown", "get_inheritable", "set_inheritable", "setblocking", "getblocking",
        "settimeout", "gettimeout",
    }  # fmt: skip
    for name in coroutines:
        assert inspect.iscoroutinefunction(getattr(asock.socket, name)), name
    for name in plain:
        assert callable(getattr(asock.socket, name)), name
        assert not inspect.iscoroutinefunction(getattr(asock.socket, name)), name
    for name in ("family", "type", "proto"):
        assert isinstance(inspect.getattr_static(asock.socket, name), property)


def test_ssl_socket_class() -> None:
    import ssl

    assert issubclass(asock.SSLSocket, asock.socket)  # as the stdlib's SSLSocket subclasses its socket
    assert not issubclass(asock.SSLSocket, ssl.SSLSocket)  # never the stdlib's TLS underneath
    assert asock.SSLSocket.__module__.startswith("asock.")
    coroutines = {
        "do_handshake", "recv", "recv_into", "send", "sendall", "sendfile", "unwrap", "aclose",
    }  # fmt: skip
    plain = {
        "version", "cipher", "shared_ciphers", "compression", "getpeercert", "selected_alpn_protocol",
        "get_channel_binding", "pending", "settimeout", "gettimeout", "setblocking", "close", "fileno",
        "getpeername", "getsockname", "setsockopt", "getsockopt", "shutdown",
    }  # fmt: skip
    for name in coroutines:
        assert inspect.iscoroutinefunction(getattr(asock.SSLSocket, name)), name
    for name in plain:
        assert callable(getattr(asock.SSLSocket, name)), name
        assert not inspect.iscoroutinefunction(getattr(asock.SSLSocket, name)), name
    for name in ("context", "server_side", "server_hostname", "session", "session_reused", "family", "type"):
        assert isinstance(inspect.getattr_static(asock.SSLSocket, name), property), name
    with pytest.raises(TypeError, match="does not have a public constructor"):
        asock.SSLSocket()


def test_busy_error() -> None:
    assert issubclass(asock.BusyError, RuntimeError)
    assert asock.BusyError.__module__.startswith("asock")
    assert asock.BusyError.__doc__


def test_stdlib_exceptions_are_the_stdlibs() -> None:
    assert asock.error is OSError
    assert asock.timeout is TimeoutError
    assert asock.gaierror is stdlib.gaierror
    assert asock.herror is stdlib.herror
    assert asock.AF_INET is stdlib.AF_INET and asock.AF_INET == 2
