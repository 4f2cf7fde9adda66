"""A connection flood on a unix socket, for the overload tests of the netns and k8s lanes:
`count` connections, every other one sending half a request and the rest nothing, each held
open until the caller closes them."""

from __future__ import annotations

import socket
import time
from pathlib import Path

HALF_REQUEST = b"POST /v1/cni/spidernet-ipam HTTP/1.1\r\nContent-Length: 99\r\n\r\n{"


def flood(path: Path, count: int, *, timeout: float = 20.0) -> list[socket.socket]:
    """Open `count` connections to the socket at `path` (retrying while its listen queue is
    full, for at most `timeout` seconds); the caller closes them. Fewer when time ran out."""
    held: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    while len(held) < count and time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(str(path))
        except BlockingIOError:
            s.close()
            time.sleep(0.01)
            continue
        except OSError:
            s.close()
            raise
        held.append(s)
        if len(held) % 2:
            s.send(HALF_REQUEST)
    return held
