"""Passing an open file descriptor over a Unix socket with asock.

    python examples/fd_passing.py [--uvloop | --trio]

A "keeper" task opens a file, deletes its name and hands the open descriptor
to a "reader" task over an AF_UNIX connection (SCM_RIGHTS).  The reader has no
path to open, yet reads the file through the descriptor it received.  The two
tasks share one process here for brevity; across processes the code is the
same.
"""

import argparse
import asyncio
import os
import tempfile

import asock


async def keeper(server: asock.socket, directory: str) -> None:
    conn, _ = await server.accept()
    with conn, tempfile.TemporaryFile(dir=directory) as f:
        # TemporaryFile has no name left on disk: the descriptor is the only way in.
        f.write(b"read through a descriptor that came over a Unix socket\n")
        f.flush()
        f.seek(0)
        await asock.send_fds(conn, [b"here is the file"], [f.fileno()])
        # The kernel gave the reader its own descriptor: closing ours is safe.


async def reader(path: str) -> None:
    with asock.socket(asock.AF_UNIX, asock.SOCK_STREAM) as s:
        await s.connect(path)
        msg, fds, flags, _ = await asock.recv_fds(s, 1024, maxfds=1)
    print("Message:", repr(msg), "descriptors:", fds)
    if not fds or flags & asock.MSG_CTRUNC:
        raise SystemExit("no descriptor received")
    with open(fds[0], "rb") as f:
        print("File says:", repr(f.read()))


async def main(use_trio: bool = False) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "fd.sock")
        with asock.create_server(path, family=asock.AF_UNIX) as server:
            if use_trio:
                import trio

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(keeper, server, directory)
                    nursery.start_soon(reader, path)
            else:
                await asyncio.gather(keeper(server, directory), reader(path))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="pass a file descriptor over a Unix socket")
    loops = parser.add_mutually_exclusive_group()
    loops.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's default loop")
    loops.add_argument("--trio", action="store_true", help="run under trio instead of asyncio")
    args = parser.parse_args()
    if args.trio:
        import trio

        trio.run(main, True)
    elif args.uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
