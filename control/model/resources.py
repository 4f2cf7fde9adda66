"""The Spiderpool resources as frozen records (`spiderpool.spidernet.io/v2beta1`).

Field names follow Spiderpool's specs in snake case (`pkg/k8s/apis/.../v2beta1/*_types.go`).
Records hold decoded, typed values; `documents.parse` builds them from YAML/JSON with
Spiderpool's defaulting and validation, and `documents.to_document` writes them back.
Code that builds a record itself can check it with `rules.check`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from spidernet.control.model.iprange import EMPTY, IntervalSet
from spidernet.control.model.labels import LabelSelector, empty_map

API_VERSION = "spiderpool.spidernet.io/v2beta1"

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface: TypeAlias = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# SpiderCoordinator enums (`spidercoordinator_types.go`, `coordinator_informer.go`).
COORDINATOR_MODES = ("auto", "underlay", "overlay", "disabled")
POD_CIDR_TYPES = ("auto", "cluster", "calico", "cilium", "none")


@dataclass(frozen=True)
class Route:
    """A route handed to pods: `dst` via `gw`."""

    dst: IPNetwork
    gw: IPAddress


@dataclass(frozen=True)
class AddressSpace:
    """The address fields a SpiderIPPool and a SpiderSubnet share.

    Usable addresses are `ips` minus `exclude_ips` (Spiderpool's `AssembleTotalIPs`); an
    empty `ips` holds no addresses, as in Spiderpool.
    """

    name: str
    ip_version: int
    subnet: IPNetwork
    ips: IntervalSet = EMPTY
    exclude_ips: IntervalSet = EMPTY
    gateway: IPAddress | None = None
    routes: tuple[Route, ...] = ()

    @property
    def usable(self) -> IntervalSet:
        """The addresses that may be handed out: `ips` minus `exclude_ips`."""
        return self.ips.difference(self.exclude_ips)

    @property
    def total(self) -> int:
        """How many usable addresses (Spiderpool's `status.totalIPCount`)."""
        return self.usable.count


@dataclass(frozen=True)
class IPPool(AddressSpace):
    """A SpiderIPPool: the addresses pods may get, and which pods may get them."""

    KIND: ClassVar[str] = "SpiderIPPool"

    pod_affinity: LabelSelector | None = None
    namespace_affinity: LabelSelector | None = None
    namespace_name: tuple[str, ...] = ()
    node_affinity: LabelSelector | None = None
    node_name: tuple[str, ...] = ()
    multus_name: tuple[str, ...] = ()
    default: bool = False
    disable: bool = False
    labels: Mapping[str, str] = field(default_factory=empty_map)
    annotations: Mapping[str, str] = field(default_factory=empty_map)


@dataclass(frozen=True)
class Subnet(AddressSpace):
    """A SpiderSubnet: the address space that pools with the same CIDR are carved from."""

    KIND: ClassVar[str] = "SpiderSubnet"

    labels: Mapping[str, str] = field(default_factory=empty_map)
    annotations: Mapping[str, str] = field(default_factory=empty_map)


@dataclass(frozen=True)
class ReservedIP:
    """A SpiderReservedIP: addresses no pool hands out, cluster-wide, for one family."""

    KIND: ClassVar[str] = "SpiderReservedIP"

    name: str
    ip_version: int
    ips: IntervalSet
    labels: Mapping[str, str] = field(default_factory=empty_map)
    annotations: Mapping[str, str] = field(default_factory=empty_map)


@dataclass(frozen=True)
class Coordinator:
    """A SpiderCoordinator: cluster defaults for the coordinator plugin.

    Defaults are those of Spiderpool's mutating webhook (`coordinator_mutate.go`), except
    `pod_cidr_type`: Spiderpool refuses a coordinator without it; our embedded mode has no
    cluster to ask, so it defaults to "auto". `mode` "disable" (what the plugin compares
    against, reference §4.6) is read as "disabled". `pod_mac_prefix` "" and
    `veth_link_address` None mean "not set".
    """

    KIND: ClassVar[str] = "SpiderCoordinator"

    name: str
    mode: str = "auto"
    pod_cidr_type: str = "auto"
    hijack_cidr: tuple[IPNetwork, ...] = ()
    policy_routes: tuple[Route, ...] = ()
    pod_mac_prefix: str = ""
    tune_pod_routes: bool = True
    pod_default_route_nic: str = ""
    host_rule_table: int = 500
    pod_rp_filter: int = 0
    tx_queue_len: int = 0
    veth_link_address: IPAddress | None = None
    veth_mtu: int = 1500
    labels: Mapping[str, str] = field(default_factory=empty_map)
    annotations: Mapping[str, str] = field(default_factory=empty_map)


@dataclass(frozen=True)
class AllocationDetail:
    """One pod interface's addresses in a SpiderEndpoint (`IPAllocationDetail`).

    `ipv4`/`ipv6` are interface addresses (address and prefix length, written "ip/prefix").
    """

    interface: str
    ipv4: ipaddress.IPv4Interface | None = None
    ipv6: ipaddress.IPv6Interface | None = None
    ipv4_pool: str | None = None
    ipv6_pool: str | None = None
    vlan: int = 0
    ipv4_gateway: ipaddress.IPv4Address | None = None
    ipv6_gateway: ipaddress.IPv6Address | None = None
    clean_gateway: bool | None = None
    routes: tuple[Route, ...] = ()
    mac: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """A SpiderEndpoint: the addresses a pod (or KubeVirt VM) holds; namespaced, status only."""

    KIND: ClassVar[str] = "SpiderEndpoint"

    namespace: str
    name: str
    uid: str
    node: str
    ips: tuple[AllocationDetail, ...] = ()
    owner_controller_type: str = ""
    owner_controller_name: str = ""
    labels: Mapping[str, str] = field(default_factory=empty_map)
    annotations: Mapping[str, str] = field(default_factory=empty_map)


Resource: TypeAlias = IPPool | Subnet | ReservedIP | Coordinator | Endpoint

KINDS: tuple[str, ...] = (
    IPPool.KIND,
    Subnet.KIND,
    ReservedIP.KIND,
    Endpoint.KIND,
    Coordinator.KIND,
)
NAMESPACED_KINDS = frozenset({Endpoint.KIND})
