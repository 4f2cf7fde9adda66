"""The sockets and request plumbing every part of the netlink client shares.

A `Session` holds the two NETLINK_ROUTE sockets of one namespace: the reader (raw.py),
opened at once, and pyroute2's IPRoute, opened on the first change it is needed for. It
turns pyroute2's errors into ours (errors.py), retries interrupted dumps, and caches the
interface indexes of the links it looked up or made. The client (client.py) is composed of
its reads (reads.py), its changes (writes.py) and its traffic control (tc.py) over it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink import nlmsg
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError
from pyroute2.netlink.rtnl import RTM_GETLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from .errors import NetlinkMissing, classify
from .raw import Reader

T = TypeVar("T")
# A dump the kernel marks NLM_F_DUMP_INTR (state changed while dumping) is retried this
# often, as the reference plugins' netlinksafe does.
DUMP_ATTEMPTS = 5


class Session:
    """The netlink sockets of one namespace and the requests made over them."""

    def __init__(self, open_socket: Callable[[], socket.socket], where: str) -> None:
        """`open_socket()` makes a NETLINK_ROUTE socket in the namespace: one now, for the
        reads (raw.py), and one for pyroute2 on the first change."""
        self._open_socket = open_socket
        self._reader = Reader(open_socket())
        self._writer: IPRoute | None = None
        self.where = where
        # name -> index, for the links this client looked up or made: a client lives for
        # one plugin call, and a plan names its links (ops.py), so most operations would
        # otherwise start with a lookup. Forgotten when this client deletes the link.
        self._indexes: dict[str, int] = {}

    def close(self) -> None:
        """Close the netlink sockets."""
        self._reader.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def _ipr(self) -> IPRoute:
        if self._writer is None:
            self._writer = IPRoute(use_socket=self._open_socket())
        return self._writer

    def _read(
        self,
        what: str,
        cls: Callable[[], nlmsg],
        msg_type: int,
        family: int = 0,
        attrs: Sequence[tuple[str, Any]] = (),
    ) -> list[Any]:
        """A dump of one family through the reader (`attrs`: the kernel's dump filters),
        restarted when the kernel flags it inconsistent."""

        def once() -> list[Any]:
            msg = cls()
            msg["family"] = family
            if attrs:
                msg["attrs"] = list(attrs)
            return self._reader.request(msg, msg_type, dump=True)

        return self._dump(what, once)

    def _get(self, action: str, obj: str, msg: nlmsg, msg_type: int) -> list[Any]:
        return self._call(action, obj, lambda: self._reader.request(msg, msg_type, dump=False))

    def _call(self, action: str, obj: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except NetlinkError as e:
            raise classify(action, f"{obj} in {self.where}", e.code) from e

    def _dump(self, what: str, fn: Callable[[], Any]) -> list[Any]:
        for attempt in range(DUMP_ATTEMPTS):
            try:
                return list(fn())
            except NetlinkDumpInterrupted:
                if attempt == DUMP_ATTEMPTS - 1:
                    raise
            except NetlinkError as e:
                raise classify("dump", f"{what} in {self.where}", e.code) from e
        return []  # pragma: no cover - the loop returns or raises

    def index(self, name: str) -> int:
        """The interface index of `name`; raises NetlinkMissing."""
        known = self._indexes.get(name)
        if known is not None:
            return known
        # RTM_GETLINK by IFLA_IFNAME: one link, where pyroute2's link_lookup dumps them all.
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        found = self._get("look up", f"link '{name}'", msg, RTM_GETLINK)
        if not found:
            raise NetlinkMissing("find", f"link '{name}' in {self.where}", 19)
        index = self._indexes[name] = int(found[0]["index"])
        return index

    def _change(self, action: str, obj: str, msg: nlmsg, msg_type: int) -> None:
        if action == "add":
            self._call(action, obj, lambda: self._reader.create(msg, msg_type))
        else:
            self._call(action, obj, lambda: self._reader.delete(msg, msg_type))


__all__ = ["DUMP_ATTEMPTS", "Session"]
