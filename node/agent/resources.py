"""Resource create/get/list/delete for the service API and the CLI (`apply`, `get`,
`delete`), with Spiderpool's validation across resources.

Spiderpool kinds are parsed and checked by `control.model`; the workload records that
embedded mode uses for pod facts (v1 Pod, Namespace, Node; apps/v1 StatefulSet) keep only
their metadata (and a StatefulSet's `spec.replicas`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spidernet.control.allocator.holders import (
    IPAMCLAIM_API,
    IPAMCLAIM_KIND,
    KUBEVIRT_API,
    VM_KIND,
    VMI_KIND,
)
from spidernet.control.model import validate
from spidernet.control.model.documents import parse, to_document
from spidernet.control.model.errors import ValidationError
from spidernet.control.model.labels import dns_subdomain_problem
from spidernet.control.model.resources import (
    NAMESPACED_KINDS,
    Coordinator,
    Endpoint,
    IPPool,
    ReservedIP,
    Subnet,
)
from spidernet.control.store.base import (
    CLAIM,
    Delete,
    Key,
    NotFound,
    Store,
    Stored,
    Write,
)
from spidernet.node.errors import NodeError

from . import endpoints as ep
from .workloads import WORKLOAD_KINDS

# Records of KubeVirt's and k8snetworkplumbingwg's objects too (docs/kubevirt.md).
_HELD_BY = {VM_KIND: KUBEVIRT_API, VMI_KIND: KUBEVIRT_API, IPAMCLAIM_KIND: IPAMCLAIM_API}
_WORKLOAD_API = {"Pod": "v1", "Namespace": "v1", "Node": "v1", "StatefulSet": "apps/v1", **_HELD_BY}
_NAMESPACED = {*NAMESPACED_KINDS, "Pod", "StatefulSet", *_HELD_BY}


class Rejected(NodeError):
    """A resource the service refuses; the message names the resource, field and reason."""


@dataclass(frozen=True)
class Applied:
    """What `apply` did to one document."""

    key: Key
    action: str  # "created", "configured" or "unchanged"


def _workload(doc: Mapping[str, Any]) -> tuple[Key, dict[str, Any]]:
    kind = str(doc.get("kind", ""))
    api = doc.get("apiVersion")
    if api != _WORKLOAD_API[kind]:
        raise Rejected(f"{kind}: apiVersion: expected {_WORKLOAD_API[kind]!r}, got {api!r}")
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        raise Rejected(f"{kind}: metadata: missing")
    name = meta.get("name")
    if not isinstance(name, str) or (problem := dns_subdomain_problem(name)):
        raise Rejected(f"{kind} {name!r}: metadata.name: {problem or 'missing'}")
    namespace = ""
    if kind in _NAMESPACED:
        namespace = str(meta.get("namespace") or "default")
    kept: dict[str, Any] = {"name": name}
    if namespace:
        kept["namespace"] = namespace
    for field in ("labels", "annotations"):
        value = meta.get(field, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise Rejected(f"{kind} '{name}': metadata.{field}: expected string to string")
        if value:
            kept[field] = value
    for field in ("uid",):
        if isinstance(meta.get(field), str):
            kept[field] = meta[field]
    if isinstance(meta.get("ownerReferences"), list):
        kept["ownerReferences"] = meta["ownerReferences"]
    body: dict[str, Any] = {"apiVersion": api, "kind": kind, "metadata": kept}
    if kind == "StatefulSet":
        replicas = doc.get("spec", {}).get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise Rejected(f"StatefulSet '{name}': spec.replicas: expected an integer >= 0")
        body["spec"] = {"replicas": replicas}
    return Key(kind, namespace, name), body


def _pools(store: Store) -> list[IPPool]:
    return [r for o in store.list(IPPool.KIND).items if isinstance(r := parse(o.body), IPPool)]


def _subnets(store: Store) -> list[Subnet]:
    return [r for o in store.list(Subnet.KIND).items if isinstance(r := parse(o.body), Subnet)]


def allocated(store: Store, pool: str) -> list[Stored]:
    """The claims of `pool`."""
    return list(store.list(CLAIM, namespace=pool).items)


def _check(store: Store, resource: object, old: Stored | None) -> None:
    if isinstance(resource, IPPool):
        old_pool = parse(old.body) if old else None
        taken = [int(ipaddress.ip_address(c.key.name)) for c in allocated(store, resource.name)]
        other_pools = [p for p in _pools(store) if p.name != resource.name]
        validate.check_pool(
            resource,
            other_pools,
            old_pool if isinstance(old_pool, IPPool) else None,
            taken,
            subnets=_subnets(store),
        )
    elif isinstance(resource, Subnet):
        old_subnet = parse(old.body) if old else None
        other_subnets = [s for s in _subnets(store) if s.name != resource.name]
        validate.check_subnet(
            resource,
            other_subnets,
            _pools(store),
            old_subnet if isinstance(old_subnet, Subnet) else None,
        )
    elif isinstance(resource, ReservedIP) and old is not None:
        old_res = parse(old.body)
        validate.check_reserved(resource, old_res if isinstance(old_res, ReservedIP) else None)


def key_and_body(doc: Mapping[str, Any]) -> tuple[Key, dict[str, Any], object]:
    """The store key, canonical body and parsed resource (None for workloads) of a doc."""
    kind = doc.get("kind")
    if kind in WORKLOAD_KINDS:
        key, body = _workload(doc)
        return key, body, None
    try:
        resource = parse(doc)
    except ValidationError as e:
        raise Rejected(str(e)) from e
    if isinstance(resource, Endpoint):
        raise Rejected(
            f"SpiderEndpoint '{resource.namespace}/{resource.name}': endpoints are written by "
            "the allocator, not applied"
        )
    name = resource.name
    return Key(resource.KIND, "", name), to_document(resource), resource


def apply(store: Store, doc: Mapping[str, Any]) -> Applied:
    """Create or replace one resource after every check; raises Rejected."""
    key, body, resource = key_and_body(doc)
    try:
        old: Stored | None = store.get(key)
    except NotFound:
        old = None
    try:
        _check(store, resource, old)
    except ValidationError as e:
        raise Rejected(str(e)) from e
    if old is None:
        store.create(key, body)
        return Applied(key, "created")
    if dict(old.body) == body:
        return Applied(key, "unchanged")
    store.update(key, body, old.version)
    return Applied(key, "configured")


def pool_status(store: Store, doc: Mapping[str, Any]) -> dict[str, Any]:
    """A pool document with Spiderpool's status: allocatedIPs, allocatedIPCount, totalIPCount."""
    pool = parse(doc)
    assert isinstance(pool, IPPool)
    claims = allocated(store, pool.name)
    allocations = {
        c.key.name: {"pod": c.body.get("pod", ""), "podUid": c.body.get("podUid", "")}
        for c in claims
    }
    out = dict(doc)
    out["status"] = {
        "allocatedIPs": json.dumps(allocations, sort_keys=True) if allocations else None,
        "allocatedIPCount": len(claims),
        "totalIPCount": pool.total,
    }
    if out["status"]["allocatedIPs"] is None:
        del out["status"]["allocatedIPs"]
    return out


def with_status(store: Store, obj: Stored) -> dict[str, Any]:
    """The document as `get` shows it (pools with their live status)."""
    if obj.key.kind == IPPool.KIND:
        return pool_status(store, obj.body)
    return dict(obj.body)


def delete(store: Store, key: Key) -> None:
    """Remove a resource. A pool with allocations is refused (Spiderpool keeps such a pool
    alive with a finalizer until it is empty); deleting an endpoint releases its addresses."""
    obj = store.get(key)
    if key.kind == IPPool.KIND:
        n = len(allocated(store, key.name))
        if n:
            raise Rejected(f"cannot delete SpiderIPPool '{key.name}' with {n} allocated IPs")
    if key.kind == Endpoint.KIND:
        writes: list[Write] = [Delete(k) for k in ep.claims_of(ep.entries_of(obj.body))]
        writes.append(Delete(key, obj.version))
        store.commit(writes)
        return
    store.delete(key, obj.version)


def kinds() -> tuple[str, ...]:
    """Every kind the service stores for users."""
    return (
        IPPool.KIND,
        Subnet.KIND,
        ReservedIP.KIND,
        Endpoint.KIND,
        Coordinator.KIND,
        *WORKLOAD_KINDS,
    )
