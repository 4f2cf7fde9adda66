"""HTTP/1.1 on trio streams with h11: one request per connection, then close.

Both listeners use it: the unix socket (CNI forwarders, the CLI) and the loopback metrics
port. Callers on the unix socket are identified by SO_PEERCRED before anything is read.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import h11
import trio

MAX_BODY = 16 * 1024 * 1024
READ_CHUNK = 65536
# A client that sends nothing for this long is dropped (a forwarder sends at once).
READ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Peer:
    """The process on the other end of a unix socket (SO_PEERCRED), or unknown (TCP)."""

    pid: int = 0
    uid: int = -1
    gid: int = -1


@dataclass(frozen=True)
class Request:
    """One parsed request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]
    body: bytes
    peer: Peer

    def header(self, name: str) -> list[str]:
        """Every value of header `name` (case-insensitive)."""
        name = name.lower()
        return [v for k, v in self.headers if k == name]


@dataclass(frozen=True)
class Response:
    """What a handler answers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


def peer_of(stream: trio.SocketStream) -> Peer:
    """SO_PEERCRED of a unix stream (pid, uid, gid of the connecting process)."""
    sock = stream.socket
    if sock.family != socket.AF_UNIX:
        return Peer()
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> Request | None:
    target = b""
    method = b""
    headers: list[tuple[str, str]] = []
    body = bytearray()
    with trio.move_on_after(READ_TIMEOUT_S) as scope:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_CHUNK)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                method, target = event.method, event.target
                headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    return None
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return None
    if scope.cancelled_caught:
        return None
    url = urlsplit(target.decode("latin-1"))
    return Request(
        method=method.decode(),
        path=url.path,
        query=parse_qs(url.query),
        headers=headers,
        body=bytes(body),
        peer=peer_of(stream),
    )


async def serve_connection(stream: trio.SocketStream, handler: Handler) -> None:
    """Read one request, answer it, close. Malformed requests get 400."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY)
    async with stream:
        try:
            request = await _read_request(stream, conn)
        except (h11.RemoteProtocolError, trio.BrokenResourceError, UnicodeDecodeError):
            request = None
        if request is None:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                response = Response(400, b'{"error": "malformed request"}\n')
            else:
                return
        else:
            response = await handler(request)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Connection", "close"),
            *response.headers,
        ]
        try:
            await stream.send_all(
                conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
            )
            await stream.send_all(conn.send(h11.Data(data=response.body)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            return
