"""Switching a cluster from Spiderpool: adopt what its records hold, so no held address is
handed out again (`spidernet migrate`; docs/migrate-from-spiderpool.md).

Spiderpool records an allocation twice: in its pool (`SpiderIPPool.status.allocatedIPs`, a
JSON string mapping each address to {"pod": "ns/name", "podUid": uid}) and in the pod's
SpiderEndpoint (`status.current.ips`, the kind spidernet reads as its own). spidernet counts an
address as taken only when it has an IPClaim, so each address either record holds becomes an
IPClaim naming the same pod, unless one exists. A claim that names another pod is a conflict,
reported and left alone. Spiderpool's finalizer (`spiderpool.spidernet.io`) on its endpoints
and pools is removed: nothing would remove it once Spiderpool's controller is gone, and an
endpoint the GC deletes would stay Terminating for ever.

Pure: records in, a plan out; cli.py reads the store and carries the plan out. Running it again
adopts nothing new (idempotent)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from spidernet.control.model.endpoint_doc import entries_of
from spidernet.control.model.resources import IPPool
from spidernet.control.store.base import CLAIM, Key

FINALIZER = "spiderpool.spidernet.io"
POOL = IPPool.KIND


@dataclass(frozen=True)
class Held:
    """One address Spiderpool's records give to a pod."""

    pool: str
    address: str  # no prefix length
    pod: str  # namespace/name
    pod_uid: str
    interface: str = ""  # known from an endpoint only
    node: str = ""

    @property
    def key(self) -> Key:
        return Key(CLAIM, self.pool, self.address)

    def claim(self) -> dict[str, Any]:
        """The IPClaim body, as spidernet's IPAM writes one."""
        return {
            "pod": self.pod,
            "podUid": self.pod_uid,
            "interface": self.interface,
            "node": self.node,
        }


@dataclass(frozen=True)
class Contested:
    """An address Spiderpool gives to `held.pod` whose IPClaim names `owner`."""

    held: Held
    owner: str


@dataclass(frozen=True)
class Plan:
    """What `spidernet migrate` does: claims to create, finalizers to remove; what it leaves."""

    adopt: tuple[Held, ...]
    already: tuple[Held, ...]  # claimed already, by the same pod
    conflicts: tuple[Contested, ...]
    unfinalize: tuple[Key, ...]  # endpoints and pools that carry Spiderpool's finalizer
    problems: tuple[str, ...]  # records that could not be read, by name


def _address(text: str) -> str:
    """`text` ("10.0.0.5" or "10.0.0.5/24") as a canonical address without prefix."""
    return str(ipaddress.ip_interface(text.strip()).ip)


def from_pool(name: str, body: Mapping[str, Any]) -> tuple[list[Held], list[str]]:
    """The addresses a SpiderIPPool's `status.allocatedIPs` holds, and what could not be
    read in it."""
    raw = body.get("status", {}).get("allocatedIPs")
    if not raw:
        return [], []
    try:
        table = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(table, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        return [], [f"SpiderIPPool {name}: status.allocatedIPs is not Spiderpool's record: {e}"]
    held: list[Held] = []
    problems: list[str] = []
    for ip, who in sorted(table.items()):
        try:
            address = _address(str(ip))
        except ValueError:
            problems.append(f"SpiderIPPool {name}: {ip!r} in status.allocatedIPs is no address")
            continue
        if not isinstance(who, dict) or not who.get("pod"):
            problems.append(f"SpiderIPPool {name}: {address} in status.allocatedIPs names no pod")
            continue
        held.append(Held(name, address, str(who["pod"]), str(who.get("podUid", ""))))
    return held, problems


def from_endpoint(namespace: str, name: str, body: Mapping[str, Any]) -> list[Held]:
    """The addresses a SpiderEndpoint's `status.current.ips` holds."""
    current = body.get("status", {}).get("current", {})
    held = []
    for entry in entries_of(body):
        for fam in ("ipv4", "ipv6"):
            if entry.get(fam) and entry.get(f"{fam}Pool"):
                held.append(
                    Held(
                        pool=str(entry[f"{fam}Pool"]),
                        address=_address(str(entry[fam])),
                        pod=f"{namespace}/{name}",
                        pod_uid=str(current.get("uid", "")),
                        interface=str(entry.get("interface", "")),
                        node=str(current.get("node", "")),
                    )
                )
    return held


def _finalized(body: Mapping[str, Any]) -> bool:
    return FINALIZER in (body.get("metadata", {}).get("finalizers") or [])


def plan(
    pools: Iterable[tuple[str, Mapping[str, Any]]],
    endpoints: Iterable[tuple[Key, Mapping[str, Any]]],
    claims: Mapping[Key, Mapping[str, Any]],
    only: frozenset[str] | None = None,
) -> Plan:
    """The migration of these SpiderIPPools (name, body), SpiderEndpoints (key, body) and
    IPClaims (key -> body); with `only`, of the addresses of those pools (and the endpoints
    that hold one) alone. An address both records hold is adopted once, with what the
    endpoint knows (interface, node); when they name different pods, the endpoint wins (it is
    the pod's own record, written last) and the pool's entry is reported."""
    by_key: dict[Key, Held] = {}
    problems: list[str] = []
    unfinalize: list[Key] = []
    for name, body in pools:
        if only is not None and name not in only:
            continue
        held, bad = from_pool(name, body)
        problems += bad
        for h in held:
            by_key[h.key] = h
        if _finalized(body):
            unfinalize.append(Key(POOL, "", name))
    for key, body in endpoints:
        mine = [
            h
            for h in from_endpoint(key.namespace, key.name, body)
            if only is None or h.pool in only
        ]
        if only is not None and not mine:
            continue
        for h in mine:
            known = by_key.get(h.key)
            if known is not None and known.pod != h.pod:
                problems.append(
                    f"{h.pool}/{h.address}: the pool's record names {known.pod}, "
                    f"the endpoint {h.pod}; adopted for {h.pod}"
                )
            by_key[h.key] = h
        if _finalized(body):
            unfinalize.append(key)
    adopt: list[Held] = []
    already: list[Held] = []
    conflicts: list[Contested] = []
    for key in sorted(by_key, key=lambda k: (k.namespace, _sortable(k.name))):
        h = by_key[key]
        claim = claims.get(key)
        if claim is None:
            adopt.append(h)
        elif str(claim.get("pod", "")) == h.pod:
            already.append(h)
        else:
            conflicts.append(Contested(h, str(claim.get("pod", ""))))
    return Plan(tuple(adopt), tuple(already), tuple(conflicts), tuple(unfinalize), tuple(problems))


def without_finalizer(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` with Spiderpool's finalizer removed (others kept)."""
    meta = dict(body.get("metadata", {}))
    meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
    if not meta["finalizers"]:
        del meta["finalizers"]
    return {**body, "metadata": meta}


def _sortable(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def summary(p: Plan) -> dict[str, Any]:
    """The plan as JSON: what `--dry-run -o json` prints."""
    return {
        "adopt": [
            {"pool": h.pool, "address": h.address, "pod": h.pod, "podUid": h.pod_uid}
            for h in p.adopt
        ],
        "alreadyClaimed": len(p.already),
        "conflicts": [contested_doc(c) for c in p.conflicts],
        "finalizersToRemove": [
            f"{k.kind} {k.namespace + '/' if k.namespace else ''}{k.name}" for k in p.unfinalize
        ],
        "problems": list(p.problems),
    }


def contested_doc(c: Contested) -> dict[str, str]:
    """One conflict as JSON."""
    return {
        "pool": c.held.pool,
        "address": c.held.address,
        "spiderpool": c.held.pod,
        "claimedBy": c.owner,
    }
