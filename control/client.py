"""A blocking client of the control service's unix socket (the CLI and the lab use it).

Plain `http.client` over an AF_UNIX socket: the CLI is short-lived and imports no trio.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spidernet.control.errors import ControlError

# The service's paths and the variables that move them (DESIGN.md, "Contracts users see").
# The forwarders (cni/forward.py, forward.c) carry their own copy of the socket default:
# they run without this package.
DEFAULT_SOCKET = "/run/spidernet/spidernet.sock"
DEFAULT_STATE_DIR = "/var/lib/spidernet"
TIMEOUT_S = 100.0


class ServiceUnreachable(ControlError):
    """Nothing answers on the socket."""


class ServiceError(ControlError):
    """The service answered with an error; `status` is its HTTP status, `code` the CNI
    error code when the answer carries one (the IPAM routes: 11 means try again later)."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("spidernet", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def socket_path(explicit: str | None = None) -> str:
    """--socket, else $SPIDERNET_SOCKET, else the default."""
    return explicit or os.environ.get("SPIDERNET_SOCKET") or DEFAULT_SOCKET


def state_dir(explicit: str | None = None, ask: Callable[[], str | None] | None = None) -> Path:
    """--state-dir, else $SPIDERNET_STATE_DIR, else what `ask` answers (diag asks the
    service for its own), else the default."""
    chosen = explicit or os.environ.get("SPIDERNET_STATE_DIR") or (ask() if ask else None)
    return Path(chosen or DEFAULT_STATE_DIR)


class Client:
    """JSON requests to the service."""

    def __init__(self, path: str | Path, timeout: float = TIMEOUT_S) -> None:
        self.path = str(path)
        self.timeout = timeout

    def request(self, method: str, url: str, body: object = None) -> Any:  # noqa: ANN401 (decoded JSON; callers index what they asked for)
        """The decoded JSON answer; raises ServiceUnreachable or ServiceError."""
        conn = _UnixConnection(self.path, self.timeout)
        data = None if body is None else json.dumps(body).encode()
        try:
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, url, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except OSError as e:
            why = e.strerror or str(e)
            raise ServiceUnreachable(
                f"the spidernet service is not reachable at {self.path}: {why} "
                "(is `spidernet serve` running?)"
            ) from e
        except http.client.HTTPException as e:
            # The connection closed before a whole answer (the service stopped mid-answer).
            raise ServiceUnreachable(
                f"the spidernet service at {self.path} closed the connection before a whole "
                f"answer ({type(e).__name__}); did it restart?"
            ) from e
        finally:
            conn.close()
        try:
            obj = json.loads(raw) if raw else None
        except ValueError as e:
            raise ServiceError(response.status, f"malformed answer: {e}") from e
        if response.status >= 400:
            message = obj.get("error", "") if isinstance(obj, dict) else str(obj)
            code = obj.get("code") if isinstance(obj, dict) else None
            raise ServiceError(response.status, message, code if isinstance(code, int) else None)
        return obj

    def healthy(self) -> bool:
        """True when the service answers its health check."""
        try:
            self.request("GET", "/v1/healthz")
        except (ServiceUnreachable, ServiceError):
            return False
        return True
