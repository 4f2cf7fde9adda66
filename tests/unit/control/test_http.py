"""control/http.py over real unix sockets in-process: what a client can hold is bounded (read
deadline, body size), connections still waiting for a request are shed oldest first, and the
accept loop (trio's serve_listeners) outlives capacity errors and ends on others. The same
loop under a real fd limit is the netns lane's (tests/netns/test_overload.py)."""

from __future__ import annotations

import contextlib
import errno
import functools
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing

from spidernet.control.http import (
    Connections,
    Request,
    Response,
    serve_connection,
    serve_listener,
)

TIMEOUT_S = 0.5


async def echo(request: Request) -> Response:
    return Response(200, request.body)


@dataclass
class Server:
    path: Path
    connections: Connections


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serving(Connections()) as running:
        yield running


@contextlib.asynccontextmanager
async def serving(connections: Connections) -> AsyncIterator[Server]:
    with tempfile.TemporaryDirectory(prefix="snt-http-") as tmp:
        path = Path(tmp, "s.sock")
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(path))
        sock.listen(64)
        listener = trio.SocketListener(sock)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(
                    serve_listener,
                    listener,
                    echo,
                    nursery,
                    connections=connections,
                    read_timeout_s=TIMEOUT_S,
                )
            )
            yield Server(path, connections)
            nursery.cancel_scope.cancel()  # the accept loop closes its listener as it ends


async def exchange(path: Path, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send `data`, then read until the server closes (at most `wait` seconds)."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(data)
        answer = bytearray()
        with trio.fail_after(wait):
            while chunk := await stream.receive_some(65536):
                answer += chunk
    return bytes(answer)


async def settle(done: Callable[[], bool]) -> None:
    """Wait until `done()` (at most 2 s)."""
    for _ in range(200):
        if done():
            return
        await trio.sleep(0.01)
    pytest.fail("the server did not get there within 2 s")


def request(body: bytes) -> bytes:
    head = f"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def test_a_whole_request_is_answered(server: Server) -> None:
    answer = await exchange(server.path, request(b'{"a": 1}'))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b'{"a": 1}')


async def test_a_client_that_sends_nothing_is_closed_silently_at_the_deadline(
    server: Server,
) -> None:
    start = trio.current_time()
    assert await exchange(server.path, b"") == b""
    assert trio.current_time() - start >= TIMEOUT_S * 0.9


async def test_half_a_request_gets_408_at_the_deadline(server: Server) -> None:
    half_head = await exchange(server.path, b"POST /x HTTP/1.1\r\nHost: t\r\n")
    assert half_head.startswith(b"HTTP/1.1 408 ")
    assert b"no complete request within 0.5 s" in half_head
    half_body = await exchange(server.path, request(b"0123456789")[:-4])
    assert half_body.startswith(b"HTTP/1.1 408 ")


async def test_an_oversized_body_is_refused_before_it_is_read(server: Server) -> None:
    head = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 17000000\r\n\r\n"
    answer = await exchange(server.path, head + b"x" * 1000)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"request body of 17000000 bytes; at most 16777216" in answer


async def test_an_endless_chunked_body_is_cut_off() -> None:
    # Chunks that never end: refused once past the body limit (a small one here).
    a, b = trio.testing.memory_stream_pair()
    chunk = b"400\r\n" + b"y" * 1024 + b"\r\n"

    async def client() -> bytes:
        await a.send_all(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(20):
            try:
                await a.send_all(chunk)
            except trio.BrokenResourceError:
                break  # the server answered and closed: it reads no more of this
        answer = bytearray()
        while data := await a.receive_some(65536):
            answer += data
        return bytes(answer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(serve_connection, b, echo, max_body=4096))
        answer = await client()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"request body over 4096 bytes" in answer


async def test_shedding_drops_the_longest_waiting_connections_first(server: Server) -> None:
    streams = []
    for _ in range(4):
        streams.append(await trio.open_unix_socket(str(server.path)))
        await trio.sleep(0.01)
    await settle(lambda: len(server.connections) == 4)
    assert server.connections.shed(2) == 2
    closed = []
    for stream in streams:
        with trio.move_on_after(0.2):
            closed.append(await stream.receive_some(10) == b"")
            continue
        closed.append(False)
    assert closed == [True, True, False, False]
    assert server.connections.shed_total == 2
    # A request that arrived whole is never shed: its answer still comes.
    answer = await exchange(server.path, request(b"kept"))
    assert answer.endswith(b"kept")
    for stream in streams:
        await stream.aclose()


class FailingListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose first accepts fail as an exhausted process's do (`errnos`), then
    hand out in-memory connections, whose client ends go to `clients`."""

    def __init__(self, errnos: list[int]) -> None:
        self.errnos = errnos
        self._send, self.clients = trio.open_memory_channel[trio.abc.Stream](8)
        self.closed = False

    async def accept(self) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        if self.errnos:
            code = self.errnos.pop(0)
            raise OSError(code, f"injected: {errno.errorcode[code]}")
        client, server = trio.testing.memory_stream_pair()
        await self._send.send(client)
        return server

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


async def talk(stream: trio.abc.Stream, data: bytes) -> bytes:
    """Send `data` on `stream`, then read until the server closes (at most 5 s)."""
    await stream.send_all(data)
    answer = bytearray()
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            answer += chunk
    return bytes(answer)


async def test_a_capacity_error_on_accept_is_logged_and_the_loop_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = FailingListener([errno.EMFILE, errno.ENFILE])
    connections = Connections()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(serve_listener, failing, echo, nursery, connections=connections)
        )
        # The accept loop (trio.serve_listeners) logged each failure and accepted again.
        with trio.fail_after(5):
            answers = [
                await talk(await failing.clients.receive(), request(f"call {i}".encode()))
                for i in range(2)
            ]
        nursery.cancel_scope.cancel()
    assert [a.rsplit(b"\r\n", 1)[-1] for a in answers] == [b"call 0", b"call 1"]
    assert failing.errnos == []
    assert failing.closed  # serve_listeners closes what it served
    assert connections.open == 0
    trio_lines = [r for r in caplog.records if r.name == "trio.serve_listeners"]
    assert [r.getMessage().split(";")[0] for r in trio_lines] == [
        "accept returned EMFILE (Too many open files)",
        "accept returned ENFILE (Too many open files in system)",
    ]
    # Each capacity error shed the connections waiting longest first (none here), reported
    # once for the burst (at most one line per LOG_EVERY_S), naming the first cause.
    assert caplog.text.count("accept failed") == 1
    assert "accept failed: injected: EMFILE (1 time(s) since the last report)" in caplog.text


async def test_an_accept_error_that_is_not_about_capacity_ends_the_loop() -> None:
    # (A live process whose socket answers nothing is worse than one that exits and is
    # restarted; trio's SocketListener already retries ECONNABORTED, EPROTO and EPERM.)
    failing = FailingListener([errno.EBADF])
    with pytest.raises(ExceptionGroup) as ended:
        async with trio.open_nursery() as nursery:
            await serve_listener(failing, echo, nursery, connections=Connections())
    assert ended.group_contains(OSError, match="injected: EBADF")
    assert failing.closed


async def test_at_its_limit_the_server_sheds_a_silent_client_for_a_new_one() -> None:
    async with serving(Connections(limit=lambda: 2)) as server:
        silent = [await trio.open_unix_socket(str(server.path)) for _ in range(2)]
        try:
            await settle(lambda: server.connections.open == 2)
            # Full, and nobody else calls: nothing is shed.
            await trio.sleep(0.3)
            assert server.connections.shed_total == 0
            # A third caller waits in the listen queue until the silent ones are shed (up to
            # SHED_BATCH of them, oldest first).
            answer = await exchange(server.path, request(b"third"), wait=2)
            assert answer.endswith(b"third")
            assert server.connections.shed_total == 2
            assert [await s.receive_some(10) for s in silent] == [b"", b""]
        finally:
            for stream in silent:
                await stream.aclose()
