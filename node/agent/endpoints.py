"""SpiderEndpoint documents: the record of which addresses each pod holds (pure). The
readers and annotation keys live in control/model/endpoint_doc.py (diag and detect read
the same documents) and are re-exported here for the service's modules.

The document has Spiderpool's shape (reference/spiderpool.md §1.4): `status.current` with the
pod UID, node and one entry per interface (`ipv4`, `ipv6`, their pools and gateways, routes,
`cleanGateway`). What a CNI runtime needs beyond that lives in annotations: the sandbox's
container ID and network namespace (for `spidernet diag`), the CNI network of each interface
(for GC), and the interfaces an ADD has actually configured (entries of
`ipam.spidernet.io/ippools` are allocated ahead of their ADD).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from spidernet.control.allocator.allocate import Lease
from spidernet.control.allocator.request import PodFacts
from spidernet.control.model.endpoint_doc import (
    ANNO_ATTACHED,
    ANNO_CONFLICTS,
    ANNO_CONTAINER,
    ANNO_MIGRATION,
    ANNO_NETNS,
    ANNO_NETNS_ID,
    ANNO_NETWORKS,
    ANNO_POD,
    annotations_of,
    attached_of,
    conflicts_of,
    container_of,
    entries_of,
    interfaces_of,
    migration_of,
    netns_id_of,
    netns_of,
    networks_of,
    pod_of,
)
from spidernet.control.store.base import CLAIM, Key
from spidernet.node.ipam.plugin import Address

API_VERSION = "spiderpool.spidernet.io/v2beta1"
KIND = "SpiderEndpoint"


def key_of(namespace: str, name: str) -> Key:
    """The store key of a pod's endpoint."""
    return Key(KIND, namespace, name)


def claim_key(pool: str, address: str) -> Key:
    """The store key of the claim on `address` (no prefix length) in `pool`."""
    return Key(CLAIM, pool, address.split("/", maxsplit=1)[0])


def entries_from(leases: Sequence[Lease]) -> list[dict[str, Any]]:
    """One AllocationDetail per interface, in the order the leases name interfaces."""
    by_nic: dict[str, dict[str, Any]] = {}
    for lease in leases:
        entry = by_nic.setdefault(
            lease.interface,
            {"interface": lease.interface, "vlan": 0, "cleanGateway": lease.clean_gateway},
        )
        fam = f"ipv{lease.version}"
        entry[fam] = str(lease.address)
        entry[f"{fam}Pool"] = lease.pool
        if lease.gateway is not None:
            entry[f"{fam}Gateway"] = str(lease.gateway)
        routes = entry.setdefault("routes", [])
        routes.extend({"dst": str(r.dst), "gw": str(r.gw)} for r in lease.routes)
    return list(by_nic.values())


def build(
    pod: PodFacts,
    container_id: str,
    entries: Sequence[Mapping[str, Any]],
    networks: Mapping[str, str],
    attached: Iterable[str],
    *,
    netns: str = "",
    netns_id: str = "",
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete endpoint document, named after the pod's holder (the pod, its VM or its
    IPAMClaim), with the pod's name beside it when they differ (`previous`: the document it
    replaces, whose recorded conflicts and migration source it keeps, and its namespace
    identity when `netns` is the same path and no `netns_id` is given)."""
    annotations = {
        ANNO_CONTAINER: container_id,
        ANNO_NETWORKS: json.dumps(dict(networks), sort_keys=True),
        ANNO_ATTACHED: ",".join(sorted(set(attached))),
    }
    if netns:
        annotations[ANNO_NETNS] = netns
    if not netns_id and previous is not None and netns_of(previous) == netns:
        netns_id = netns_id_of(previous)
    if netns_id:
        annotations[ANNO_NETNS_ID] = netns_id
    if pod.holder != pod.name:
        annotations[ANNO_POD] = pod.name
    for anno in (ANNO_CONFLICTS, ANNO_MIGRATION):
        kept = annotations_of(previous or {}).get(anno)
        if kept:
            annotations[anno] = str(kept)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": pod.holder,
            "namespace": pod.namespace,
            "annotations": annotations,
        },
        "status": {
            "current": {"uid": pod.uid, "node": pod.node, "ips": [dict(e) for e in entries]},
            "ownerControllerType": pod.owner_kind or "Pod",
            "ownerControllerName": pod.owner_name or pod.name,
        },
    }


def addresses_of(entries: Sequence[Mapping[str, Any]]) -> list[Address]:
    """What the CNI plugin turns into a result: one Address per interface and family."""
    out: list[Address] = []
    for entry in entries:
        routes = tuple((str(r["dst"]), str(r["gw"])) for r in entry.get("routes", []))
        for fam in ("ipv4", "ipv6"):
            if entry.get(fam):
                version = fam[-1]
                mine = tuple(rt for rt in routes if (":" in rt[1]) == (version == "6"))
                out.append(
                    Address(
                        interface=str(entry["interface"]),
                        address=str(entry[fam]),
                        gateway=entry.get(f"{fam}Gateway"),
                        routes=mine,
                    )
                )
    return out


def claims_of(entries: Iterable[Mapping[str, Any]]) -> list[Key]:
    """The claim keys the entries hold."""
    keys: list[Key] = []
    for entry in entries:
        for fam in ("ipv4", "ipv6"):
            if entry.get(fam) and entry.get(f"{fam}Pool"):
                keys.append(claim_key(str(entry[f"{fam}Pool"]), str(entry[fam])))
    return keys


# With the readers and keys of control/model/endpoint_doc.py, re-exported.
__all__ = [
    "ANNO_ATTACHED",
    "ANNO_CONFLICTS",
    "ANNO_CONTAINER",
    "ANNO_MIGRATION",
    "ANNO_NETNS",
    "ANNO_NETNS_ID",
    "ANNO_NETWORKS",
    "ANNO_POD",
    "API_VERSION",
    "KIND",
    "addresses_of",
    "annotations_of",
    "attached_of",
    "build",
    "claim_key",
    "claims_of",
    "conflicts_of",
    "container_of",
    "entries_from",
    "entries_of",
    "interfaces_of",
    "key_of",
    "migration_of",
    "netns_id_of",
    "netns_of",
    "networks_of",
    "pod_of",
]
