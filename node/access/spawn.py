"""Namespaces reached by a new process each time: pyroute2's socket opener forks a child
that enters the namespace and passes the socket back; sysctls and nftables run as commands
in it (`nsenter`). Right for a one-shot process (the in-process plugin fallback, tests),
where a broker would cost more to start than it saves. This process's own namespace
(None) needs no process at all."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from spidernet.node import netns, nft
from spidernet.node.netlink.client import Netlink, open_netlink


def _own_sysctls(keys: Sequence[str]) -> dict[str, str]:
    found = {}
    for key in keys:
        try:
            found[key] = Path(netns.sysctl_path(key)).read_text(encoding="ascii").strip()
        except FileNotFoundError:
            continue
    return found


class Spawning:
    """`Namespaces` by a new process per reach (see the module's doc)."""

    def netlink(self, path: str | None) -> Netlink:
        return open_netlink(path)

    def open_socket(
        self, path: str | None, family: int, kind: int, proto: int = 0
    ) -> socket.socket:
        if path is None:
            return socket.socket(family, kind, proto)
        return netns.open_socket_in(path, family, kind, proto)

    def discard(self, sock: socket.socket) -> None:
        sock.close()

    def read_sysctls(self, path: str | None, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        if path is None:
            return _own_sysctls(keys)
        # One process for all the keys; `-e`: a key the kernel lacks is left out.
        argv = netns.exec_argv(path, ["sysctl", "-e", *keys])
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        found: dict[str, str] = {}
        for line in done.stdout.splitlines():
            key, sep, value = line.partition(" = ")
            if sep and key in keys:
                found[key] = value.strip()
        return found

    def set_sysctl(self, path: str | None, key: str, value: str, *, missing_ok: bool) -> None:
        if path is not None:
            netns.check(path)  # a namespace gone is NetnsGone, not a failed command
            netns.set_sysctl(path, key, value, missing_ok=missing_ok)
            return
        try:
            Path(netns.sysctl_path(key)).write_text(value, encoding="ascii")
        except FileNotFoundError:
            if not missing_ok:
                raise

    def nft(self, path: str | None, script: str, action: str) -> None:
        nft.run_script(path or "/proc/self/ns/net", script, action)
