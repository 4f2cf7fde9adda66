"""An in-memory kernel for unit tests: network namespaces with links, addresses, routes,
rules, neighbours, sysctls and the nftables reply marking, reached through the same
`Rtnetlink` and `Reach` protocols as the real thing (node/netlink/protocol.py,
node/access/base.py).

It answers like the kernel where our code depends on the answer: EEXIST for what is there
already, ENODEV for a missing link, EADDRNOTAVAIL for a missing address, ESRCH for a missing
route, ENOENT for a missing rule or neighbour, ENETDOWN for a route through a link that is
down, and so on, as the adapter's own exceptions (NetlinkExists, NetlinkMissing, NetlinkFailure
with the errno). testbed/netlink_contract.py holds the behaviour to the real adapter's: the
same suite runs against both (unit lane and netns lane).

What it models of the kernel's own doing: `lo` in every new namespace, the default policy
rules, the main-table prefix route of an address on an up link, and what goes with a link
going down (its IPv4 routes, neighbours, IPv6 addresses) or away (its peer, VLANs,
addresses, routes, neighbours). Not modelled: the local table, IPv6 link-local addresses
and multicast routes, carrier, multipath, traffic control.

`FakeKernel.fail_call(n)` makes the n-th mutating call from then on (netlink change, sysctl
write, nftables script) fail once with EIO, for the apply/unwind tests.

The parts: the namespaces' state (fakestate.py) and the netlink client, composed of its reads
(fakereads.py), its link changes (fakelinks.py) and its routing changes (fakerouting.py).
"""

from __future__ import annotations

import errno
import itertools
import socket
from collections.abc import Sequence

from spidernet.node import nft
from spidernet.node.netlink.errors import NetlinkFailure
from spidernet.node.netlink.records import State
from spidernet.node.netns import NetnsGone

from .fakelinks import FakeLinks
from .fakerouting import FakeRouting
from .fakestate import FakeLink, Namespace, drop_link


class FakeKernel:
    """Network namespaces by path, and the failure injection their clients share."""

    def __init__(self) -> None:
        self.namespaces: dict[str, Namespace] = {}
        self._macs = itertools.count(1)
        self._fail_in: int | None = None
        self.mutations: list[str] = []  # every mutating call, in order ("add veth 'x'")

    def namespace(self, path: str, sysctls: dict[str, str] | None = None) -> Namespace:
        """Create the namespace at `path` (with `lo` and the default rules)."""
        if path in self.namespaces:
            raise ValueError(f"namespace '{path}' exists")
        ns = self.namespaces[path] = Namespace(path, sysctls=dict(sysctls or {}))
        return ns

    def remove(self, path: str) -> None:
        """The namespace goes away with its links (a veth's peer elsewhere with them)."""
        ns = self.namespaces.pop(path)
        for link in list(ns.links.values()):
            if link.peer is not None:
                other, index = link.peer
                if other is not ns and index in other.links:
                    drop_link(other, index)

    def get(self, path: str | None) -> Namespace:
        """The namespace at `path` (None: the first one made, "this process's"); NetnsGone."""
        if path is None:
            return next(iter(self.namespaces.values()))
        try:
            return self.namespaces[path]
        except KeyError:
            raise NetnsGone(f"network namespace '{path}' does not exist") from None

    def netlink(self, path: str | None) -> FakeNetlink:
        """A client in the namespace at `path`; NetnsGone when there is none."""
        return FakeNetlink(self, self.get(path))

    def access(self) -> FakeAccess:
        """A `Reach` over this kernel."""
        return FakeAccess(self)

    def new_mac(self) -> str:
        n = next(self._macs)
        return f"02:fa:ce:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"

    def fail_call(self, n: int) -> None:
        """Make the `n`-th (0-based) mutating call from now fail, once, with EIO."""
        self._fail_in = n

    def mutate(self, what: str) -> None:
        """Count one mutating call; raise the injected failure when it is its turn."""
        self.mutations.append(what)
        if self._fail_in is not None:
            if self._fail_in == 0:
                self._fail_in = None
                raise NetlinkFailure("inject a failure into", what, errno.EIO)
            self._fail_in -= 1

    def snapshot(self) -> dict[str, tuple[State, dict[str, str], frozenset[str]]]:
        """Every namespace's netlink state, sysctls and nftables tables (for comparisons)."""
        return {
            path: (FakeNetlink(self, ns).state(), dict(ns.sysctls), frozenset(ns.nft_tables))
            for path, ns in self.namespaces.items()
        }


class FakeNetlink(FakeLinks, FakeRouting):
    """`Rtnetlink` on one namespace of a FakeKernel."""


class FakeAccess:
    """`Reach` over a FakeKernel: netlink clients, sysctls and the nftables reply marking.
    Sockets (announcements) are not offered: apply them with `announce=None`."""

    def __init__(self, kernel: FakeKernel) -> None:
        self._kernel = kernel
        self.opened: list[FakeNetlink] = []

    def netlink(self, netns: str | None) -> FakeNetlink:
        client = self._kernel.netlink(netns)
        self.opened.append(client)
        return client

    def open_socket(
        self, netns: str | None, family: int, kind: int, proto: int = 0
    ) -> socket.socket:
        raise NotImplementedError("the fake kernel has no sockets: apply with announce=None")

    def discard(self, sock: socket.socket) -> None:
        sock.close()

    def read_sysctls(self, netns: str | None, keys: Sequence[str]) -> dict[str, str]:
        ns = self._kernel.get(netns)
        return {k: ns.sysctls[k] for k in keys if k in ns.sysctls}

    def set_sysctl(self, netns: str | None, key: str, value: str, *, missing_ok: bool) -> None:
        ns = self._kernel.get(netns)
        self._kernel.mutate(f"set sysctl {key} in '{ns.path}'")
        if key not in ns.sysctls:
            if missing_ok:
                return
            raise FileNotFoundError(f"no sysctl '{key}' in '{ns.path}'")
        ns.sysctls[key] = value

    def nft(self, netns: str | None, script: str, action: str) -> None:
        ns = self._kernel.get(netns)
        self._kernel.mutate(f"{action} in '{ns.path}'")
        if action == nft.ADD_ACTION:
            if nft.TABLE in ns.nft_tables:
                raise nft.NftError(f"failed to {action}: File exists")
            ns.nft_tables.add(nft.TABLE)
        elif action == nft.DROP_ACTION:
            ns.nft_tables.discard(nft.TABLE)  # the script deletes only what exists
        else:
            raise ValueError(f"the fake kernel does not know nftables action {action!r}")


__all__ = ["FakeAccess", "FakeKernel", "FakeLink", "FakeNetlink", "Namespace"]
