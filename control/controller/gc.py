"""The IP garbage collector's decisions (pure): which SpiderEndpoints and IPClaims to reclaim,
and why, from what the cluster holds at one moment.

The effects (reading the store, deleting at the versions read, leader election) live in
control/controller/run.py; this module only looks at typed snapshots and answers with typed
verdicts, so every rule is tested without an API server (reference/spiderpool.md §3).

An endpoint is reclaimed, with its claims, when its pod:
- is gone (no Pod of that namespace and name), unless a StatefulSet still wants it;
- was recreated (a Pod of that name with another uid), unless a StatefulSet still wants it
  (the agent gives a StatefulSet pod its addresses back on its next ADD);
- is terminating and its deletionTimestamp + grace period + `margin` has passed;
- is on a node that no longer exists (the Pod's `spec.nodeName` names a missing Node);
- has finished (phase Succeeded or Failed).
A KubeVirt VM's endpoint (owner VirtualMachineInstance, named after the VM) is kept while the
VM or its VMI exists, whatever its launcher pods do (stopped, restarted, migrating: the next
launcher pod gets the same addresses), and reclaimed once neither does. An IPAMClaim's
endpoint (owner IPAMClaim) is kept while the claim exists and reclaimed once it is gone
(docs/kubevirt.md).
A StatefulSet pod (the endpoint's owner is a StatefulSet) whose StatefulSet exists and whose
ordinal is below `spec.replicas` is always kept (gone, recreated, finished or terminating: the
StatefulSet makes a pod of that name again and the agent gives it the same addresses); once the
StatefulSet is gone or scaled below the ordinal, it is reclaimed as soon as no pod with its uid
is in use.

A claim no endpoint lists (half-written by a crash between the writes of a commit, or lost by a
release that failed half-way) is reclaimed once it has been seen so for `orphan_grace`
seconds, unless its pod still lives with the claim's uid and has no endpoint of that uid yet
(its ADD may still be writing). A live pod's claim that its own endpoint does not list is
left behind: an agent killed between the claim and endpoint writes, whose ADD was retried
and allocated afresh; it is reclaimed too. An endpoint whose pod lives with the
same uid, is not finished, not past its deletion grace and on an existing node is never
reclaimed, nor are its claims.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spidernet.control.allocator.request import IPAMCLAIM_OWNER, VMI_OWNER
from spidernet.control.model.endpoint_doc import entries_of
from spidernet.control.store.base import CLAIM, Key

ENDPOINT = "SpiderEndpoint"
DEFAULT_MARGIN_S = 30.0
DEFAULT_ORPHAN_GRACE_S = 60.0
DEFAULT_POD_GRACE_S = 30.0


class Reason(enum.Enum):
    """Why something is reclaimed."""

    POD_GONE = "pod gone"
    POD_RECREATED = "pod recreated with another uid"
    TERMINATING = "pod terminating past its grace period"
    NODE_GONE = "pod's node gone"
    POD_FINISHED = "pod finished"
    STATEFULSET_GONE = "statefulset gone"
    ORDINAL_UNWANTED = "statefulset scaled below the pod's ordinal"
    ORPHAN_CLAIM = "claim no endpoint lists"
    VM_GONE = "virtual machine and its instance gone"
    IPAMCLAIM_GONE = "ipamclaim gone"


@dataclass(frozen=True)
class Claim:
    """One IPClaim as read: its key (namespace = pool, name = address), version and owner."""

    key: Key
    version: str
    pod: str  # namespace/name
    pod_uid: str


@dataclass(frozen=True)
class Endpoint:
    """One SpiderEndpoint as read, with the claim keys its entries hold."""

    key: Key
    version: str
    uid: str
    owner_kind: str
    owner_name: str
    claims: tuple[Key, ...]


@dataclass(frozen=True)
class Pod:
    """What the GC needs of a Pod."""

    namespace: str
    name: str
    uid: str
    node: str  # spec.nodeName, "" while unscheduled
    phase: str
    deleted_at: float | None  # metadata.deletionTimestamp (epoch seconds)
    grace_s: float  # metadata.deletionGracePeriodSeconds, else spec.terminationGracePeriodSeconds


@dataclass(frozen=True)
class StatefulSet:
    """A StatefulSet's name and how many replicas it wants."""

    namespace: str
    name: str
    replicas: int


@dataclass(frozen=True)
class Snapshot:
    """The cluster at one moment, as the GC reads it."""

    claims: tuple[Claim, ...]
    endpoints: tuple[Endpoint, ...]
    pods: Mapping[tuple[str, str], Pod]
    nodes: frozenset[str]
    statefulsets: Mapping[tuple[str, str], StatefulSet]
    # (namespace, name) of each KubeVirt VirtualMachine, VirtualMachineInstance and IPAMClaim.
    vms: frozenset[tuple[str, str]] = frozenset()
    vmis: frozenset[tuple[str, str]] = frozenset()
    ipam_claims: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Reclaim:
    """One verdict: delete `key` at `version` (an endpoint and then its claims, or one claim)."""

    key: Key
    version: str
    reason: Reason
    pod: str
    claims: tuple[Claim, ...] = ()


@dataclass(frozen=True)
class Policy:
    """The GC's windows, in seconds."""

    margin_s: float = DEFAULT_MARGIN_S
    orphan_grace_s: float = DEFAULT_ORPHAN_GRACE_S


def ordinal(name: str) -> int | None:
    """A StatefulSet pod's ordinal (the number after the last '-'), None when there is none."""
    _, sep, tail = name.rpartition("-")
    return int(tail) if sep and tail.isdigit() else None


def _sts_wants(ep: Endpoint, sets: Mapping[tuple[str, str], StatefulSet]) -> Reason | None:
    """None when the endpoint's StatefulSet wants its pod; else why not."""
    sts = sets.get((ep.key.namespace, ep.owner_name))
    if sts is None:
        return Reason.STATEFULSET_GONE
    index = ordinal(ep.key.name)
    if index is None or index >= sts.replicas:
        return Reason.ORDINAL_UNWANTED
    return None


def endpoint_verdict(
    ep: Endpoint, snap: Snapshot, now: float, policy: Policy = Policy()
) -> Reason | None:
    """Why `ep` is reclaimed, or None when it is kept."""
    namespace = ep.key.namespace
    if ep.owner_kind == VMI_OWNER:
        alive = (namespace, ep.key.name) in snap.vms or (namespace, ep.owner_name) in snap.vmis
        return None if alive else Reason.VM_GONE
    if ep.owner_kind == IPAMCLAIM_OWNER:
        return None if (namespace, ep.owner_name) in snap.ipam_claims else Reason.IPAMCLAIM_GONE
    if ep.owner_kind == "StatefulSet" and _sts_wants(ep, snap.statefulsets) is None:
        # A StatefulSet pod keeps its addresses (and gets them back by name) while wanted.
        return None
    pod = snap.pods.get((ep.key.namespace, ep.key.name))
    if pod is not None and pod.uid == ep.uid:
        if pod.phase in ("Succeeded", "Failed"):
            return Reason.POD_FINISHED
        if pod.node and pod.node not in snap.nodes:
            return Reason.NODE_GONE
        if pod.deleted_at is not None and now > pod.deleted_at + pod.grace_s + policy.margin_s:
            return Reason.TERMINATING
        return None  # in use
    if ep.owner_kind == "StatefulSet":
        return _sts_wants(ep, snap.statefulsets)
    return Reason.POD_GONE if pod is None else Reason.POD_RECREATED


def _pod_lives(claim: Claim, pods: Mapping[tuple[str, str], Pod]) -> bool:
    namespace, _, name = claim.pod.partition("/")
    pod = pods.get((namespace, name))
    return pod is not None and pod.uid == claim.pod_uid and pod.phase not in ("Succeeded", "Failed")


def orphans(snap: Snapshot) -> tuple[Claim, ...]:
    """The claims no endpoint lists and whose pod does not live with their uid, or does but
    its own endpoint (same uid, written after the claims) does not list them."""
    listed = {k for ep in snap.endpoints for k in ep.claims}
    recorded = {(ep.key.namespace, ep.key.name, ep.uid) for ep in snap.endpoints}

    def left_behind(c: Claim) -> bool:
        namespace, _, name = c.pod.partition("/")
        return (namespace, name, c.pod_uid) in recorded

    return tuple(
        c
        for c in snap.claims
        if c.key not in listed and (not _pod_lives(c, snap.pods) or left_behind(c))
    )


def decide(
    snap: Snapshot,
    now: float,
    orphan_since: Mapping[Key, float],
    policy: Policy = Policy(),
) -> tuple[Reclaim, ...]:
    """Every reclaim of one pass. `orphan_since`: when each orphaned claim was first seen so
    (the caller keeps it across passes, see `orphans`)."""
    by_key = {c.key: c for c in snap.claims}
    out: list[Reclaim] = []
    for ep in snap.endpoints:
        reason = endpoint_verdict(ep, snap, now, policy)
        if reason is not None:
            ref = f"{ep.key.namespace}/{ep.key.name}"
            # Only the claims that name its pod: an address it lists but another pod holds
            # (its own claim lost) is that pod's, not this endpoint's to give back.
            held = tuple(by_key[k] for k in ep.claims if k in by_key and by_key[k].pod == ref)
            out.append(Reclaim(ep.key, ep.version, reason, ref, held))
    for claim in orphans(snap):
        since = orphan_since.get(claim.key)
        if since is not None and now - since >= policy.orphan_grace_s:
            out.append(Reclaim(claim.key, claim.version, Reason.ORPHAN_CLAIM, claim.pod))
    return tuple(out)


def allocated_counts(claims: Iterable[Claim]) -> dict[str, int]:
    """Claims per pool."""
    counts: dict[str, int] = {}
    for claim in claims:
        counts[claim.key.namespace] = counts.get(claim.key.namespace, 0) + 1
    return counts


# Reading the store's bodies into the records above.


def _timestamp(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def claim_of(key: Key, version: str, body: Mapping[str, Any]) -> Claim:
    """An IPClaim body ({pod, podUid, interface, node}) as a record."""
    return Claim(key, version, str(body.get("pod", "")), str(body.get("podUid", "")))


def endpoint_of(key: Key, version: str, body: Mapping[str, Any]) -> Endpoint:
    """A SpiderEndpoint document as a record."""
    status = body.get("status", {})
    claims: list[Key] = []
    for entry in entries_of(body):
        for fam in ("ipv4", "ipv6"):
            if entry.get(fam) and entry.get(f"{fam}Pool"):
                address = str(entry[fam]).split("/", maxsplit=1)[0]
                claims.append(Key(CLAIM, str(entry[f"{fam}Pool"]), address))
    return Endpoint(
        key=key,
        version=version,
        uid=str(status.get("current", {}).get("uid", "")),
        owner_kind=str(status.get("ownerControllerType", "")),
        owner_name=str(status.get("ownerControllerName", "")),
        claims=tuple(claims),
    )


def pod_of(body: Mapping[str, Any]) -> Pod:
    """A core/v1 Pod as the GC sees it."""
    meta = body.get("metadata", {})
    spec = body.get("spec", {})
    grace = meta.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds", DEFAULT_POD_GRACE_S)
    return Pod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        node=str(spec.get("nodeName", "") or ""),
        phase=str(body.get("status", {}).get("phase", "") or ""),
        deleted_at=_timestamp(meta.get("deletionTimestamp")),
        grace_s=float(grace),
    )


def statefulset_of(body: Mapping[str, Any]) -> StatefulSet:
    """An apps/v1 StatefulSet's name and wanted replicas (Kubernetes' default: 1)."""
    meta = body.get("metadata", {})
    replicas = body.get("spec", {}).get("replicas")
    return StatefulSet(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        replicas=1 if replicas is None else int(replicas),
    )
