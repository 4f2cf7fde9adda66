"""Which pools each NIC of a pod may draw from (reference/spiderpool.md §2.2-2.4).

Sources, strictly in this order, the first that applies wins (no fall-through): the pod's
`ipam.spidernet.io/subnets` or `ipam.spidernet.io/subnet` (its application's SpiderSubnet auto
pools, autopools.py; Kubernetes mode only), its
`ipam.spidernet.io/ippools` (several NICs), its `ipam.spidernet.io/ippool` (this NIC), the
namespace's default-pool annotations, the IPAM config's `default_ipv4_ippool` /
`default_ipv6_ippool`, and finally every pool marked `default: true`. Names in the first
four accept shell wildcards. Candidates are then filtered by affinity and sorted by how
specific their affinity is. Unlike Spiderpool (which sorts with an unstable sort over a map),
pools of equal rank keep the order the user listed them in.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spidernet.control.model.resources import IPPool

from .autopools import APP_KINDS, SubnetWant, affinity_labels, auto_pool_for, subnet_wants
from .errors import AllocationError, Reason
from .request import (
    ANNO_IPPOOL,
    ANNO_IPPOOLS,
    ANNO_NS_DEFAULT_V4,
    ANNO_NS_DEFAULT_V6,
    ANNO_SUBNETS,
    IpamRequest,
    Master,
    PodFacts,
)

# The placeholder names given to unnamed entries of `ipam.spidernet.io/ippools` after the
# first; a later ADD for another interface claims the lowest one (Spiderpool §2.8).
UNNAMED_PREFIX = "#"


@dataclass(frozen=True)
class NicCandidates:
    """The pools one NIC tries, per family, in order; empty means "no address of that family"."""

    interface: str
    v4: tuple[str, ...]
    v6: tuple[str, ...]
    clean_gateway: bool
    source: str
    # For an auto pool: "SpiderSubnet S of Deployment ns/app"; its pool may be full only
    # because the controller has not grown it yet (the error is then `waiting`).
    auto_pool_of: str = ""


def _invalid(what: str, why: str) -> AllocationError:
    return AllocationError(Reason.INVALID, f"invalid {what}: {why}")


def _names(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _invalid(what, "expected a list of pool names")
    if len(set(value)) != len(value):
        raise _invalid(what, "a pool is listed twice")
    return tuple(value)


def _json(text: str, what: str) -> object:
    try:
        return json.loads(text)
    except ValueError as e:
        raise _invalid(what, f"not JSON ({e})") from e


def _bool(value: object, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(what, "expected true or false")
    return value


def _from_ippools(text: str, ifname: str, clean_default: bool) -> list[NicCandidates]:
    items = _json(text, f"annotation {ANNO_IPPOOLS}")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise _invalid(f"annotation {ANNO_IPPOOLS}", "expected a non-empty list of objects")
    named = [bool(i.get("interface")) for i in items]
    if any(named) and not all(named):
        raise _invalid(f"annotation {ANNO_IPPOOLS}", "name every interface or none")
    out: list[NicCandidates] = []
    for index, item in enumerate(items):
        what = f"annotation {ANNO_IPPOOLS}[{index}]"
        unknown = set(item) - {"interface", "ipv4", "ipv6", "cleangateway"}
        if unknown:
            raise _invalid(what, f"unknown field {sorted(unknown)[0]!r}")
        if all(named):
            nic = item["interface"]
            if not isinstance(nic, str):
                raise _invalid(f"{what}.interface", "expected a string")
        else:
            nic = ifname if index == 0 else f"{UNNAMED_PREFIX}{index}"
        clean = item.get("cleangateway")
        out.append(
            NicCandidates(
                interface=nic,
                v4=_names(item.get("ipv4"), f"{what}.ipv4"),
                v6=_names(item.get("ipv6"), f"{what}.ipv6"),
                clean_gateway=clean_default if clean is None else _bool(clean, f"{what}"),
                source=ANNO_IPPOOLS,
            )
        )
    nics = [c.interface for c in out]
    if len(set(nics)) != len(nics):
        raise _invalid(f"annotation {ANNO_IPPOOLS}", "an interface is listed twice")
    if ifname not in nics:
        raise _invalid(f"annotation {ANNO_IPPOOLS}", f"no entry for interface {ifname!r}")
    return out


def _from_subnets(
    request: IpamRequest, key: str, wants: Sequence[SubnetWant], pools: Sequence[IPPool]
) -> list[NicCandidates]:
    """The application's auto pools, one per NIC and family (Spiderpool §2.2 source 1)."""
    pod = request.pod
    what = f"annotation {key}"
    if not request.auto_pools:
        raise _invalid(
            what,
            "SpiderSubnet auto-created pools need Kubernetes mode: `spidernet serve --kube` "
            f"on the nodes and `spidernet controller` in the cluster; name pools with "
            f"{ANNO_IPPOOL} instead",
        )
    app = pod.app
    if app is None:
        raise _invalid(
            what,
            f"pod {pod.ref} has no application (Deployment, ReplicaSet, StatefulSet or "
            f"DaemonSet) owning it; a bare pod cannot use an auto pool, name pools with "
            f"{ANNO_IPPOOL} instead",
        )
    if app.kind not in APP_KINDS:
        raise _invalid(
            what,
            f"pod {pod.ref} belongs to {app.describe}; auto pools serve the pods of a "
            f"{', '.join(APP_KINDS)}",
        )
    if key == ANNO_SUBNETS and request.ifname not in [w.interface for w in wants]:
        raise _invalid(what, f"no entry for interface {request.ifname!r}")
    out = []
    for want in wants:
        names: dict[int, tuple[str, ...]] = {4: (), 6: ()}
        for version in (4, 6):
            subnet = want.subnet(version)
            if not subnet:
                continue
            pool = auto_pool_for(pools, app, want.interface, version, subnet)
            if pool is None:
                raise AllocationError(
                    Reason.NO_POOL,
                    f"no auto pool yet for {app.describe} ({want.interface} IPv{version}) from "
                    f"SpiderSubnet {subnet!r}: `spidernet controller` makes it",
                    waiting=True,
                )
            names[version] = (pool.name,)
        # `subnet` names eth0's pool; it serves the NIC the call is for.
        nic = request.ifname if key != ANNO_SUBNETS else want.interface
        subnets = "/".join(s for s in (want.v4, want.v6) if s)
        out.append(
            NicCandidates(
                nic,
                names[4],
                names[6],
                request.clean_gateway,
                key,
                auto_pool_of=f"SpiderSubnet {subnets!r} of {app.describe}",
            )
        )
    return out


def sources(request: IpamRequest, pools: Sequence[IPPool]) -> list[NicCandidates]:
    """The NICs to allocate for and their candidate pool names, before wildcard expansion
    and filtering. The first entry is not necessarily `request.ifname`."""
    pod = request.pod
    anno = pod.annotations
    clean = request.clean_gateway
    subnets = subnet_wants(anno)
    if subnets is not None:
        return _from_subnets(request, subnets[0], subnets[1], pools)
    if ANNO_IPPOOLS in anno:
        return _from_ippools(anno[ANNO_IPPOOLS], request.ifname, clean)
    if ANNO_IPPOOL in anno:
        obj = _json(anno[ANNO_IPPOOL], f"annotation {ANNO_IPPOOL}")
        if not isinstance(obj, dict):
            raise _invalid(f"annotation {ANNO_IPPOOL}", "expected an object")
        what = f"annotation {ANNO_IPPOOL}"
        unknown = set(obj) - {"ipv4", "ipv6", "cleangateway"}
        if unknown:
            raise _invalid(what, f"unknown field {sorted(unknown)[0]!r}")
        c = obj.get("cleangateway")
        return [
            NicCandidates(
                request.ifname,
                _names(obj.get("ipv4"), f"{what}.ipv4"),
                _names(obj.get("ipv6"), f"{what}.ipv6"),
                clean if c is None else _bool(c, f"{what}.cleangateway"),
                ANNO_IPPOOL,
            )
        ]
    ns = pod.namespace_annotations
    if ANNO_NS_DEFAULT_V4 in ns or ANNO_NS_DEFAULT_V6 in ns:
        v4 = _names(_json(ns.get(ANNO_NS_DEFAULT_V4, "[]"), ANNO_NS_DEFAULT_V4), ANNO_NS_DEFAULT_V4)
        v6 = _names(_json(ns.get(ANNO_NS_DEFAULT_V6, "[]"), ANNO_NS_DEFAULT_V6), ANNO_NS_DEFAULT_V6)
        return [NicCandidates(request.ifname, v4, v6, clean, f"namespace {pod.namespace}")]
    if request.defaults_v4 or request.defaults_v6:
        return [
            NicCandidates(
                request.ifname, request.defaults_v4, request.defaults_v6, clean, "IPAM config"
            )
        ]
    v4 = tuple(p.name for p in pools if p.default and p.ip_version == 4)
    v6 = tuple(p.name for p in pools if p.default and p.ip_version == 6)
    if not v4 and not v6:
        raise AllocationError(
            Reason.NO_POOL,
            "no IPPool available: no pool is named by the pod, its namespace or the IPAM "
            "config, and no pool has spec.default: true",
        )
    return [NicCandidates(request.ifname, v4, v6, clean, "cluster default pools")]


def expand(names: Sequence[str], pools: Mapping[str, IPPool], version: int) -> tuple[str, ...]:
    """Pool names with shell wildcards (`*`, `?`, `[..]`) expanded against pools of `version`;
    a plain name is kept even if no such pool exists (filtering reports it)."""
    out: list[str] = []
    for name in names:
        if any(ch in name for ch in "*?["):
            matched = sorted(
                p.name
                for p in pools.values()
                if p.ip_version == version and fnmatch.fnmatchcase(p.name, name)
            )
            out.extend(m for m in matched if m not in out)
        elif name not in out:
            out.append(name)
    return tuple(out)


def why_not(
    pool: IPPool | None,
    name: str,
    version: int,
    pod: PodFacts,
    network: str,
    *,
    master: Master | None = None,
) -> str:
    """Why `pool` cannot serve this pod, or '' when it can (§2.3); with `master`, a pool
    whose subnet holds none of the master's addresses cannot (matchMasterSubnet)."""
    if pool is None:
        return f"{name}: no such pool"
    if pool.disable:
        return f"{name}: disabled"
    if pool.ip_version != version:
        return f"{name}: is IPv{pool.ip_version}, wanted IPv{version}"
    if pool.node_name:
        if pod.node not in pool.node_name:
            return f"{name}: node {pod.node!r} not in spec.nodeName"
    elif pool.node_affinity is not None and not pool.node_affinity.matches(pod.node_labels):
        return f"{name}: node {pod.node!r} does not match spec.nodeAffinity"
    if pool.namespace_name:
        if pod.namespace not in pool.namespace_name:
            return f"{name}: namespace {pod.namespace!r} not in spec.namespaceName"
    elif pool.namespace_affinity is not None and not pool.namespace_affinity.matches(
        pod.namespace_labels
    ):
        return f"{name}: namespace {pod.namespace!r} does not match spec.namespaceAffinity"
    labels = pod.labels if pod.app is None else {**pod.labels, **affinity_labels(pod.app)}
    if pool.pod_affinity is not None and not pool.pod_affinity.matches(labels):
        return f"{name}: pod labels do not match spec.podAffinity"
    if pool.multus_name and network not in pool.multus_name:
        return f"{name}: network {network!r} not in spec.multusName"
    if master is not None and not any(a.ip in pool.subnet for a in master.addresses):
        held = ", ".join(str(a) for a in master.addresses if a.version == version) or "none"
        return f"{name}: subnet {pool.subnet} holds no address of master {master.name} ({held})"
    return ""


def rank(pool: IPPool) -> tuple[bool, ...]:
    """Sort key: pools with more specific affinity come first (§2.4)."""
    return (
        pool.pod_affinity is None,
        not pool.node_name,
        pool.node_affinity is None,
        not pool.namespace_name,
        pool.namespace_affinity is None,
        not pool.multus_name,
    )


def usable_pools(
    names: Sequence[str],
    pools: Mapping[str, IPPool],
    version: int,
    *,
    pod: PodFacts,
    network: str,
    interface: str,
    master: Master | None = None,
) -> tuple[IPPool, ...]:
    """The candidate pools that may serve this pod, most specific first; raises NO_POOL with
    every pool's reason when none is left."""
    expanded = expand(names, pools, version)
    kept: list[IPPool] = []
    reasons: list[str] = []
    for name in expanded:
        pool = pools.get(name)
        reason = why_not(pool, name, version, pod, network, master=master)
        if reason:
            reasons.append(reason)
        elif pool is not None:
            kept.append(pool)
    if not kept:
        listed = ", ".join(names)
        detail = "; ".join(reasons) if reasons else "no pool matches the names"
        raise AllocationError(
            Reason.NO_POOL,
            f"no IPPool available for {interface} IPv{version}: candidates [{listed}] "
            f"filtered out: {detail}",
        )
    # sorted() is stable: equal ranks keep the listed order.
    return tuple(sorted(kept, key=rank))
