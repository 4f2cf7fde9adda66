"""The spidernet-coordinator config: Spiderpool's coordinator keys (reference §4.1), merged with
the cluster's SpiderCoordinator settings. The mode and policy-table rules of §4.2 live in
`mode` and are re-exported here.

Pure: it runs both in the plugin process and in the node service, so it imports only the
standard library and `spidernet.cni`.

Precedence, per field: the plugin config (the NAD) > the SpiderCoordinator settings (as the
control service's `GET /v1/coordinator/config` returns them, in the CR's camelCase) > the
built-in default. The pod annotation `ipam.spidernet.io/default-route-nic` beats both for
`podDefaultRouteNic`. As in Spiderpool (`cmd/coordinator/cmd/cni_types.go`, Go `omitempty`),
a null, an empty string or an empty list in the NAD means "not set" and lets the
SpiderCoordinator's value through; numbers and booleans count as soon as they are present.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spidernet.cni.config import SOCKET_KEY, socket_path
from spidernet.cni.errors import CNIError, Code

from . import values
from .mode import MAX_NIC_INDEX, REPLY_TABLE, UNDERLAY_VETH, Mode, policy_table, resolve_mode
from .values import IPAddress, IPNetwork, PolicyRoute

__all__ = [
    "ANNO_DEFAULT_ROUTE_NIC",
    "MAX_NIC_INDEX",
    "REPLY_TABLE",
    "UNDERLAY_VETH",
    "CoordinatorConf",
    "Mode",
    "PolicyRoute",
    "parse_coordinator",
    "policy_table",
    "resolve_mode",
]

MODES = ("auto", "underlay", "overlay", "disabled")
ANNO_DEFAULT_ROUTE_NIC = "ipam.spidernet.io/default-route-nic"
# Keys every plugin config may carry (CNI spec "Network Configuration", libcni's injected
# keys and the GC attachment lists); they are not the coordinator's.
CNI_KEYS = frozenset(
    {
        "cniVersion",
        "cniVersions",
        "name",
        "type",
        "prevResult",
        "runtimeConfig",
        "args",
        "capabilities",
        "ipam",
        "dns",
        "cni.dev/valid-attachments",
        "cni.dev/attachments",
    }
)
# Read by Spiderpool ≤ v0.9 or still emitted by its SpiderMultusConfig, unused since v1.0
# (detection moved to the IPAM plugin): accepted so old NADs keep working, then dropped.
LEGACY_KEYS = (
    "hostRPFilter",
    "multusNicPrefix",
    "detectIPConflict",
    "detectGateway",
    "detectOptions",
)

FROM_CONFIG = "config"
FROM_CLUSTER = "SpiderCoordinator"
FROM_DEFAULT = "default"
FROM_ANNOTATION = "pod annotation"


@dataclass(frozen=True)
class CoordinatorConf:
    """The checked coordinator config with defaults applied.

    `pod_mac_prefix` "" and `veth_link_address` None mean unset; `pod_rp_filter` -1 means
    leave rp_filter as it is; `tx_queue_len` 0 means leave the queue length alone.
    `sources` says per field where the value came from ("config", "SpiderCoordinator",
    "default" or "pod annotation"), for diagnostics; it takes no part in equality.
    """

    mode: str = "auto"
    pod_default_cni_nic: str = "eth0"
    overlay_pod_cidr: tuple[IPNetwork, ...] = ()
    service_cidr: tuple[IPNetwork, ...] = ()
    hijack_cidr: tuple[IPNetwork, ...] = ()
    policy_routes: tuple[PolicyRoute, ...] = ()
    pod_mac_prefix: str = ""
    tune_pod_routes: bool = True
    pod_default_route_nic: str = ""
    host_rule_table: int = 500
    pod_rp_filter: int = 0
    tx_queue_len: int = 0
    veth_link_address: IPAddress | None = None
    veth_mtu: int = 1500
    ignored_keys: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)


def _mode(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {values.json_type(value)}")
    # The CRD spells it "disabled", Spiderpool's plugin "disable" (reference §4.6): take both.
    mode = "disabled" if value == "disable" else value
    if mode not in MODES:
        raise ValueError(f"'{value}' is not one of {', '.join(MODES)}")
    return mode


def _host_rule_table(value: object) -> int:
    table = values.integer(value, 1, values.MAX_U32)
    if table in values.RESERVED_TABLES:
        raise ValueError(f"{table} is a table the kernel owns (253 default, 254 main, 255 local)")
    return table


def _rp_filter(value: object) -> int:
    # net.ipv4.conf.*.rp_filter: 0 off, 1 strict, 2 loose (kernel ip-sysctl.rst).
    rp = values.integer(value, -(2**31), 2**31 - 1)
    if rp < 0:
        return -1
    if rp not in (0, 1, 2):
        raise ValueError(f"{rp} is not a rp_filter value: use 0, 1, 2, or -1 to leave it as is")
    return rp


def _veth_mtu(value: object) -> int:
    return values.integer(value, 1, values.MAX_MTU)


def _tx_queue_len(value: object) -> int:
    return values.integer(value, 0, values.MAX_U32)


@dataclass(frozen=True)
class _Field:
    attr: str
    nad_key: str
    cr_key: str | None  # None: the SpiderCoordinator has no such setting
    check: Callable[[Any], object]


_FIELDS = (
    _Field("mode", "mode", "mode", _mode),
    _Field("pod_default_cni_nic", "podDefaultCniNic", None, values.ifname),
    _Field("overlay_pod_cidr", "overlayPodCIDR", "overlayPodCIDR", values.networks),
    _Field("service_cidr", "serviceCIDR", "serviceCIDR", values.networks),
    _Field("hijack_cidr", "hijackCIDR", "hijackCIDR", values.networks),
    _Field("policy_routes", "policyRoutes", "policyRoutes", values.policy_routes),
    _Field("pod_mac_prefix", "podMACPrefix", "podMACPrefix", values.mac_prefix),
    _Field("tune_pod_routes", "tunePodRoutes", "tunePodRoutes", values.boolean),
    # The NAD spells it `podDefaultRouteNic`, the SpiderCoordinator `podDefaultRouteNIC`.
    _Field("pod_default_route_nic", "podDefaultRouteNic", "podDefaultRouteNIC", values.ifname),
    _Field("host_rule_table", "hostRuleTable", "hostRuleTable", _host_rule_table),
    _Field("pod_rp_filter", "podRPFilter", "podRPFilter", _rp_filter),
    _Field("tx_queue_len", "txQueueLen", "txQueueLen", _tx_queue_len),
    _Field("veth_link_address", "vethLinkAddress", "vethLinkAddress", values.address),
    _Field("veth_mtu", "vethMTU", "vethMTU", _veth_mtu),
)
# `ipam_unix_socket_path` names the node service's socket for the forwarder
# (cni/forward.py); the coordinator itself only checks it.
NAD_KEYS = frozenset({f.nad_key for f in _FIELDS} | {"logOptions", SOCKET_KEY})
_KNOWN_KEYS = ", ".join(sorted(NAD_KEYS))


@dataclass(frozen=True)
class ClusterSettings:
    """What the cluster says about one pod's coordinator, checked once where it is read (the
    agent, or the in-process plugin reading the agent's answer): each SpiderCoordinator
    setting as its value (`settled`, by CoordinatorConf attribute) or why it is refused
    (`refused`: attribute -> (key, reason); raised only if the NAD does not set that field),
    and the pod's default-route-NIC annotation ("" if none)."""

    settled: Mapping[str, object] = field(default_factory=dict)
    refused: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    default_route_nic: str = ""


def cluster_settings(spec: Mapping[str, Any], default_route_nic: str = "") -> ClusterSettings:
    """A SpiderCoordinator `spec` (as the API server holds it) checked by the very checks a
    NAD's keys get; settings the spec leaves out (or this version does not know) are absent,
    so a newer agent does not break an older plugin."""
    settled: dict[str, object] = {}
    refused: dict[str, tuple[str, str]] = {}
    for f in _FIELDS:
        if f.cr_key is None or not _is_set(spec.get(f.cr_key)):
            continue
        try:
            settled[f.attr] = f.check(spec[f.cr_key])
        except ValueError as e:
            refused[f.attr] = (f.cr_key, str(e))
    return ClusterSettings(
        types.MappingProxyType(settled), types.MappingProxyType(refused), default_route_nic
    )


def spec_problems(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, reason) for each setting of a SpiderCoordinator `spec` that the coordinator
    would refuse: the controller's webhook and the plugin never disagree on a value."""
    return list(cluster_settings(spec).refused.values())


def _bad(key: str, reason: str, origin: str = FROM_CONFIG) -> CNIError:
    where = {
        FROM_CONFIG: "",
        FROM_CLUSTER: " (set in the SpiderCoordinator)",
        FROM_ANNOTATION: f" (set by the pod annotation {ANNO_DEFAULT_ROUTE_NIC})",
    }[origin]
    return CNIError(
        Code.INVALID_NETWORK_CONFIG, f"invalid coordinator config key '{key}': {reason}{where}"
    )


def _is_set(value: object) -> bool:
    return value is not None and not (isinstance(value, str | list) and not value)


def _check(f: _Field, key: str, value: object, origin: str) -> object:
    try:
        return f.check(value)
    except ValueError as e:
        raise _bad(key, str(e), origin) from None


def parse_coordinator(
    conf: Mapping[str, Any],
    cluster: ClusterSettings | Mapping[str, Any] | None = None,
    default_route_nic_annotation: str = "",
) -> CoordinatorConf:
    """Check the plugin config `conf` and merge it with the SpiderCoordinator settings.

    `conf` is the whole plugin config (CNI-standard keys are skipped); `cluster` the
    cluster's settings (a SpiderCoordinator spec document is checked into them first), or
    None when there are none; `default_route_nic_annotation` the pod's
    `ipam.spidernet.io/default-route-nic` when `cluster` does not carry it ("" if absent). A
    refused SpiderCoordinator setting only fails the call when the NAD does not set that
    field.

    Raises CNIError(INVALID_NETWORK_CONFIG) naming the key, and the SpiderCoordinator or the
    annotation when the bad value came from there.
    """
    ignored: list[str] = []
    for key in conf:
        if key in CNI_KEYS or key in NAD_KEYS:
            continue
        if key in LEGACY_KEYS:
            ignored.append(key)
            continue
        raise _bad(key, f"unknown key (known: {_KNOWN_KEYS})")
    try:
        socket_path(conf.get(SOCKET_KEY))
    except ValueError as e:
        raise _bad(SOCKET_KEY, str(e)) from None
    if "logOptions" in conf and conf["logOptions"] is not None:
        try:
            values.log_options(conf["logOptions"])
        except ValueError as e:
            raise _bad("logOptions", str(e)) from None

    if cluster is None:
        cluster = ClusterSettings()
    elif not isinstance(cluster, ClusterSettings):
        cluster = cluster_settings(cluster)
    default = CoordinatorConf()
    settled: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in _FIELDS:
        if _is_set(conf.get(f.nad_key)):
            settled[f.attr] = _check(f, f.nad_key, conf[f.nad_key], FROM_CONFIG)
            sources[f.attr] = FROM_CONFIG
        elif f.attr in cluster.settled:
            settled[f.attr] = cluster.settled[f.attr]
            sources[f.attr] = FROM_CLUSTER
        elif f.attr in cluster.refused:
            key, reason = cluster.refused[f.attr]
            raise _bad(key, reason, FROM_CLUSTER)
        else:
            settled[f.attr] = getattr(default, f.attr)
            sources[f.attr] = FROM_DEFAULT
    default_route_nic_annotation = default_route_nic_annotation or cluster.default_route_nic
    if default_route_nic_annotation:
        try:
            settled["pod_default_route_nic"] = values.ifname(default_route_nic_annotation)
        except ValueError as e:
            raise _bad("podDefaultRouteNic", str(e), FROM_ANNOTATION) from None
        sources["pod_default_route_nic"] = FROM_ANNOTATION
    return CoordinatorConf(
        **settled, ignored_keys=tuple(ignored), sources=types.MappingProxyType(sources)
    )
