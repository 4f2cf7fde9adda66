"""Plans applied to and unwound from real namespaces: a "host" and a "pod", both on one
segment through eth0, as an underlay pod is before the coordinator runs."""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
import time
from dataclasses import dataclass

import pytest

from spidernet.node import netns, nft
from spidernet.node.access.base import Namespaces
from spidernet.node.detect.announce import announce
from spidernet.node.lab.topology import Topology, iface
from spidernet.node.netlink.client import netlink
from spidernet.node.netlink.records import (
    AF_INET,
    AF_INET6,
    NUD_PERMANENT,
    RT_SCOPE_LINK,
    RTPROT_STATIC,
    IPAddress,
    Route,
    Rule,
)
from spidernet.node.plan.apply import Announcer, ApplyFailed, Target, apply, unwind
from spidernet.node.plan.ops import (
    SCOPE_LINK,
    AddAddress,
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    Announce,
    Op,
    ReplyViaLink,
    SetLinkUp,
    SetMac,
    SetSysctl,
    SetTxQueueLen,
    undo_all,
)
from spidernet.testbed.harness import namespace_footprint
from spidernet.testbed.leaks import Footprint, diff

ip = ipaddress.ip_address
net = ipaddress.ip_network

HOST4, HOST6 = ip("192.0.2.2"), ip("2001:db8:1::2")
POD4, POD6 = ip("192.0.2.10"), ip("2001:db8:1::10")
GATEWAY4, GATEWAY6 = ip("192.0.2.1"), ip("2001:db8:1::1")
# Addresses of the host's own (on lo) that the pod has no route back to: a reply to them
# finds its way only through the reply-via-veth0 marking.
REMOTE4, REMOTE6 = ip("198.51.100.1"), ip("2001:db8:ff::1")
HOST_VETH = "vethsnt0"
HOST_MAC, POD_MAC, NEW_MAC = "02:00:00:5e:00:01", "02:00:00:5e:00:02", "0a:0b:c0:00:02:0a"
SERVICES = net("10.96.0.0/12")
LINK_ADDRESS = iface("169.254.100.1/32")
# Sysctls the plan changes that exist before it runs: (side, key) -> value at the start.
WATCHED = {("pod", "net.ipv4.conf.all.rp_filter"): "1", ("host", "net.ipv4.ip_forward"): "0"}


@dataclass(frozen=True)
class Lab:
    host: str
    pod: str
    eth0_mac: str
    eth0_txqlen: int
    access: Namespaces

    @property
    def target(self) -> Target:
        return Target(netns.path_of(self.pod), netns.path_of(self.host))

    def ns(self, side: str) -> str:
        return self.pod if side == "pod" else self.host


@dataclass(frozen=True)
class Snapshot:
    """Everything a plan touches, to compare before and after."""

    footprints: dict[str, Footprint]
    sysctls: dict[tuple[str, str], str]
    eth0: tuple[str, int]
    nft: str | None

    @classmethod
    def take(cls, lab: Lab) -> Snapshot:
        with netlink(netns.path_of(lab.pod)) as nl:
            eth0 = (nl.link("eth0").mac, nl.txqlen("eth0"))
        return cls(
            footprints={ns: namespace_footprint(ns) for ns in (lab.host, lab.pod)},
            sysctls={(s, k): netns.get_sysctl(lab.ns(s), k) for s, k in WATCHED},
            eth0=eth0,
            nft=nft.list_reply_via_link(netns.path_of(lab.pod)),
        )

    def changes(self, after: Snapshot) -> list[str]:
        out = [
            f"{ns}: {d}"
            for ns, fp in self.footprints.items()
            for d in diff(fp, after.footprints[ns])
        ]
        out += [
            f"sysctl {k}: {v} -> {after.sysctls[k]}"
            for k, v in self.sysctls.items()
            if after.sysctls[k] != v
        ]
        out += (
            [f"pod eth0 (mac, txqlen): {self.eth0} -> {after.eth0}"]
            if after.eth0 != self.eth0
            else []
        )
        out += [f"nftables: {after.nft}"] if after.nft != self.nft else []
        return out


@pytest.fixture
def lab(topo: Topology, access: Namespaces) -> Lab:
    seg = topo.segment()
    host = topo.namespace("host")
    topo.attach(seg, host, "eth0", (iface(f"{HOST4}/24"), iface(f"{HOST6}/64")))
    pod = topo.namespace("pod")
    topo.attach(seg, pod, "eth0", (iface(f"{POD4}/24"), iface(f"{POD6}/64")))
    with netlink(netns.path_of(host)) as nl:
        nl.add_address("lo", iface(f"{REMOTE4}/32"))
        nl.add_address("lo", iface(f"{REMOTE6}/128"))
    with netlink(netns.path_of(pod)) as nl:
        # The underlay default routes: without the marking, replies would leave through
        # eth0 towards a gateway that does not exist here.
        eth0 = nl.link("eth0")
        nl.add_route(Route(net("0.0.0.0/0"), gateway=GATEWAY4, oif=eth0.index))
        nl.add_route(Route(net("::/0"), gateway=GATEWAY6, oif=eth0.index))
        txqlen = nl.txqlen("eth0")
    for (side, key), value in WATCHED.items():
        netns.set_sysctl(host if side == "host" else pod, key, value)
    return Lab(host, pod, eth0.mac, txqlen, access)


def plan_for(lab: Lab) -> tuple[Op, ...]:
    """What the coordinator plans for an underlay pod's first NIC, give or take."""
    default4, default6 = net("0.0.0.0/0"), net("::/0")
    return (
        AddVeth(HOST_VETH, "veth0", 1400, HOST_MAC, POD_MAC),
        SetLinkUp("host", HOST_VETH),
        SetLinkUp("pod", "veth0"),
        AddAddress("pod", "veth0", LINK_ADDRESS),
        SetMac("pod", "eth0", NEW_MAC, lab.eth0_mac),
        SetTxQueueLen("pod", "eth0", 2000, lab.eth0_txqlen),
        SetSysctl("pod", "net.ipv4.conf.all.rp_filter", "0", "1"),
        SetSysctl("host", "net.ipv4.ip_forward", "1", "0"),
        SetSysctl("host", f"net.ipv4.conf.{HOST_VETH}.rp_filter", "2", "0"),
        AddNeighbour("pod", "veth0", HOST4, HOST_MAC),
        AddNeighbour("pod", "veth0", HOST6, HOST_MAC),
        AddRoute("pod", net(f"{HOST4}/32"), "veth0", scope=SCOPE_LINK, src=POD4),
        AddRoute("pod", net(f"{HOST6}/128"), "veth0"),
        AddRoute("pod", SERVICES, "veth0", gateway=HOST4, src=POD4),
        AddNeighbour("host", HOST_VETH, POD4, POD_MAC),
        AddNeighbour("host", HOST_VETH, POD6, POD_MAC),
        AddRoute("host", net(f"{POD4}/32"), HOST_VETH, table=500, scope=SCOPE_LINK),
        AddRoute("host", net(f"{POD6}/128"), HOST_VETH, table=500),
        AddRule("host", AF_INET, 1000, 500, shared=True),
        AddRule("host", AF_INET6, 1000, 500, shared=True),
        ReplyViaLink("pod", "veth0", 1, 100),
        AddRule("pod", AF_INET, 990, 100, fwmark=1),
        AddRule("pod", AF_INET6, 990, 100, fwmark=1),
        AddRoute("pod", default4, "veth0", gateway=HOST4, table=100),
        AddRoute("pod", default6, "veth0", gateway=HOST6, table=100),
        Announce("pod", "eth0", POD4),
    )


def ping(ns: str, src: IPAddress, dst: IPAddress) -> bool:
    """One echo from `src` answered within 2 s (ping retries every 0.2 s: a bounded wait)."""
    argv = ["ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", "2", "-I", str(src), str(dst)]
    return (
        subprocess.run(netns.exec_argv(ns, argv), capture_output=True, check=False).returncode == 0
    )


def recorder() -> tuple[list[tuple[int, str, IPAddress]], Announcer]:
    """An announcer that records (socket family, link, address) and sends nothing."""
    calls: list[tuple[int, str, IPAddress]] = []
    return calls, lambda sock, dev, address: calls.append((sock.family, dev, address))


def test_a_plan_applies_and_unwinds_to_nothing(lab: Lab) -> None:
    before = Snapshot.take(lab)
    plan = plan_for(lab)
    calls, hook = recorder()
    apply(plan, lab.target, access=lab.access, announce=hook)

    pod_path, host_path = netns.path_of(lab.pod), netns.path_of(lab.host)
    with netlink(host_path) as nl:
        veth = nl.link(HOST_VETH)
        assert (veth.kind, veth.mtu, veth.mac, veth.up) == ("veth", 1400, HOST_MAC, True)
        routes = {(r.dst, r.oif, r.scope, r.proto) for r in nl.routes() if r.table == 500}
        assert routes == {
            (net(f"{POD4}/32"), veth.index, RT_SCOPE_LINK, RTPROT_STATIC),
            (net(f"{POD6}/128"), veth.index, 0, RTPROT_STATIC),
        }
        assert {(r.family, r.src, r.table) for r in nl.rules() if r.priority == 1000} == {
            (AF_INET, None, 500),
            (AF_INET6, None, 500),
        }
        neighbours = {
            (n.dst, n.lladdr, n.state) for n in nl.neighbours() if n.ifindex == veth.index
        }
        assert {(POD4, POD_MAC, NUD_PERMANENT), (POD6, POD_MAC, NUD_PERMANENT)} <= neighbours
    with netlink(pod_path) as nl:
        veth0 = nl.link("veth0")
        assert (veth0.kind, veth0.mtu, veth0.mac, veth0.up) == ("veth", 1400, POD_MAC, True)
        assert (nl.link("eth0").mac, nl.txqlen("eth0")) == (NEW_MAC, 2000)
        assert any(a.address == LINK_ADDRESS and a.index == veth0.index for a in nl.addresses())
        pod_routes = {
            (r.dst, r.table, r.gateway, r.oif, r.prefsrc, r.scope)
            for r in nl.routes()
            if r.oif == veth0.index and r.proto == RTPROT_STATIC
        }
        assert pod_routes == {
            (net(f"{HOST4}/32"), 254, None, veth0.index, POD4, RT_SCOPE_LINK),
            (net(f"{HOST6}/128"), 254, None, veth0.index, None, 0),
            (SERVICES, 254, HOST4, veth0.index, POD4, 0),
            (net("0.0.0.0/0"), 100, HOST4, veth0.index, None, 0),
            (net("::/0"), 100, HOST6, veth0.index, None, 0),
        }
        rules = [r for r in nl.rules() if r.priority == 990]
        assert rules == [
            Rule(AF_INET, 990, 100, fwmark=1, fwmask=0xFFFFFFFF),
            Rule(AF_INET6, 990, 100, fwmark=1, fwmask=0xFFFFFFFF),
        ]
        neighbours = {
            (n.dst, n.lladdr, n.state) for n in nl.neighbours() if n.ifindex == veth0.index
        }
        assert {(HOST4, HOST_MAC, NUD_PERMANENT), (HOST6, HOST_MAC, NUD_PERMANENT)} <= neighbours
    assert netns.get_sysctl(lab.pod, "net.ipv4.conf.all.rp_filter") == "0"
    assert netns.get_sysctl(lab.host, "net.ipv4.ip_forward") == "1"
    assert netns.get_sysctl(lab.host, f"net.ipv4.conf.{HOST_VETH}.rp_filter") == "2"
    table = nft.list_reply_via_link(pod_path)
    assert table is not None
    assert 'iifname "veth0" ct state new ct mark set 0x00000001' in table
    assert "type route hook output priority mangle" in table
    assert "ct mark 0x00000001 meta mark set ct mark" in table
    assert nft.list_reply_via_link(host_path) is None
    assert calls == [(socket.AF_PACKET, "eth0", POD4)]
    # The host reaches the pod through the veth from addresses the pod has no route to,
    # and the replies come back the same way: the marking and table 100 at work.
    assert ping(lab.host, REMOTE4, POD4)
    assert ping(lab.host, REMOTE6, POD6)

    assert unwind(undo_all(plan), lab.target, access=lab.access) == []
    assert before.changes(Snapshot.take(lab)) == []
    assert unwind(undo_all(plan), lab.target, access=lab.access) == []  # DEL twice
    assert before.changes(Snapshot.take(lab)) == []


def test_unwind_without_apply_is_clean(lab: Lab) -> None:
    before = Snapshot.take(lab)
    assert unwind(undo_all(plan_for(lab)), lab.target, access=lab.access) == []
    assert before.changes(Snapshot.take(lab)) == []


def test_unwind_after_the_pod_namespace_is_gone(lab: Lab) -> None:
    plan = plan_for(lab)
    host_before = namespace_footprint(lab.host)
    apply(plan, lab.target, access=lab.access)
    netns.remove(lab.pod)
    assert unwind(undo_all(plan), lab.target, access=lab.access) == []
    assert diff(host_before, namespace_footprint(lab.host)) == []
    assert netns.get_sysctl(lab.host, "net.ipv4.ip_forward") == "0"


def test_a_failing_step_names_itself_and_leaves_nothing(lab: Lab) -> None:
    before = Snapshot.take(lab)
    plan = plan_for(lab)
    duplicate = AddRoute("pod", SERVICES, "veth0", gateway=HOST4, src=POD4)
    with pytest.raises(ApplyFailed) as failed:
        apply((*plan, duplicate), lab.target, access=lab.access)
    assert str(failed.value) == (
        "failed to add route 10.96.0.0/12 via 192.0.2.2 dev veth0 src 192.0.2.10 in the pod:"
        " File exists"
    )
    assert (failed.value.op, failed.value.undo_errors) == (duplicate, [])
    assert before.changes(Snapshot.take(lab)) == []


def test_a_failure_after_any_step_leaves_nothing(lab: Lab) -> None:
    before = Snapshot.take(lab)
    plan = plan_for(lab)
    bad = AddRoute("pod", net("203.0.113.0/24"), "nosuch0", table=100)
    for k in range(len(plan)):
        with pytest.raises(ApplyFailed) as failed:
            apply((*plan[:k], bad), lab.target, access=lab.access)
        assert str(failed.value) == (
            "failed to add route 203.0.113.0/24 dev nosuch0 table 100 in the pod: No such device"
        )
        assert before.changes(Snapshot.take(lab)) == [], f"after {k} steps"


def test_a_failing_announcement_undoes_the_plan(lab: Lab) -> None:
    before = Snapshot.take(lab)

    def refuse(sock: socket.socket, dev: str, address: IPAddress) -> None:
        raise OSError(f"no carrier on {dev}")

    with pytest.raises(ApplyFailed) as failed:
        apply(plan_for(lab), lab.target, announce=refuse, access=lab.access)
    assert (
        str(failed.value)
        == "failed to announce 192.0.2.10 on 'eth0' in the pod: no carrier on eth0"
    )
    assert before.changes(Snapshot.take(lab)) == []


def test_a_shared_rule_stays_while_its_table_is_in_use(lab: Lab) -> None:
    # Another pod's route and the shared rule are there before this pod's plan runs.
    host_path = netns.path_of(lab.host)
    with netlink(host_path) as nl:
        other = Route(net("192.0.2.99/32"), table=500, oif=nl.index("eth0"), scope=RT_SCOPE_LINK)
        nl.add_route(other)
        nl.add_rule(Rule(AF_INET, 1000, 500))
    before = Snapshot.take(lab)
    plan = plan_for(lab)
    apply(plan, lab.target, access=lab.access)  # the IPv4 rule exists already: it is shared
    assert unwind(undo_all(plan), lab.target, access=lab.access) == []
    assert before.changes(Snapshot.take(lab)) == []  # IPv4 rule kept, IPv6 rule removed

    apply(plan, lab.target, access=lab.access)
    with netlink(host_path) as nl:
        nl.delete_route(other)  # the other pod left
    assert unwind(undo_all(plan), lab.target, access=lab.access) == []
    with netlink(host_path) as nl:
        assert [r for r in nl.rules() if r.table == 500] == []


def test_an_unshared_rule_found_in_place_is_an_error(lab: Lab) -> None:
    with netlink(netns.path_of(lab.pod)) as nl:
        nl.add_rule(Rule(AF_INET, 990, 100, fwmark=1))
    before = Snapshot.take(lab)
    with pytest.raises(ApplyFailed) as failed:
        apply(plan_for(lab), lab.target, access=lab.access)
    assert str(failed.value) == (
        "failed to add IPv4 rule 990 from all fwmark 0x1 lookup 100 in the pod: File exists"
    )
    assert before.changes(Snapshot.take(lab)) == []


def test_reply_marking_twice_is_refused_and_dropping_it_twice_is_fine(lab: Lab) -> None:
    path, access = netns.path_of(lab.pod), lab.access
    script = nft.reply_via_link_script("veth0", 1)
    access.nft(path, script, nft.ADD_ACTION)
    assert nft.list_reply_via_link(netns.path_of(lab.host)) is None  # only in the pod
    with pytest.raises(nft.NftError) as refused:
        access.nft(path, script, nft.ADD_ACTION)
    assert str(refused.value) == (
        f"failed to add nftables table 'inet {nft.TABLE}' in netns '{path}': "
        "Could not process rule: File exists"
    )
    table = nft.list_reply_via_link(path)
    assert table is not None
    assert 'iifname "veth0" ct state new ct mark set 0x00000001' in table
    access.nft(path, nft.DROP_SCRIPT, nft.DROP_ACTION)
    access.nft(path, nft.DROP_SCRIPT, nft.DROP_ACTION)
    assert nft.list_reply_via_link(path) is None
    with pytest.raises(ValueError, match="not an interface name"):
        nft.reply_via_link_script('veth0" accept', 1)
    with pytest.raises(netns.NetnsGone):
        access.nft("/run/netns/spidernet-no-such-netns", nft.DROP_SCRIPT, nft.DROP_ACTION)


# -- announcements --------------------------------------------------------------------

ETH_P_ALL, ETH_P_ARP, ETH_P_IPV6 = 0x0003, 0x0806, 0x86DD


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _icmpv6_checksum(src: bytes, dst: bytes, message: bytes) -> int:
    """The one's complement of the one's complement sum over the pseudo-header (RFC 8200
    §8.1) and `message` (RFC 4443 §2.3): 0 when `message` carries a correct checksum."""
    data = src + dst + struct.pack("!I3xB", len(message), 58) + message
    data += b"\0" * (len(data) % 2)
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total ^ 0xFFFF


def _capture(sock: socket.socket, want: int, deadline_s: float) -> list[bytes]:
    """Frames of interest (ARP, ICMPv6 Neighbor Advertisements) until `want` or the deadline."""
    frames: list[bytes] = []
    end = time.monotonic() + deadline_s
    while len(frames) < want and (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            break
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == ETH_P_ARP or (
            ethertype == ETH_P_IPV6 and frame[20] == 58 and frame[54] == 136
        ):
            frames.append(frame)
    return frames


def test_announce_sends_a_gratuitous_arp_and_an_unsolicited_na(
    topo: Topology, access: Namespaces
) -> None:
    seg = topo.segment()
    pod, peer = topo.namespace("pod"), topo.namespace("peer")
    topo.attach(seg, pod, "eth0", (iface(f"{POD4}/24"), iface(f"{POD6}/64")))
    topo.attach(seg, peer, "eth0", (iface(f"{HOST4}/24"),))
    pod_path = netns.path_of(pod)
    with netlink(pod_path) as nl:
        mac = nl.link("eth0").mac
    listener = netns.open_socket_in(
        netns.path_of(peer), socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)
    )
    with listener:
        listener.bind(("eth0", 0))  # 0: keep the socket's protocol, ETH_P_ALL
        for address in (POD4, POD6):
            with access.open_socket(pod_path, socket.AF_PACKET, socket.SOCK_RAW) as sock:
                announce(sock, "eth0", address)
        frames = _capture(listener, 2, deadline_s=2.0)
    arp = next(f for f in frames if f[12:14] == b"\x08\x06")
    na = next(f for f in frames if f[12:14] == b"\x86\xdd")

    # Ethernet: broadcast, from the pod's MAC; ARP (RFC 826): Ethernet/IPv4, request,
    # sender = target = the address (RFC 5227 §3), target hardware address zero.
    assert (_mac(arp[0:6]), _mac(arp[6:12])) == ("ff:ff:ff:ff:ff:ff", mac)
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", arp[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    sha, spa, tha, tpa = arp[22:28], arp[28:32], arp[32:38], arp[38:42]
    assert (_mac(sha), ip(spa), tha, ip(tpa)) == (mac, POD4, bytes(6), POD4)

    # Ethernet to 33:33:00:00:00:01; IPv6 from the address to ff02::1, hop limit 255;
    # ICMPv6 type 136 code 0, flags R=0 S=0 O=1, target = the address, option 2 (target
    # link-layer address, length 1 = 8 bytes) = the pod's MAC; checksum valid.
    assert (_mac(na[0:6]), _mac(na[6:12])) == ("33:33:00:00:00:01", mac)
    ipv6, icmp = na[14:54], na[54:]
    payload_len, next_header, hop_limit = struct.unpack("!HBB", ipv6[4:8])
    assert (next_header, hop_limit, payload_len) == (58, 255, len(icmp))
    assert (ip(ipv6[8:24]), ip(ipv6[24:40])) == (POD6, ip("ff02::1"))
    assert (icmp[0], icmp[1], icmp[4] & 0xE0) == (136, 0, 0x20)
    assert ip(icmp[8:24]) == POD6
    assert (icmp[24], icmp[25], _mac(icmp[26:32])) == (2, 1, mac)
    assert _icmpv6_checksum(ipv6[8:24], ipv6[24:40], icmp) == 0


def test_announce_on_a_missing_link_or_namespace_fails(topo: Topology, access: Namespaces) -> None:
    from spidernet.node.detect.announce import AnnounceError

    pod = topo.namespace("pod")
    with (
        access.open_socket(netns.path_of(pod), socket.AF_PACKET, socket.SOCK_RAW) as sock,
        pytest.raises(AnnounceError) as failed,
    ):
        announce(sock, "eth9", POD4)
    assert str(failed.value) == "failed to announce 192.0.2.10 on 'eth9': No such device"
    with pytest.raises(netns.NetnsGone):
        access.open_socket("/run/netns/spidernet-no-such-netns", socket.AF_PACKET, socket.SOCK_RAW)
