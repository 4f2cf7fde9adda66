"""Announce an address to a link's neighbours, so their caches point at its new owner.

One frame per address, sent raw from inside the pod's namespace:
- IPv4: an ARP Announcement (RFC 5227 §2.3 and §3), an ARP request, broadcast, whose sender
  and target protocol addresses are both the address, the target hardware address zero;
  receivers that have the address cached update it (RFC 826, "merge_flag").
- IPv6: an unsolicited Neighbor Advertisement (RFC 4861 §7.2.6) to all-nodes (ff02::1),
  Solicited flag clear, Override flag set, with the Target Link-Layer Address option; hop
  limit 255, which receivers require (§7.1.2).

The frames are built with scapy (the detect adapters are where scapy lives, DESIGN.md),
imported at the first frame built (about 30 MB of memory and 250 ms that a node service
whose pods never announce nor probe does not pay), and sent through an AF_PACKET socket the
caller created in the namespace (node/access/), so no thread of ours enters it (STYLE.md
§5).
"""

from __future__ import annotations

import ipaddress
import socket

from spidernet.node.errors import NodeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

BROADCAST = "ff:ff:ff:ff:ff:ff"
ALL_NODES = ipaddress.IPv6Address("ff02::1")
# RFC 2464 §7: an IPv6 multicast address maps to 33:33 and its last four bytes.
ALL_NODES_MAC = "33:33:00:00:00:01"
ARP_REQUEST = 1


class AnnounceError(NodeError):
    """Raised when the announcement could not be sent (link missing or down, ...)."""


def gratuitous_arp(mac: str, address: ipaddress.IPv4Address) -> bytes:
    """The Ethernet frame of an ARP Announcement of `address` by `mac`."""
    from scapy.layers.l2 import ARP, Ether

    frame = Ether(dst=BROADCAST, src=mac) / ARP(
        op=ARP_REQUEST,
        hwsrc=mac,
        psrc=str(address),
        hwdst="00:00:00:00:00:00",
        pdst=str(address),
    )
    return bytes(frame)


def unsolicited_na(mac: str, address: ipaddress.IPv6Address) -> bytes:
    """The Ethernet frame of an unsolicited Neighbor Advertisement of `address` by `mac`.

    Its source is the address itself, one of the interface's (RFC 4861 §7.2.4), as the
    kernel's own unsolicited advertisements do (ndisc_send_unsol_na).
    """
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    from scapy.layers.l2 import Ether

    frame = (
        Ether(dst=ALL_NODES_MAC, src=mac)
        / IPv6(src=str(address), dst=str(ALL_NODES), hlim=255)
        / ICMPv6ND_NA(tgt=str(address), R=0, S=0, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=mac)
    )
    return bytes(frame)


def announce(sock: socket.socket, dev: str, address: IPAddress) -> None:
    """Send one announcement of `address` on link `dev` from `dev`'s own MAC address,
    through `sock`, an AF_PACKET raw socket opened in `dev`'s namespace (the caller closes
    it). Raises AnnounceError."""
    try:
        sock.bind((dev, 0))
        # The bound address of a packet socket carries the link's hardware address
        # (packet(7), sockaddr_ll.sll_addr): no netlink lookup needed.
        mac = ":".join(f"{b:02x}" for b in sock.getsockname()[4])
        if isinstance(address, ipaddress.IPv4Address):
            frame = gratuitous_arp(mac, address)
        else:
            frame = unsolicited_na(mac, address)
        sock.send(frame)
    except OSError as e:
        raise AnnounceError(f"failed to announce {address} on '{dev}': {e.strerror or e}") from e
