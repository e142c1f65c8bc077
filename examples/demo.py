"""The asock quick-start demo: an echo server and a client in one process.

    python examples/demo.py

Runs once on asyncio's default event loop and once more on uvloop when it is
installed (``pip install 'asock[uvloop]'``), printing what the two sides say.
"""

import asyncio

import asock


async def serve_one(server: asock.socket) -> None:
    conn, addr = await server.accept()
    print("  server: connection from", addr)
    async with conn:
        total = 0
        while data := await conn.recv(65536):
            total += len(data)
            await conn.sendall(data)
    print(f"  server: client closed; echoed {total} bytes")


async def receive(client: asock.socket, size: int) -> bytes:
    reply = b""
    # TCP is a byte stream: a large echo comes back in several pieces.
    while len(reply) < size:
        chunk = await client.recv(65536)
        if not chunk:
            raise ConnectionError("server closed early")
        reply += chunk
    return reply


async def exchange(client: asock.socket, message: bytes) -> bytes:
    # Send and receive at once: a large message could otherwise fill both
    # directions' buffers and leave each side waiting on the other.  One task
    # may wait to send while another waits to receive on the same socket.
    _, reply = await asyncio.gather(client.sendall(message), receive(client, len(message)))
    return reply


async def demo(loop_name: str) -> None:
    print(f"asock {asock.__version__} on {loop_name}")
    with asock.create_server(("127.0.0.1", 0)) as server:
        print("  server: listening on", server.getsockname())
        serving = asyncio.create_task(serve_one(server))
        async with await asock.create_connection(server.getsockname(), timeout=10) as client:
            for message in (b"Hello, world", b"asock", bytes(range(256)) * 1024):
                reply = await exchange(client, message)
                shown = repr(message) if len(message) < 40 else f"<{len(message)} bytes>"
                print(f"  client: sent {shown}, echo {'matches' if reply == message else 'DIFFERS'}")
                if reply != message:
                    raise SystemExit(1)
            # A receive that times out has consumed nothing; the socket stays usable.
            client.settimeout(0.05)
            try:
                await client.recv(1024)
            except TimeoutError as exc:
                print(f"  client: recv with nothing to read raised TimeoutError({exc})")
            client.settimeout(10)
            print("  client: then got", repr(await exchange(client, b"still here")))
        await serving


def main() -> None:
    asyncio.run(demo("asyncio's default event loop"))
    try:
        import uvloop
    except ImportError:
        print("uvloop is not installed: skipped the uvloop run")
        return
    uvloop.run(demo("uvloop"))


if __name__ == "__main__":
    main()
