"""The IPAM core's claim planning (pure): given one call, the pod, its endpoint and the claims
the store holds for it, which claims to create, keep and delete, and the endpoint to write.

An ADD is planned in two steps around the allocator, which the core runs between them
(ipam.py): `keep` says what of a recorded endpoint stays and whether the call's NIC still
needs addresses; `fresh` (a new endpoint, or a new incarnation of the pod) and `extend` (the
same sandbox, or a StatefulSet pod by its identity) turn the leases the allocator chose into
the writes of one commit. `drop` plans a release. Nothing here reads the store or a clock.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spidernet.control.allocator.allocate import Lease
from spidernet.control.allocator.candidates import UNNAMED_PREFIX
from spidernet.control.allocator.request import IPAMCLAIM_OWNER, VMI_OWNER, PodFacts
from spidernet.control.store.base import Create, Delete, Key, Stored, Update, Write

from . import endpoints as ep

Entry = dict[str, Any]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Add:
    """One ADD as the planner sees it: the sandbox and the NIC, the CNI network, the sandbox
    namespace's path and identity (recorded on the endpoint), the node, and when the claims
    are made (`since`, UTC to the second: `spidernet ip who`)."""

    container_id: str
    ifname: str
    network: str
    netns: str
    netns_id: str
    node: str
    since: str


@dataclass(frozen=True)
class Holdings:
    """The claims an endpoint's entries name, as read from the store: those the pod holds
    (key -> version), those another pod holds, those that do not exist."""

    mine: Mapping[Key, str] = field(default_factory=dict)
    taken: frozenset[Key] = frozenset()
    missing: frozenset[Key] = frozenset()


@dataclass(frozen=True)
class Kept:
    """What of a recorded endpoint an ADD of the same pod keeps: its entries (the call's NIC
    renamed onto an unnamed `ippools` entry when one is free), networks and attached NICs; the
    writes so far (claims re-created where missing); the NICs dropped because another pod
    holds their claims; and whether the call's NIC still needs addresses."""

    entries: list[Entry]
    nets: dict[str, str]
    attached: set[str]
    writes: list[Write]
    dropped: tuple[str, ...]
    needs_lease: bool
    # A live migration's target taking the endpoint over: the source's sandbox, recorded.
    source: Mapping[str, Any] | None = None


def claim_body(pod: PodFacts, interface: str, add: Add) -> dict[str, Any]:
    """The body of one IPClaim: who holds the address, on which NIC and node, since when."""
    return {
        "pod": pod.ref,
        "podUid": pod.uid,
        "interface": interface,
        "node": add.node,
        "since": add.since,
    }


def claim(lease: Lease, pod: PodFacts, add: Add) -> Create:
    """The create of the claim of `lease`."""
    return Create(
        ep.claim_key(lease.pool, str(lease.address.ip)), claim_body(pod, lease.interface, add)
    )


def renewed(pod: PodFacts, current: Stored, container_id: str) -> bool:
    """Whether `current` belongs to another incarnation of the pod (Spiderpool issues #1187,
    #4916): another sandbox and another uid, and not a StatefulSet pod (whose addresses
    follow its identity)."""
    doc = current.body
    same = ep.container_of(doc) == container_id or (
        pod.uid != "" and doc.get("status", {}).get("current", {}).get("uid") == pod.uid
    )
    return not same and not pod.stateful


def fresh(
    add: Add,
    pod: PodFacts,
    current: Stored | None,
    holdings: Holdings,
    leases: Sequence[Lease],
) -> tuple[list[Write], list[Entry]]:
    """The writes of an ADD that allocates every NIC afresh (`leases`), and its entries: a new
    endpoint, or, for a new incarnation (`current`), the old sandbox's claims the pod holds
    (`holdings.mine`) and its endpoint deleted in the same commit."""
    entries = ep.entries_from(leases)
    nets = {e["interface"]: add.network for e in entries}
    doc = ep.build(
        pod, add.container_id, entries, nets, [add.ifname], netns=add.netns, netns_id=add.netns_id
    )
    claims: list[Write] = [claim(lease, pod, add) for lease in leases]
    if current is None:
        return [*claims, Create(ep.key_of(pod.namespace, pod.holder), doc)], entries
    old: list[Write] = [Delete(k, version) for k, version in holdings.mine.items()]
    old.append(Delete(current.key, current.version))
    return [*old, *claims, Create(current.key, doc)], entries


def keep(add: Add, pod: PodFacts, current: Stored, holdings: Holdings) -> Kept:
    """What an ADD of the same pod keeps of its endpoint `current`. An entry whose claim
    another pod holds now is dropped (its ADD never finished: the NIC is allocated afresh);
    a claim that is missing is made again."""
    doc = current.body
    entries = ep.entries_of(doc)
    nets = ep.networks_of(doc)
    attached = set(ep.attached_of(doc))
    source = handover(pod, doc, add.container_id)
    if source is not None:
        attached = set()  # the target's NICs are attached as its ADDs come
    dropped: list[str] = []
    for entry in [e for e in entries if holdings.taken & set(ep.claims_of([e]))]:
        entries.remove(entry)
        nets.pop(entry["interface"], None)
        attached.discard(entry["interface"])
        dropped.append(str(entry["interface"]))
    writes: list[Write] = []
    for entry in entries:
        for key in ep.claims_of([entry]):
            if key in holdings.missing:
                writes.append(Create(key, claim_body(pod, str(entry["interface"]), add)))
    names = [e["interface"] for e in entries]
    needs_lease = False
    if add.ifname not in names:
        placeholders = sorted((n for n in names if n.startswith(UNNAMED_PREFIX)), key=_index)
        if placeholders:
            # A later NIC of an unnamed `ippools` annotation takes the next entry.
            entry = next(e for e in entries if e["interface"] == placeholders[0])
            entry["interface"] = add.ifname
            nets[add.ifname] = nets.pop(placeholders[0], add.network)
        else:
            needs_lease = True
    return Kept(entries, nets, attached, writes, tuple(dropped), needs_lease, source)


def extend(
    add: Add, pod: PodFacts, current: Stored, kept: Kept, leases: Sequence[Lease]
) -> tuple[list[Write], list[Entry]]:
    """The writes of an ADD of the same pod, and its entries: what `keep` kept, the claims of
    `leases` (the call's NIC, when it needed addresses), and the endpoint updated when it
    changed."""
    entries, nets, attached = list(kept.entries), dict(kept.nets), set(kept.attached)
    writes = list(kept.writes)
    if kept.needs_lease:
        entries.extend(ep.entries_from(leases))
        nets[add.ifname] = add.network
        writes.extend(claim(lease, pod, add) for lease in leases)
    attached.add(add.ifname)
    doc = dict(current.body)
    new = ep.build(
        pod,
        add.container_id,
        entries,
        nets,
        attached,
        netns=add.netns,
        netns_id=add.netns_id,
        previous=doc,
    )
    if kept.source is not None:
        new["metadata"]["annotations"][ep.ANNO_MIGRATION] = json.dumps(kept.source, sort_keys=True)
    if new != doc:
        writes.append(Update(current.key, new, current.version))
    return writes, entries


def handover(pod: PodFacts, doc: Mapping[str, Any], container_id: str) -> dict[str, Any] | None:
    """The source sandbox to record when the ADD of `container_id` is a live migration's
    target taking over the VM's endpoint `doc` from the source launcher pod that holds it
    now; None otherwise (not a target, the same sandbox, or a handover already recorded)."""
    held_by = ep.container_of(doc)
    if not pod.migration or not held_by or held_by == container_id or ep.migration_of(doc):
        return None
    cur = doc.get("status", {}).get("current", {})
    return {
        "containerID": held_by,
        "uid": str(cur.get("uid", "")),
        "node": str(cur.get("node", "")),
        "pod": ep.pod_of(doc),
        "netns": ep.netns_of(doc),
        "netnsId": ep.netns_id_of(doc),
        "attached": sorted(ep.attached_of(doc)),
        "migration": pod.migration,
    }


def migration_ended(doc: Mapping[str, Any], container_id: str) -> dict[str, Any] | None:
    """The VM's endpoint `doc` after a DEL of `container_id` during a live migration, or
    None when that sandbox is neither side of it. The source's DEL ends the migration as a
    success: the target keeps the endpoint, the record of the source goes. The target's DEL
    ends it as a failure or an abort: the source holds the endpoint again, as before."""
    source = ep.migration_of(doc)
    new: dict[str, Any] = json.loads(json.dumps(doc))
    annotations = new["metadata"]["annotations"]
    if source.get("containerID") == container_id:
        del annotations[ep.ANNO_MIGRATION]
        return new
    if ep.container_of(doc) != container_id:
        return None
    del annotations[ep.ANNO_MIGRATION]
    annotations[ep.ANNO_CONTAINER] = str(source.get("containerID", ""))
    annotations[ep.ANNO_ATTACHED] = ",".join(source.get("attached", []))
    for anno, field_ in (
        (ep.ANNO_POD, "pod"),
        (ep.ANNO_NETNS, "netns"),
        (ep.ANNO_NETNS_ID, "netnsId"),
    ):
        if source.get(field_):
            annotations[anno] = str(source[field_])
        else:
            annotations.pop(anno, None)
    current = new.setdefault("status", {}).setdefault("current", {})
    current["uid"] = str(source.get("uid", ""))
    current["node"] = str(source.get("node", ""))
    return new


def gone(doc: Mapping[str, Any], nics: Sequence[str]) -> list[Entry]:
    """The entries a release of `nics` frees: theirs, or all when no attached NIC is left."""
    entries = ep.entries_of(doc)
    if set(ep.attached_of(doc)) - set(nics):
        return [e for e in entries if e["interface"] in nics]
    return entries


def drop(current: Stored, nics: Sequence[str], mine: Mapping[Key, str]) -> list[Write]:
    """The writes that release the entries of `nics` from the endpoint `current` (all of it
    when no attached NIC is left): deletes of the claims the pod holds of them (`mine`, at
    the versions read), then the endpoint updated, or deleted when nothing is kept."""
    doc = current.body
    entries = ep.entries_of(doc)
    attached = set(ep.attached_of(doc)) - set(nics)
    nets = ep.networks_of(doc)
    kept = [e for e in entries if e["interface"] not in nics] if attached else []
    writes: list[Write] = [Delete(k, version) for k, version in mine.items()]
    if not kept:
        writes.append(Delete(current.key, current.version))
        return writes
    for nic in nics:
        nets.pop(nic, None)
    new = ep.build(
        facts_of(doc),
        ep.container_of(doc),
        kept,
        nets,
        attached,
        netns=ep.netns_of(doc),
        previous=doc,
    )
    writes.append(Update(current.key, new, current.version))
    return writes


def facts_of(doc: Mapping[str, Any]) -> PodFacts:
    """The pod facts an endpoint document records (its holder: the pod, its VM or its
    IPAMClaim, by `ownerControllerType`)."""
    meta = doc.get("metadata", {})
    status = doc.get("status", {})
    cur = status.get("current", {})
    kind = str(status.get("ownerControllerType", ""))
    owner = str(status.get("ownerControllerName", ""))
    name = str(meta.get("name", ""))
    return PodFacts(
        namespace=str(meta.get("namespace", "")),
        name=ep.pod_of(doc),
        uid=str(cur.get("uid", "")),
        node=str(cur.get("node", "")),
        owner_kind=kind,
        owner_name=owner,
        vm=name if kind == VMI_OWNER else "",
        ipam_claim=owner if kind == IPAMCLAIM_OWNER else "",
    )


def detach(pod: PodFacts, container_id: str, doc: Mapping[str, Any], ifname: str) -> Entry:
    """The endpoint `doc` of a StatefulSet pod after a DEL of `ifname`: every address kept
    (they follow the pod's identity), the NIC no longer attached."""
    attached = set(ep.attached_of(doc)) - {ifname}
    return ep.build(
        pod,
        container_id,
        ep.entries_of(doc),
        ep.networks_of(doc),
        attached,
        netns=ep.netns_of(doc),
        previous=dict(doc),
    )


def held(doc: Mapping[str, Any], nic: str | None = None) -> set[IPAddress]:
    """The addresses the endpoint `doc` lists, on every interface or on `nic`."""
    entries = [e for e in ep.entries_of(doc) if nic is None or e.get("interface") == nic]
    return ips_of(entries)


def ips_of(
    entries: Sequence[Mapping[str, Any]],
) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of `entries`, both families."""
    return {
        ipaddress.ip_interface(str(entry[fam])).ip
        for entry in entries
        for fam in ("ipv4", "ipv6")
        if entry.get(fam)
    }


def pools_of(doc: Mapping[str, Any], ifname: str) -> dict[str, str]:
    """Address (no prefix) -> pool, for the entries of `ifname` in the endpoint `doc`."""
    out: dict[str, str] = {}
    for entry in ep.entries_of(doc):
        if entry.get("interface") != ifname:
            continue
        for fam in ("ipv4", "ipv6"):
            if entry.get(fam) and entry.get(f"{fam}Pool"):
                out[str(entry[fam]).split("/", 1)[0]] = str(entry[f"{fam}Pool"])
    return out


def _index(name: str) -> int:
    return int(name[len(UNNAMED_PREFIX) :])
