"""The pyroute2-backed netlink client, opened in one network namespace.

Its sockets are opened *in* the namespace and then used from here: by pyroute2's forking
opener (`netns.open_socket_in`, which never creates a missing namespace), or by the node
service's namespace broker (node/access/), so no thread of ours changes namespace. Reads
go through `raw.Reader` (pyroute2's messages without its event loop); changes through
pyroute2's IPRoute, opened on the first change.

`Netlink` is composed of its parts over one `Session` (session.py): the reads (reads.py),
the changes (writes.py) and traffic control (tc.py).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from spidernet.node.netns import open_socket_in

from .reads import Reads
from .tc import TrafficControl
from .writes import Writes


class Netlink(Reads, Writes, TrafficControl):
    """rtnetlink requests in one namespace; use as a context manager to close the socket."""

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def netlink_on(open_socket: Callable[[], socket.socket], where: str) -> Netlink:
    """A client over NETLINK_ROUTE sockets that `open_socket()` makes elsewhere (in another
    namespace, by the namespace broker); the client owns and closes them. `where` names
    the namespace."""
    return Netlink(open_socket, where)


def _own_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0)


def open_netlink(netns: str | None = None) -> Netlink:
    """A client in the namespace at path `netns` (None: this process's namespace). Its
    sockets are opened *in* that namespace (`netns.open_socket_in`: a forked child enters
    it), so no thread of ours changes namespace.

    Raises NetnsGone when the namespace does not exist; it is never created.
    """
    if netns is None:
        return Netlink(_own_socket, "this namespace")
    path = netns
    return Netlink(
        lambda: open_socket_in(path, socket.AF_NETLINK, socket.SOCK_DGRAM, 0), f"netns '{netns}'"
    )


@contextmanager
def netlink(netns: str | None = None) -> Iterator[Netlink]:
    """`with netlink(path) as nl:` opens and closes a client."""
    client = open_netlink(netns)
    try:
        yield client
    finally:
        client.close()


__all__ = ["Netlink", "netlink", "netlink_on", "open_netlink"]
