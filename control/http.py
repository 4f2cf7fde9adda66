"""HTTP/1.1 on trio streams with h11: one request per connection, then close, or, with
`keep_alive`, requests one after another while the client keeps the connection.

Every listener of spidernet uses it: the node service's unix socket (CNI forwarders, the CLI)
and loopback metrics port (one request each), and the controller's admission webhook over TLS
(kept alive: the API server reuses its connections). Callers on a unix socket are identified
by SO_PEERCRED before anything is read.
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


async def _read_request(
    stream: trio.abc.Stream, conn: h11.Connection, peer: Peer, timeout_s: float
) -> Request | None:
    target = b""
    method = b""
    headers: list[tuple[str, str]] = []
    body = bytearray()
    with trio.move_on_after(timeout_s) as scope:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_CHUNK)
                conn.receive_data(bytes(data))
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
            else:  # ConnectionClosed (or PAUSED: nothing is pipelined before an answer)
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
        peer=peer,
    )


async def serve_connection(
    stream: trio.abc.Stream,
    handler: Handler,
    *,
    keep_alive: bool = False,
    idle_timeout_s: float = READ_TIMEOUT_S,
) -> None:
    """Answer the requests of one connection, then close it: one request, or, with
    `keep_alive`, each next one until the client closes or sends nothing for `idle_timeout_s`.
    Malformed requests get 400 and end the connection."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY)
    peer = peer_of(stream) if isinstance(stream, trio.SocketStream) else Peer()
    async with stream:
        while True:
            try:
                request = await _read_request(stream, conn, peer, idle_timeout_s)
            except (h11.RemoteProtocolError, trio.BrokenResourceError, UnicodeDecodeError):
                request = None  # (a TLS handshake that failed is a BrokenResourceError too)
            if request is None:
                if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                    return
                if conn.their_state in (h11.IDLE, h11.DONE, h11.CLOSED) and keep_alive:
                    return  # a kept-alive client that went quiet or away: nothing to answer
                response = Response(400, b'{"error": "malformed request"}\n')
            else:
                response = await handler(request)
            headers = [
                ("Content-Type", response.content_type),
                ("Content-Length", str(len(response.body))),
                *([] if keep_alive and request is not None else [("Connection", "close")]),
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
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # either side asked to close (Connection: close, HTTP/1.0)
            conn.start_next_cycle()
