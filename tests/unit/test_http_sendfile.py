"""http.sendfile: data-file ranges sent by the kernel over a real loopback connection, to a slow
reader, to a reader that leaves, and stopped by the loop (connection lost, shutdown)."""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
import uvloop

from rs3gw.http.sendfile import SENDFILE_THREADS, Sendfile, SendfileAborted

MIB = 1 << 20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


Pieces = list[tuple[int, int, int]]


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Pieces, bytes]]:
    """Two data files and pieces over parts of both: (pieces, the bytes they name)."""
    a, b = os.urandom(3 * MIB), os.urandom(2 * MIB + 123)
    (tmp_path / "a").write_bytes(a)
    (tmp_path / "b").write_bytes(b)
    fa = os.open(tmp_path / "a", os.O_RDONLY)
    fb = os.open(tmp_path / "b", os.O_RDONLY)
    yield [(fa, 1000, 3 * MIB - 1000), (fb, 0, 2 * MIB + 123), (fa, 5, 10)], a[1000:] + b + a[5:15]
    os.close(fa)
    os.close(fb)


Body = Callable[[asyncio.Transport, socket.socket, Sendfile], Awaitable[None]]


def run_with_connection(body: Body, stall_timeout_s: float = 30,
                        threads: int = SENDFILE_THREADS) -> None:
    """``body`` gets a uvloop server transport, the client socket connected to it and a Sendfile
    (closed afterwards, whatever the body did)."""
    async def main() -> None:
        got: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                got.set_result(cast(asyncio.Transport, transport))  # uvloop's: not a subclass

        server = await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        transport = await got
        sf = Sendfile(stall_timeout_s, threads)
        try:
            await body(transport, client, sf)
        finally:
            sf.close()
            transport.close()
            client.close()
            server.close()
            await server.wait_closed()

    uvloop.run(main())


def read_exactly(sock: socket.socket, n: int, out: list[bytes], pause_s: float = 0.0) -> None:
    got = 0
    while got < n:
        chunk = sock.recv(min(256 * 1024, n - got))
        if not chunk:
            break
        out.append(chunk)
        got += len(chunk)
        if pause_s:
            time.sleep(pause_s)


def test_pieces_arrive_in_order_to_a_slow_reader(files: tuple[Pieces, bytes]) -> None:
    pieces, expected = files

    async def body(transport: asyncio.Transport, client: socket.socket, sf: Sendfile) -> None:
        assert sf.available(transport)
        received: list[bytes] = []
        # Reads 256 KiB every 5 ms: the socket fills up again and again, so the pump waits for
        # POLLOUT many times.
        reader = threading.Thread(target=read_exactly,
                                  args=(client, len(expected), received, 0.005))
        reader.start()
        fds = open_fds()
        sent = await sf.send(transport, pieces, threading.Event())
        await asyncio.get_running_loop().run_in_executor(None, reader.join)
        assert sent == len(expected)
        assert b"".join(received) == expected
        assert open_fds() == fds          # the dup'ed socket descriptor is closed again

    run_with_connection(body)


def test_a_reader_that_leaves_aborts_the_send(files: tuple[Pieces, bytes]) -> None:
    pieces, _ = files

    async def body(transport: asyncio.Transport, client: socket.socket, sf: Sendfile) -> None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()      # RST: the next sendfile fails with ECONNRESET or EPIPE
        fds = open_fds()
        with pytest.raises(SendfileAborted):
            await sf.send(transport, pieces, threading.Event())
        # Not one more than before (the dup is closed); one fewer when uvloop saw the reset
        # first and closed the transport's own descriptor while the pump held the dup.
        assert open_fds() <= fds

    run_with_connection(body)


def test_the_loop_can_stop_a_pump_whose_reader_stalls(files: tuple[Pieces, bytes]) -> None:
    pieces, _ = files

    async def body(transport: asyncio.Transport, client: socket.socket, sf: Sendfile) -> None:
        cancel = threading.Event()
        task = asyncio.ensure_future(sf.send(transport, pieces, cancel))
        await asyncio.sleep(0.3)          # the client reads nothing: the pump sits in poll()
        assert not task.done()
        cancel.set()                      # what connection_lost does
        with pytest.raises(SendfileAborted, match="closed"):
            await asyncio.wait_for(task, 30)    # ends (a hang fails here), however slow the host

    run_with_connection(body)


def test_a_reader_that_stalls_past_the_timeout_is_given_up(files: tuple[Pieces, bytes]) -> None:
    pieces, _ = files

    async def body(transport: asyncio.Transport, client: socket.socket, sf: Sendfile) -> None:
        with pytest.raises(SendfileAborted, match="read nothing"):
            await sf.send(transport, pieces, threading.Event())

    run_with_connection(body, stall_timeout_s=0.5)


def test_not_available_with_bytes_still_buffered() -> None:
    async def body(transport: asyncio.Transport, client: socket.socket, sf: Sendfile) -> None:
        transport.write(b"x" * (64 * MIB))     # far more than the socket takes at once
        assert transport.get_write_buffer_size() > 0
        assert not sf.available(transport)

    run_with_connection(body, threads=1)
