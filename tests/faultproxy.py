"""A fault-injecting TCP proxy for tests, on plain threads and stdlib sockets.

It sits between a client and an upstream server on loopback and forwards both
directions, applying one fault to the stream from the server to the client:

- ``segment``: forward one byte at a time (``TCP_NODELAY``, so each byte is
  its own segment), with small random delays; the same in the other direction.
- ``reset``: after ``after`` bytes, reset both connections (``SO_LINGER`` 0,
  then close), so each peer gets an RST rather than a FIN.
- ``stall``: after ``after`` bytes, stop forwarding (holding both connections
  open) until the proxy is closed.
- ``half_close``: after ``after`` bytes, send FIN to the client
  (``shutdown(SHUT_WR)``) and drop what the server sends next; bytes from the
  client still reach the server.

Threads, not an event loop, so one proxy serves async clients on every
backend (asyncio, uvloop, trio) and blocking clients alike; it never shares a
loop with the code under test.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

Kind = Literal["none", "segment", "reset", "stall", "half_close"]

_POLL = 0.05  # how often blocked proxy threads look at the stop flag


@dataclass(frozen=True)
class Fault:
    kind: Kind = "none"
    after: int = 0  # bytes forwarded to the client before the fault strikes
    max_delay: float = 0.001  # segment: the longest pause between two bytes
    seed: int = 0


def _reset(sock: socket.socket) -> None:
    # Linger on with a zero timeout makes close() send RST and drop any
    # unsent data, instead of the orderly FIN.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _ThreadedServer:
    """A loopback listener whose work runs on daemon threads, all stopped by close()."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.address: tuple[str, int] = self._listener.getsockname()

    def _spawn(self, target: object, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return thread

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _shut_down(self) -> list[threading.Thread]:
        """Stop every thread, close every socket; return the threads still alive."""
        self._stop.set()
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(10)
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
        return [t for t in threads if t.is_alive()]

    def close(self) -> None:
        self._shut_down()

    def __enter__(self) -> _ThreadedServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class FaultProxy(_ThreadedServer):
    """Listen on 127.0.0.1 and forward every connection to ``upstream`` with ``fault``."""

    def __init__(self, upstream: tuple[str, int], fault: Fault) -> None:
        super().__init__()
        self.upstream = upstream
        self.fault = fault
        self.connections = 0
        self.forwarded_down = 0  # bytes delivered to clients, all connections
        self.forwarded_up = 0  # bytes delivered to the server
        self.struck = threading.Event()  # set once the fault has been applied
        self.errors: list[BaseException] = []
        self._spawn(self._accept_loop)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(client)
            try:
                server = self._track(socket.create_connection(self.upstream, timeout=5))
            except OSError as exc:
                self.errors.append(exc)
                _reset(client)
                continue
            self.connections += 1
            for sock in (client, server):
                sock.settimeout(_POLL)
                if self.fault.kind == "segment":
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            seed = self.fault.seed * 1000 + self.connections
            # Each connection's own stop flag: the reset must stop the other
            # pump before closing, or that thread could read a reused fd.
            link = threading.Event()
            up = self._spawn(self._pump_up, client, server, random.Random(seed), link)
            self._spawn(self._pump_down, server, client, random.Random(-seed), link, up)

    def _stopped(self, link: threading.Event) -> bool:
        return self._stop.is_set() or link.is_set()

    def _recv(self, src: socket.socket, size: int, link: threading.Event) -> bytes | None:
        """Bytes from ``src``, b'' at EOF, None once the proxy stops."""
        while not self._stopped(link):
            try:
                return src.recv(size)
            except TimeoutError:
                continue
            except OSError:
                return b""
        return None

    def _send(self, dst: socket.socket, data: bytes, link: threading.Event) -> bool:
        view = memoryview(data)
        while view and not self._stopped(link):
            try:
                n = dst.send(view)
            except TimeoutError:
                continue
            except OSError:
                return False
            view = view[n:]
        return not view

    def _trickle(self, dst: socket.socket, data: bytes, rng: random.Random, link: threading.Event) -> bool:
        for i in range(len(data)):
            if not self._send(dst, data[i : i + 1], link):
                return False
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0, self.fault.max_delay))
        return True

    def _pump_up(self, client: socket.socket, server: socket.socket, rng: random.Random, link: threading.Event) -> None:
        """Client to server: only ``segment`` touches this direction."""
        segment = self.fault.kind == "segment"
        while data := self._recv(client, 65536, link):
            sent = self._trickle(server, data, rng, link) if segment else self._send(server, data, link)
            if not sent:
                return
            with self._lock:
                self.forwarded_up += len(data)
        if data == b"" and not self._stopped(link):
            try:
                server.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _pump_down(
        self,
        server: socket.socket,
        client: socket.socket,
        rng: random.Random,
        link: threading.Event,
        up: threading.Thread,
    ) -> None:
        """Server to client: the fault strikes here after ``after`` bytes."""
        kind = self.fault.kind
        budget = self.fault.after if kind in ("reset", "stall", "half_close") else None
        while budget != 0:
            size = 65536 if budget is None else min(65536, budget)
            data = self._recv(server, size, link)
            if not data:
                if data == b"" and not self._stopped(link):
                    try:
                        client.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                return
            sent = self._trickle(client, data, rng, link) if kind == "segment" else self._send(client, data, link)
            if not sent:
                return
            with self._lock:
                self.forwarded_down += len(data)
            if budget is not None:
                budget -= len(data)
        if kind == "reset":
            link.set()
            up.join()
            _reset(client)
            _reset(server)
        elif kind == "half_close":
            try:
                client.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.struck.set()
            while self._recv(server, 65536, link):
                pass  # dropped: the client has been told there is no more
            return
        self.struck.set()
        # stall: hold both connections open and forward nothing more.
        self._stop.wait()

    def close(self) -> None:
        alive = self._shut_down()
        if alive:
            raise RuntimeError(f"fault proxy threads did not stop: {alive!r}")

    def __enter__(self) -> FaultProxy:
        return self


class EchoServer(_ThreadedServer):
    """A stdlib echo server on a thread: the upstream for blocking clients.

    It records how each connection ended (``None`` for a clean EOF, else the
    exception) in ``outcomes``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[BaseException | None] = []
        self.received = 0
        self._spawn(self._accept_loop)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(_POLL)
            self._spawn(self._echo, self._track(conn))

    def _echo(self, conn: socket.socket) -> None:
        outcome: BaseException | None = None
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                with self._lock:
                    self.received += len(data)
                view = memoryview(data)
                while view and not self._stop.is_set():
                    try:
                        view = view[conn.send(view) :]
                    except TimeoutError:
                        continue
        except OSError as exc:
            outcome = exc
        # Closing answers the client's FIN with ours: an orderly end both ways.
        conn.close()
        with self._lock:
            self.outcomes.append(outcome)

    def __enter__(self) -> EchoServer:
        return self
