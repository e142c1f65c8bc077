"""The asock quick-start demo: an echo server and a client in one process.

    python examples/demo.py [--trio]

Runs once on asyncio's default event loop and once more on uvloop when it is
installed (``pip install 'asock[uvloop]'``), printing what the two sides say.
With --trio it runs under trio instead (``pip install trio``), with the same
asock calls: only starting tasks differs (a nursery instead of asyncio's tasks).
"""

import argparse
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


async def exchange(client: asock.socket, message: bytes, use_trio: bool) -> bytes:
    # Send and receive at once: a large message could otherwise fill both
    # directions' buffers and leave each side waiting on the other.  One task
    # may wait to send while another waits to receive on the same socket.
    if not use_trio:
        _, reply = await asyncio.gather(client.sendall(message), receive(client, len(message)))
        return reply
    import trio

    replies: list[bytes] = []

    async def receive_reply() -> None:
        replies.append(await receive(client, len(message)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.sendall, message)
        nursery.start_soon(receive_reply)
    return replies[0]


async def client_side(address: tuple[str, int], use_trio: bool) -> None:
    async with await asock.create_connection(address, timeout=10) as client:
        for message in (b"Hello, world", b"asock", bytes(range(256)) * 1024):
            reply = await exchange(client, message, use_trio)
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
        print("  client: then got", repr(await exchange(client, b"still here", use_trio)))


async def demo(loop_name: str) -> None:
    print(f"asock {asock.__version__} on {loop_name}")
    with asock.create_server(("127.0.0.1", 0)) as server:
        print("  server: listening on", server.getsockname())
        serving = asyncio.create_task(serve_one(server))
        await client_side(server.getsockname(), use_trio=False)
        await serving


async def demo_trio() -> None:
    import trio

    print(f"asock {asock.__version__} on trio")
    with asock.create_server(("127.0.0.1", 0)) as server:
        print("  server: listening on", server.getsockname())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_one, server)
            await client_side(server.getsockname(), use_trio=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="asock's echo demo")
    parser.add_argument("--trio", action="store_true", help="run under trio instead of asyncio and uvloop")
    if parser.parse_args().trio:
        import trio

        trio.run(demo_trio)
        return
    asyncio.run(demo("asyncio's default event loop"))
    try:
        import uvloop
    except ImportError:
        print("uvloop is not installed: skipped the uvloop run")
        return
    uvloop.run(demo("uvloop"))


if __name__ == "__main__":
    main()
