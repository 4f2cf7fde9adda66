"""HTTP/1.1 on trio streams with h11: one request per connection, then close, or, with
`keep_alive`, requests one after another while the client keeps the connection.

Every listener of spidernet uses it: the node service's unix socket (CNI forwarders, the CLI)
and loopback metrics port (one request each), and the controller's admission webhook over TLS
(kept alive: the API server reuses its connections). Callers on a unix socket are identified
by SO_PEERCRED before anything is read.

What a client can hold is bounded: a whole request must arrive within the read deadline (408
otherwise, or a silent close when nothing came), a body over `MAX_BODY` is refused with 413
before it is read, and `serve_listener` holds at most as many connections as the process has
file descriptors to spare; at that limit, or when accept() fails for want of a resource, it
sheds the connections that have been waiting longest for their request and logs it. Its loop
is trio's `serve_listeners`, which logs accept()'s capacity errors (EMFILE, ENFILE, ENOMEM,
ENOBUFS) and accepts again after 100 ms; any other accept error ends it, and the service with
it, rather than leave a live process that answers nothing.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import resource
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit

import h11
import trio

# The CNI forwarders read at most this much config (cni/forward.c, MAX_INPUT): any
# request a forwarder sends fits.
MAX_BODY = 16 * 1024 * 1024
READ_CHUNK = 65536
# The request line and headers (CNI_* variables are a few hundred bytes).
MAX_HEAD = 64 * 1024
# A request not complete after this long is dropped (a forwarder sends all of it at once).
READ_TIMEOUT_S = 30.0
# accept() errors that mean "out of a resource for now", not "the listener is broken": the
# set trio's serve_listeners logs and retries (trio/_highlevel_serve_listeners.py,
# ACCEPT_CAPACITY_ERRNOS); on these the gate sheds waiting connections first.
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_S = 0.1
SHED_WAIT_S = 0.01
# File descriptors a server keeps for other work than its connections (open_files_limit).
FD_RESERVE = 128
# How many of the connections still waiting for their request one capacity error sheds.
SHED_BATCH = 16
# At most one accept-failure line per this many seconds (a flood fails thousands of times).
LOG_EVERY_S = 5.0

_log = logging.getLogger("spidernet.http")


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


def open_files_limit() -> int:
    """How many connections a server may hold at once: the process's soft open-file limit,
    less `FD_RESERVE` for everything else (the store, the broker, what a request opens)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(soft - FD_RESERVE, 16)


class Connections:
    """The open connections of a server (one count for all its listeners, which share the
    process's file descriptors) and those still waiting for (the rest of) a request, in the
    order they started waiting, so that the oldest can be shed when the server is at its
    limit: a client that connects and sends nothing must not keep the next CNI call out
    until its deadline. A connection whose request is complete is never shed."""

    def __init__(self, limit: Callable[[], int] = open_files_limit) -> None:
        self.limit = limit
        self.open = 0
        self._waiting: dict[int, trio.CancelScope] = {}
        self._next = 0
        self.shed_total = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def full(self) -> bool:
        return self.open >= self.limit()

    def enter(self, scope: trio.CancelScope) -> int:
        self._next += 1
        self._waiting[self._next] = scope
        return self._next

    def leave(self, token: int) -> None:
        self._waiting.pop(token, None)

    def shed(self, count: int) -> int:
        """Cancel the reads of the `count` longest-waiting connections; how many there were."""
        oldest = list(self._waiting)[:count]
        for token in oldest:
            self._waiting.pop(token).cancel()
        self.shed_total += len(oldest)
        return len(oldest)


@dataclass(frozen=True)
class Refusal:
    """Why no request came: answered with `status` and `message`, or (status 0) a silent
    close, for a client that sent nothing or went away."""

    status: int = 0
    message: str = ""


def peer_of(stream: trio.SocketStream) -> Peer:
    """SO_PEERCRED of a unix stream (pid, uid, gid of the connecting process)."""
    sock = stream.socket
    if sock.family != socket.AF_UNIX:
        return Peer()
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


async def _read_request(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    peer: Peer,
    timeout_s: float,
    *,
    connections: Connections | None,
    max_body: int,
) -> Request | Refusal:
    target = b""
    method = b""
    headers: list[tuple[str, str]] = []
    body = bytearray()
    started = False  # any byte of this request arrived
    with trio.move_on_after(timeout_s) as scope:
        token = connections.enter(scope) if connections is not None else 0
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(READ_CHUNK)
                    started = started or bool(data)
                    conn.receive_data(bytes(data))
                    continue
                if isinstance(event, h11.Request):
                    method, target = event.method, event.target
                    headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers]
                    length = dict(headers).get("content-length", "0")
                    if length.isdigit() and int(length) > max_body:
                        return Refusal(413, f"request body of {length} bytes; at most {max_body}")
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > max_body:
                        return Refusal(413, f"request body over {max_body} bytes")
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed (or PAUSED: nothing is pipelined before an answer)
                    return Refusal()
        finally:
            if connections is not None:
                connections.leave(token)
    if scope.cancelled_caught:
        if not started:
            return Refusal()
        if trio.current_time() < scope.deadline:  # shed by serve_listener, not timed out
            return Refusal(503, "dropped while incomplete: the server is at its connection limit")
        return Refusal(408, f"no complete request within {timeout_s:g} s")
    url = urlsplit(target.decode("latin-1"))
    return Request(
        method=method.decode(),
        path=url.path,
        query=parse_qs(url.query),
        headers=headers,
        body=bytes(body),
        peer=peer,
    )


def _refusal_bytes(refusal: Refusal) -> bytes:
    """A refusal as raw HTTP/1.1 (h11 cannot answer a request whose head never arrived)."""
    body = (json.dumps({"error": refusal.message}) + "\n").encode()
    head = (
        f"HTTP/1.1 {refusal.status} {HTTPStatus(refusal.status).phrase}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def serve_connection(
    stream: trio.abc.Stream,
    handler: Handler,
    *,
    keep_alive: bool = False,
    idle_timeout_s: float = READ_TIMEOUT_S,
    connections: Connections | None = None,
    max_body: int = MAX_BODY,
) -> None:
    """Answer the requests of one connection, then close it: one request, or, with
    `keep_alive`, each next one until the client closes or sends nothing for `idle_timeout_s`.
    A request must be complete within `idle_timeout_s`; one that is malformed (400), late
    (408) or too large (413) is answered so and ends the connection."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    peer = peer_of(stream) if isinstance(stream, trio.SocketStream) else Peer()
    async with stream:
        while True:
            try:
                got = await _read_request(
                    stream, conn, peer, idle_timeout_s, connections=connections, max_body=max_body
                )
            except h11.RemoteProtocolError as e:
                got = Refusal(400, f"malformed request: {e}")
            except (trio.BrokenResourceError, trio.ClosedResourceError, UnicodeDecodeError):
                return  # (a TLS handshake that failed is a BrokenResourceError too)
            if isinstance(got, Refusal):
                if got.status:
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await stream.send_all(_refusal_bytes(got))
                return
            response = await handler(got)
            headers = [
                ("Content-Type", response.content_type),
                ("Content-Length", str(len(response.body))),
                *([] if keep_alive else [("Connection", "close")]),
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


async def serve_listener(
    listener: trio.abc.Listener[trio.abc.Stream],
    handler: Handler,
    nursery: trio.Nursery,
    *,
    connections: Connections,
    read_timeout_s: float = READ_TIMEOUT_S,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Accept connections on `listener` and serve each in `nursery`, one request each, until
    cancelled (the listener is closed on the way out). The loop is `trio.serve_listeners`:
    an accept error that means the process or kernel is out of a resource is logged
    (logger `trio.serve_listeners`) and retried after 100 ms; any other ends it. In front of
    it, `Gate` keeps to `connections`' limit and sheds for capacity errors."""
    serve = functools.partial(
        _serve_counted, handler=handler, read_timeout_s=read_timeout_s, connections=connections
    )
    gate = Gate(listener, connections)
    await trio.serve_listeners(serve, [gate], handler_nursery=nursery, task_status=task_status)


class Gate(trio.abc.Listener[trio.abc.Stream]):
    """`listener` within `connections`' limit. At the limit it accepts no more: it sheds up
    to `SHED_BATCH` of the connections waiting longest for their request and waits for
    room (new callers wait in the listen queue meanwhile). An accept error that means the
    process or kernel is out of a resource sheds the same way before it goes on to the
    accept loop. Both are logged at most once per `LOG_EVERY_S`."""

    def __init__(
        self, listener: trio.abc.Listener[trio.abc.Stream], connections: Connections
    ) -> None:
        self.listener = listener
        self.connections = connections
        self._report = _Report()

    async def accept(self) -> trio.abc.Stream:
        """The next connection, counted in `connections` (its handler uncounts it)."""
        connections = self.connections
        while connections.full():
            # Shed only for a caller that is waiting to be accepted, and only while still
            # full: connections that finish meanwhile make room by themselves.
            if await _caller_waiting(self.listener) and connections.full():
                shed = connections.shed(SHED_BATCH)
                what = f"{connections.open} connections open, the limit"
                self._report.event(what, shed, connections)
                # Shed connections close at the next turns of the loop; with none to shed,
                # the ones in work must finish first.
                await trio.sleep(SHED_WAIT_S if shed else ACCEPT_RETRY_S)
        try:
            stream = await self.listener.accept()
        except OSError as e:
            if e.errno in CAPACITY_ERRNOS:
                shed = connections.shed(SHED_BATCH)
                self._report.event(f"accept failed: {e.strerror or e}", shed, connections)
            raise
        connections.open += 1
        return stream

    async def aclose(self) -> None:
        """Close the listener."""
        await self.listener.aclose()


async def _caller_waiting(listener: trio.abc.Listener[trio.abc.Stream]) -> bool:
    """True once a connection waits in `listener`'s accept queue (its socket is readable),
    False when none came within `ACCEPT_RETRY_S`. A listener without a socket: True."""
    if not isinstance(listener, trio.SocketListener):
        await trio.lowlevel.checkpoint()
        return True
    with trio.move_on_after(ACCEPT_RETRY_S):
        await trio.lowlevel.wait_readable(listener.socket)
        return True
    return False


async def _serve_counted(
    stream: trio.abc.Stream, *, handler: Handler, read_timeout_s: float, connections: Connections
) -> None:
    try:
        await serve_connection(
            stream, handler, idle_timeout_s=read_timeout_s, connections=connections
        )
    finally:
        connections.open -= 1


class _Report:
    """The accept loop's warnings: the first of a burst at once, then at most one line per
    `LOG_EVERY_S` with how often it happened meanwhile (a flood fails thousands of times)."""

    def __init__(self) -> None:
        self.count = 0
        self.last = -LOG_EVERY_S

    def event(self, what: str, shed: int, connections: Connections) -> None:
        self.count += 1
        now = trio.current_time()
        if now - self.last < LOG_EVERY_S:
            return
        _log.warning(
            "%s (%d time(s) since the last report); shed %d connection(s) still waiting for "
            "a request (%d in all); accepting again when there is room",
            what,
            self.count,
            shed,
            connections.shed_total,
        )
        self.count, self.last = 0, now
