"""What reaching into a namespace offers, whoever does it (a broker process, or a new
process per reach). `netns` is a path (`/run/netns/x`, `/proc/PID/ns/net`); None is this
process's own namespace. A namespace that does not exist raises NetnsGone."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Protocol

from spidernet.node.netlink.client import Netlink
from spidernet.node.netlink.protocol import Rtnetlink


class Reach(Protocol):
    """What the plugins' apply, gather and CHECK steps use of a namespace: netlink (as the
    `Rtnetlink` protocol), sockets, sysctls and nftables. `Namespaces` is one; the test
    bed's in-memory kernel (testbed/fakekernel.py) is another."""

    def netlink(self, netns: str | None) -> Rtnetlink:
        """A netlink client whose socket lives in `netns` (the caller closes it)."""
        ...

    def open_socket(
        self, netns: str | None, family: int, kind: int, proto: int = 0
    ) -> socket.socket:
        """A socket created in `netns`, for use from here."""
        ...

    def discard(self, sock: socket.socket) -> None:
        """Close a socket that `open_socket` gave out. Closing a packet socket waits for an RCU
        grace period (packet_release calls synchronize_net: 10-20 ms), which need not
        hold up the caller."""
        ...

    def read_sysctls(self, netns: str | None, keys: Sequence[str]) -> dict[str, str]:
        """The current values of `keys`; a key the kernel lacks is left out."""
        ...

    def set_sysctl(self, netns: str | None, key: str, value: str, *, missing_ok: bool) -> None:
        """Set `key`; `missing_ok`: a key that does not exist is skipped, not an error."""
        ...

    def nft(self, netns: str | None, script: str, action: str) -> None:
        """Run an nftables script (one transaction); raises nft.NftError "failed to <action>
        in netns '<netns>': <nft's reason>"."""
        ...


class Namespaces(Reach, Protocol):
    """Sockets, sysctls and nftables in a network namespace, with the whole netlink adapter
    (tc, namespace ids: what diag and detect use beyond `Reach`)."""

    def netlink(self, netns: str | None) -> Netlink:
        """A netlink client whose socket lives in `netns` (the caller closes it)."""
        ...
