"""SpiderSubnet auto pools, the controller's decisions (pure; reference/spiderpool.md §1.2).

An application (Deployment, a ReplicaSet no Deployment owns, StatefulSet, DaemonSet) whose pod
template carries `ipam.spidernet.io/subnet` or `ipam.spidernet.io/subnets` gets one
SpiderIPPool per (application, NIC, IP family), carved out of the named SpiderSubnet:

- size: `ipam.spidernet.io/ippool-ip-number` on the template, `"+N"` replicas + N (flexible),
  `"N"` exactly N (fixed), absent replicas + 1 (Spiderpool's default redundancy). Replicas are
  `spec.replicas` (default 1), a DaemonSet's `status.desiredNumberScheduled`.
- addresses: a new or growing pool takes the lowest free addresses of the subnet, free meaning
  usable in the subnet, not in any SpiderReservedIP, and not in any other pool of that family.
  A shrinking pool gives back free addresses (lowest first, as Spiderpool), never one in use;
  when the in-use addresses do not fit the new size, it is left as it is, with a reason. An
  address claimed from a pool (an IPClaim) is in use; one claimed just after a shrink dropped
  it (the agent had read the pool before) is put back into its pool by the next pass; the
  addresses a shrink gives back go to no other pool in the same pass, so that claim cannot meet
  another pool's.
- name `auto<4|6>-<app>-<nic>-<first 5 characters of the uid's last segment>`, labels naming
  the subnet, the application (gv, kind, namespace, name, uid), the NIC, the IP version and
  whether to reclaim it; podAffinity on the application's identity (autopools.py), so only
  that application's pods are served.
- reclaim: a pool whose application is gone (no application with its uid, or one that no
  longer asks for it) is deleted once none of its addresses is in use, unless its
  `ipam.spidernet.io/ippool-reclaim` label is "false" (then it stays for good).
- each subnet's status: `controlledIPPools` (pool -> {ips, application}), `allocatedIPCount`
  (addresses handed to its pools) and `totalIPCount`.

The effects (reading the store, writing at the versions read) are in autopool_sync.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spidernet.control.allocator.autopools import (
    ANNO_IPPOOL_IP_NUMBER,
    LABEL_APP_GV,
    LABEL_APP_KIND,
    LABEL_APP_NAME,
    LABEL_APP_NAMESPACE,
    LABEL_APP_UID,
    LABEL_INTERFACE,
    LABEL_IP_VERSION,
    LABEL_OWNER_SUBNET,
    LABEL_POOL_CIDR,
    LABEL_RECLAIM,
    affinity_labels,
    group_version,
    ip_version_label,
    is_auto_pool,
)
from spidernet.control.controller.autopool_wants import (
    DEFAULT_REDUNDANT,
    Application,
    Want,
    wants_of,
)
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.resources import API_VERSION, IPPool, Subnet


@dataclass(frozen=True)
class PoolState:
    """A SpiderIPPool as read: its record, document, version and the addresses in use."""

    record: IPPool
    body: Mapping[str, Any]
    version: str
    in_use: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SubnetState:
    """A SpiderSubnet as read."""

    record: Subnet
    body: Mapping[str, Any]
    version: str


@dataclass(frozen=True)
class Create:
    """Make the auto pool `name` (a SpiderIPPool document); `why` is logged."""

    name: str
    body: dict[str, Any]
    why: str


@dataclass(frozen=True)
class Resize:
    """Replace pool `name`'s addresses, at the `version` read; `why` is logged."""

    name: str
    version: str
    body: dict[str, Any]
    why: str


@dataclass(frozen=True)
class Remove:
    """Delete pool `name` (its application is gone), at the `version` read."""

    name: str
    version: str
    why: str


@dataclass(frozen=True)
class SubnetStatus:
    """Write SpiderSubnet `name`'s status (its auto pools and counts), at the `version` read."""

    name: str
    version: str
    body: dict[str, Any]
    why: str


@dataclass
class Plan:
    """What one pass writes, in order, and what it could not do (logged)."""

    creates: list[Create] = field(default_factory=list)
    resizes: list[Resize] = field(default_factory=list)
    removes: list[Remove] = field(default_factory=list)
    statuses: list[SubnetStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _addresses(ips: Iterable[int]) -> IntervalSet:
    return IntervalSet((ip, ip) for ip in ips)


def lowest(free: IntervalSet, n: int) -> IntervalSet:
    """The `n` lowest members of `free` (all of them when it has fewer)."""
    if n <= 0 or not free:
        return IntervalSet()
    last = free.nth(min(n, free.count) - 1)
    return free.intersection(IntervalSet([(free.first, last)]))


def _cidr_label(subnet: Subnet) -> str:
    # Label values cannot hold '/' or ':' (Spiderpool writes 10-0-0-0-24 as well).
    return re.sub(r"[^0-9A-Za-z]", "-", str(subnet.subnet)).strip("-")


def pool_document(want: Want, subnet: Subnet, ips: IntervalSet) -> dict[str, Any]:
    """The SpiderIPPool document of an auto pool holding `ips`."""
    app = want.app.ref
    group, version = group_version(app.api_version)
    labels = {
        LABEL_OWNER_SUBNET: subnet.name,
        LABEL_APP_GV: f"{group}_{version}" if group else version,
        LABEL_APP_KIND: app.kind,
        LABEL_APP_NAMESPACE: app.namespace,
        LABEL_APP_NAME: app.name,
        LABEL_APP_UID: app.uid,
        LABEL_INTERFACE: want.interface,
        LABEL_IP_VERSION: ip_version_label(want.version),
        LABEL_RECLAIM: "true" if want.reclaim else "false",
        LABEL_POOL_CIDR: _cidr_label(subnet),
    }
    number = want.app.annotations.get(ANNO_IPPOOL_IP_NUMBER, f"+{DEFAULT_REDUNDANT}")
    spec: dict[str, Any] = {
        "ipVersion": want.version,
        "subnet": str(subnet.subnet),
        "ips": ips.to_strings(want.version),
        "podAffinity": {"matchLabels": affinity_labels(app)},
    }
    if subnet.gateway is not None:
        spec["gateway"] = str(subnet.gateway)
    if subnet.routes:
        spec["routes"] = [{"dst": str(r.dst), "gw": str(r.gw)} for r in subnet.routes]
    return {
        "apiVersion": API_VERSION,
        "kind": IPPool.KIND,
        "metadata": {
            "name": want.name,
            "labels": labels,
            "annotations": {ANNO_IPPOOL_IP_NUMBER: number},
        },
        "spec": spec,
    }


def _resized(state: PoolState, ips: IntervalSet, want: Want) -> dict[str, Any]:
    body = dict(state.body)
    spec = dict(body.get("spec") or {})
    spec["ips"] = ips.to_strings(want.version)
    meta = dict(body.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    annotations[ANNO_IPPOOL_IP_NUMBER] = want.app.annotations.get(
        ANNO_IPPOOL_IP_NUMBER, f"+{DEFAULT_REDUNDANT}"
    )
    meta["annotations"] = annotations
    return dict(body, metadata=meta, spec=spec)


def _application(labels: Mapping[str, str]) -> str:
    """Spiderpool's `controlledIPPools` application: `<group>_<version>_<Kind>_<ns>_<name>`."""
    keys = (LABEL_APP_GV, LABEL_APP_KIND, LABEL_APP_NAMESPACE, LABEL_APP_NAME)
    return "_".join(labels.get(k, "") for k in keys) if is_auto_pool(labels) else ""


def _app_key(labels: Mapping[str, str]) -> tuple[str, str, str]:
    return (
        labels.get(LABEL_APP_UID, ""),
        labels.get(LABEL_INTERFACE, ""),
        labels.get(LABEL_IP_VERSION, ""),
    )


@dataclass
class _Pass:
    """The state of one planning pass: what every family's pools hold, each pool's final
    addresses, subnet and application, and the plan so far."""

    subnets: Mapping[str, SubnetState]
    pools: Mapping[str, PoolState]
    reserved: Mapping[int, IntervalSet]
    out: Plan = field(default_factory=Plan)
    held: dict[int, IntervalSet] = field(default_factory=dict)
    final: dict[str, IntervalSet] = field(default_factory=dict)
    subnet_of: dict[str, str] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    matched: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.held = {4: IntervalSet(), 6: IntervalSet()}
        for name, p in self.pools.items():
            v = p.record.ip_version
            self.held[v] = self.held[v].union(p.record.ips).union(_addresses(p.in_use))
            self.final[name] = p.record.ips
            self.subnet_of[name] = p.record.labels.get(LABEL_OWNER_SUBNET, "")
            self.owners[name] = _application(p.record.labels)

    def free(self, sub: Subnet) -> IntervalSet:
        """The subnet's addresses no reservation and no pool holds."""
        v = sub.ip_version
        return sub.usable.difference(self.reserved.get(v, IntervalSet())).difference(self.held[v])

    def serve(self, want: Want, current: PoolState | None) -> None:
        app = want.app.ref
        if current is not None:
            self.matched.add(current.record.name)
        sub = self.subnets.get(want.subnet)
        where = f"SpiderSubnet {want.subnet!r}"
        if sub is None:
            self.problem(f"{app.describe}: {where} ({want.interface} IPv{want.version}) is missing")
        elif sub.record.ip_version != want.version:
            self.problem(
                f"{app.describe}: {where} is IPv{sub.record.ip_version}, named for "
                f"IPv{want.version}"
            )
        elif current is None:
            self.create(want, sub.record)
        elif current.record.labels.get(LABEL_OWNER_SUBNET) != want.subnet:
            self.problem(
                f"{app.describe}: pool {current.record.name} is from SpiderSubnet "
                f"{current.record.labels.get(LABEL_OWNER_SUBNET)!r}, the application now "
                f"names {want.subnet!r}; delete the pool to move it"
            )
        else:
            self.resize(want, sub.record, current)

    def problem(self, text: str) -> None:
        self.out.problems.append(text)

    def create(self, want: Want, sub: Subnet) -> None:
        free = self.free(sub)
        if free.count < want.size:
            self.problem(
                f"{want.app.ref.describe}: SpiderSubnet {sub.name!r} has {free.count} free "
                f"addresses, pool {want.name} needs {want.size}"
            )
            return
        ips = lowest(free, want.size)
        doc = pool_document(want, sub, ips)
        self.held[want.version] = self.held[want.version].union(ips)
        self.final[want.name] = ips
        self.subnet_of[want.name] = sub.name
        self.owners[want.name] = _application(doc["metadata"]["labels"])
        why = f"{want.size} addresses for {want.app.ref.describe}"
        self.out.creates.append(Create(want.name, doc, why))

    def resize(self, want: Want, sub: Subnet, current: PoolState) -> None:
        pool, describe = current.record, want.app.ref.describe
        claimed = _addresses(current.in_use)
        # An address claimed while a shrink was on its way (the agent chose it from the pool
        # it had read) goes back into the pool: a pool always holds its claimed addresses.
        base = pool.ips.union(claimed)
        have, ips = base.count, base
        if have < want.size:
            free = self.free(sub)
            if free.count < want.size - have:
                self.problem(
                    f"{describe}: SpiderSubnet {sub.name!r} has {free.count} free addresses, "
                    f"pool {pool.name} needs {want.size - have} more"
                )
            else:
                ips = base.union(lowest(free, want.size - have))
        elif have > want.size:
            spare = base.difference(claimed)
            if have - spare.count > want.size:
                self.problem(
                    f"{describe}: pool {pool.name} cannot shrink to {want.size}: "
                    f"{have - spare.count} of its addresses are in use"
                )
            else:
                ips = base.difference(lowest(spare, have - want.size))
        if ips == pool.ips:
            return
        # Addresses a shrink gives back stay held for the rest of this pass: an agent may have
        # chosen one from the pool as it read it, and its claim shows up by the next pass
        # (which puts it back) before another pool's growth could take it.
        v = want.version
        self.held[v] = self.held[v].union(ips)
        self.final[pool.name] = ips
        why = f"{pool.ips.count} -> {ips.count} addresses for {describe}"
        body = _resized(current, ips, want)
        self.out.resizes.append(Resize(pool.name, current.version, body, why))

    def reclaim(self, name: str, state: PoolState) -> None:
        """An auto pool no application asks for: deleted once unused, unless kept."""
        labels = state.record.labels
        kind = labels.get(LABEL_APP_KIND, "")
        who = f"{kind} {labels.get(LABEL_APP_NAMESPACE, '')}/{labels.get(LABEL_APP_NAME, '')}"
        if labels.get(LABEL_RECLAIM) == "false":
            return
        if state.in_use:
            self.problem(
                f"pool {name} of {who} (gone): kept while {len(state.in_use)} of its "
                "addresses are in use"
            )
            return
        self.out.removes.append(Remove(name, state.version, f"its application {who} is gone"))
        del self.final[name]


def plan(
    apps: Sequence[Application],
    subnets: Mapping[str, SubnetState],
    pools: Mapping[str, PoolState],
    reserved: Mapping[int, IntervalSet],
) -> Plan:
    """Every write that brings the auto pools and the subnets' status to what the
    applications ask for."""
    state = _Pass(subnets, pools, reserved)
    wants, state.out.problems = wants_of(apps)
    autos = {_app_key(p.record.labels): p for p in pools.values() if is_auto_pool(p.record.labels)}
    for want in wants:
        current = autos.get((want.app.ref.uid, want.interface, ip_version_label(want.version)))
        state.serve(want, current)
    for name, pool in sorted(pools.items()):
        if is_auto_pool(pool.record.labels) and name not in state.matched:
            state.reclaim(name, pool)
    state.out.statuses = _subnet_statuses(subnets, state.final, state.subnet_of, state.owners)
    return state.out


def _subnet_statuses(
    subnets: Mapping[str, SubnetState],
    final: Mapping[str, IntervalSet],
    subnet_of: Mapping[str, str],
    owners: Mapping[str, str],
) -> list[SubnetStatus]:
    out = []
    for name, sub in sorted(subnets.items()):
        version = sub.record.ip_version
        controlled = {
            pool: {"ips": ips.to_strings(version), "application": owners.get(pool, "")}
            for pool, ips in sorted(final.items())
            if subnet_of.get(pool) == name
        }
        status = dict(sub.body.get("status") or {})
        wanted = {k: v for k, v in status.items() if k != "controlledIPPools"}
        if controlled:
            wanted["controlledIPPools"] = json.dumps(controlled, sort_keys=True)
        wanted["allocatedIPCount"] = sum(final[p].count for p in controlled)
        wanted["totalIPCount"] = sub.record.total
        if wanted != status:
            why = f"{len(controlled)} pools, {wanted['allocatedIPCount']} addresses"
            out.append(SubnetStatus(name, sub.version, dict(sub.body, status=wanted), why))
    return out
