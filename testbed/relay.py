"""A TCP relay on loopback that a fault test can cut: a network partition between one client
(an agent, through a kubeconfig naming the relay) and its server (the API server), without
touching any other client or this machine's network. Or mute: requests still reach the
server, its answers are lost on the way back (a write applied whose client never hears so).

While cut, the relay accepts new connections and reads what clients send, but forwards
nothing either way: requests hang until the client's own timeout, as across a dead link.
Healing closes every connection that lived through the cut (as a real partition's TCP
connections end in resets or timeouts), and forwards new ones again. Threads only; stopped
with `close`."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from contextlib import suppress


class Relay:
    """Forward 127.0.0.1:`port` to `upstream`; `cut()` and `heal()` the link."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._muted = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def cut(self) -> None:
        """From now on nothing passes, in either direction."""
        self._cut.set()

    def mute(self) -> None:
        """From now on requests pass and answers are dropped."""
        self._muted.set()

    def heal(self) -> None:
        """End every connection that lived through the cut (or mute); new ones pass again."""
        with self._lock:
            stale, self._open = self._open, []
        self._cut.clear()
        self._muted.clear()
        for sock in stale:
            _close(sock)

    def close(self) -> None:
        """Stop accepting and end every connection."""
        self._closed = True
        _close(self._listener)
        self.heal()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.append(client)
            if self._cut.is_set():
                self._spawn(self._drain, client)  # read and drop: the link is dead
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open.append(server)
            self._spawn(self._pump, client, server, False)
            self._spawn(self._pump, server, client, True)

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                if not self._cut.is_set() and not (answers and self._muted.is_set()):
                    dst.sendall(data)
        _close(dst)

    def _drain(self, sock: socket.socket) -> None:
        with suppress(OSError):
            while sock.recv(65536):
                pass


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()
