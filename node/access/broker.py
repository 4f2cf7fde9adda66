"""The node service's side of the namespace broker (`broker_main`, a helper process).

`Broker` gives `Namespaces` through the broker: each reach is one message on a socket pair
and back (a few tenths of a millisecond) instead of a new process. It starts the broker on
first use, starts a new one when the last has gone away, and is safe to share between the
service's worker threads (one request at a time; each is short).
"""

from __future__ import annotations

import array
import json
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from spidernet.node.errors import NodeError
from spidernet.node.netlink.client import Netlink, netlink_on, open_netlink
from spidernet.node.netns import NetnsGone, openable
from spidernet.node.nft import NftError

from .broker_main import MAX_MESSAGE

NETLINK_ROUTE = 0
STOP_WAIT_S = 5
# The longest a request may take (an nft transaction is the slowest, tens of ms); a broker
# that does not answer by then is stopped and the request fails.
REPLY_TIMEOUT_S = 30.0


class BrokerError(NodeError):
    """The broker could not be started, or went away during a request."""


class RequestFailed(NodeError):
    """The broker answered a request with an error (`errno` and its message)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


def _where(netns: str | None) -> dict[str, Any]:
    """A request's namespace: the path the broker opens for the current call (the caller's
    view, node/netns.py) and the path its messages name."""
    if netns is None:
        return {"netns": None}
    return {"netns": openable(netns), "label": netns}


class Broker:
    """`Namespaces` through one long-lived broker process (see the module's doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        # Sockets to close off the caller's path (`discard`), and the thread closing them.
        self._closing: queue.SimpleQueue[socket.socket | None] = queue.SimpleQueue()
        self._closer: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-m",
                    "spidernet.node.access.broker_main",
                    str(theirs.fileno()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except OSError as e:
            ours.close()
            raise BrokerError(f"failed to start the namespace broker: {e}") from e
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT_S)
        self._sock = ours
        return ours

    def _stop_locked(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the broker reads end-of-file and exits
            self._sock = None
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, by its handle
                proc.wait()

    def close(self) -> None:
        """Stop the broker (it is started again on the next request) and close the sockets
        discarded so far."""
        with self._lock:
            self._stop_locked()
            closer, self._closer = self._closer, None
        if closer is not None:
            self._closing.put(None)
            closer.join()

    def _close_discarded(self) -> None:
        while (sock := self._closing.get()) is not None:
            sock.close()

    @property
    def pid(self) -> int | None:
        """The broker's process id while one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # -- one exchange -------------------------------------------------------------------

    def _exchange(self, request: Mapping[str, Any]) -> tuple[dict[str, Any], list[int]]:
        data = json.dumps(request).encode()
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"request of {len(data)} bytes is over {MAX_MESSAGE}")
        with self._lock:
            sock = self._sock
            if sock is None or self._proc is None or self._proc.poll() is not None:
                self._stop_locked()
                sock = self._start()
            try:
                sock.send(data)
            except OSError:
                # Not delivered (the broker is gone): nothing ran, so one retry is safe.
                self._stop_locked()
                sock = self._start()
                sock.send(data)
            fds_size = socket.CMSG_SPACE(4 * 4)
            try:
                reply, ancillary, _, _ = sock.recvmsg(MAX_MESSAGE, fds_size)
            except TimeoutError as e:
                self._stop_locked()
                raise BrokerError(
                    f"the namespace broker did not answer a '{request.get('op')}' request"
                    f" within {REPLY_TIMEOUT_S:.0f} s"
                ) from e
            if not reply:
                self._stop_locked()
                raise BrokerError(
                    f"the namespace broker exited during a '{request.get('op')}' request"
                )
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", payload[: len(payload) - len(payload) % 4]))
        answer = json.loads(reply)
        if not answer.get("ok"):
            for fd in fds:
                os.close(fd)
            if answer.get("gone"):
                raise NetnsGone(str(answer.get("error")))
            raise RequestFailed(str(answer.get("error")), int(answer.get("errno") or 0))
        return answer, fds

    def ping(self) -> dict[str, Any]:
        """The broker's pid and whether it has libnftables (starting it if need be)."""
        return self._exchange({"op": "ping"})[0]

    # -- Namespaces ---------------------------------------------------------------------

    def open_socket(
        self, netns: str | None, family: int, kind: int, proto: int = 0
    ) -> socket.socket:
        if netns is None:
            return socket.socket(family, kind, proto)
        request = {"op": "socket", **_where(netns), "family": family, "type": kind, "proto": proto}
        try:
            _, fds = self._exchange(request)
        except RequestFailed as e:
            raise OSError(e.errno, str(e)) from e
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise BrokerError(f"the namespace broker passed {len(fds)} descriptors, not 1")
        return socket.socket(fileno=fds[0])

    def discard(self, sock: socket.socket) -> None:
        with self._lock:
            if self._closer is None:
                self._closer = threading.Thread(
                    target=self._close_discarded, name="spidernet-socket-closer", daemon=True
                )
                self._closer.start()
        self._closing.put(sock)

    def netlink(self, netns: str | None) -> Netlink:
        if netns is None:
            return open_netlink(None)  # no namespace to reach: no broker needed
        path = netns
        return netlink_on(
            lambda: self.open_socket(path, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE),
            f"netns '{netns}'",
        )

    def read_sysctls(self, netns: str | None, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        try:
            answer, _ = self._exchange({"op": "sysctl", **_where(netns), "read": list(keys)})
        except RequestFailed as e:
            raise OSError(e.errno, str(e)) from e
        return {str(k): str(v) for k, v in answer.get("values", {}).items()}

    def set_sysctl(self, netns: str | None, key: str, value: str, *, missing_ok: bool) -> None:
        request = {
            "op": "sysctl",
            **_where(netns),
            "write": [[key, value]],
            "missing_ok": missing_ok,
        }
        try:
            self._exchange(request)
        except RequestFailed as e:
            where = f" in netns '{netns}'" if netns else ""
            raise OSError(e.errno, f"{e}{where}") from e

    def nft(self, netns: str | None, script: str, action: str) -> None:
        try:
            self._exchange({"op": "nft", **_where(netns), "script": script})
        except RequestFailed as e:
            where = netns or "of this process"
            raise NftError(f"failed to {action} in netns '{where}': {e}") from e
