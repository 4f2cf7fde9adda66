"""Addresses in a cluster, for the person on call: who holds one (`spidernet ip who`), giving
one back by hand (`spidernet ip release`), and what the controller's GC would reclaim now and
why (`spidernet gc --kubeconfig`). Read from the store; only `release` writes, in one commit.

`plan_release` is pure: the records in, the writes out (or the reason it refuses)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spidernet.control.errors import ControlError
from spidernet.control.model.endpoint_doc import entries_of
from spidernet.control.store.base import CLAIM, Delete, Key, NotFound, Store, Stored, Update, Write

from . import gc
from .run import GarbageCollector

ENDPOINT = gc.ENDPOINT


@dataclass(frozen=True)
class Holder:
    """One pool's record of an address: its claim (None when only an endpoint lists it) and
    the endpoints that list it, with the state of the pod the claim names."""

    pool: str
    address: str
    claim: Stored | None
    listed_by: tuple[Stored, ...]
    pod_state: str  # "running" (the claim's pod, same uid), "gone", "recreated", "" (no claim)

    @property
    def pod(self) -> str:
        if self.claim is not None:
            return str(self.claim.body.get("pod", ""))
        return ", ".join(f"{e.key.namespace}/{e.key.name}" for e in self.listed_by)


def canonical(text: str) -> str:
    """An address as the store names it; ValueError when `text` is none."""
    return str(ipaddress.ip_address(text.strip()))


def _pod_state(store: Store, claim: Stored) -> str:
    namespace, _, name = str(claim.body.get("pod", "")).partition("/")
    try:
        pod = store.get(Key("Pod", namespace, name))
    except NotFound:
        return "gone"
    uid = str(pod.body.get("metadata", {}).get("uid", ""))
    wanted = str(claim.body.get("podUid", ""))
    return "running" if not wanted or uid == wanted else "recreated"


def who(store: Store, address: str) -> list[Holder]:
    """Every pool's record of `address`, claimed or only listed by an endpoint."""
    ip = canonical(address)
    claims = {s.key.namespace: s for s in store.list(CLAIM).items if s.key.name == ip}
    listed: dict[str, list[Stored]] = {}
    for e in store.list(ENDPOINT).items:
        # The claims an endpoint holds, as the GC reads them.
        for key in gc.endpoint_of(e.key, e.version, e.body).claims:
            if key.name == ip:
                listed.setdefault(key.namespace, []).append(e)
    out = []
    for pool in sorted(set(claims) | set(listed)):
        claim = claims.get(pool)
        state = _pod_state(store, claim) if claim is not None else ""
        out.append(Holder(pool, ip, claim, tuple(listed.get(pool, ())), state))
    return out


class Refused(ControlError):
    """`release` will not: the message says why and what would make it."""


def plan_release(holders: Sequence[Holder], pool: str | None, force: bool) -> list[Write]:
    """The writes that give the address back: its claim deleted, and each endpoint listing
    it rewritten without it (deleted when nothing is left), all at the versions read."""
    if pool is not None:
        holders = [h for h in holders if h.pool == pool]
    if not holders:
        raise Refused("no pool holds it" + (f" in pool {pool}" if pool else ""))
    if len(holders) > 1:
        pools = ", ".join(h.pool for h in holders)
        raise Refused(f"several pools hold it ({pools}): name one with --pool")
    (h,) = holders
    if h.pod_state == "running" and not force:
        raise Refused(
            f"pod {h.pod} still runs with it; releasing it would give its address to the "
            "next pod while it is in use (--force to do it anyway)"
        )
    writes: list[Write] = []
    if h.claim is not None:
        writes.append(Delete(h.claim.key, h.claim.version))
    for e in h.listed_by:
        body = _without(e.body, h.pool, h.address)
        if entries_of(body):
            writes.append(Update(e.key, body, e.version))
        else:
            writes.append(Delete(e.key, e.version))
    return writes


def _without(body: Mapping[str, Any], pool: str, address: str) -> dict[str, Any]:
    """The endpoint `body` with `address` of `pool` taken out of its entries."""
    status = dict(body.get("status", {}))
    current = dict(status.get("current", {}))
    kept = []
    for original in current.get("ips", []):
        entry = dict(original)
        for fam in ("ipv4", "ipv6"):
            value = entry.get(fam)
            if (
                value
                and entry.get(f"{fam}Pool") == pool
                and canonical(str(value).split("/")[0]) == address
            ):
                for field in (fam, f"{fam}Pool", f"{fam}Gateway"):
                    entry.pop(field, None)
        if entry.get("ipv4") or entry.get("ipv6"):
            kept.append(entry)
    current["ips"] = kept
    status["current"] = current
    return {**body, "status": status}


def release(store: Store, address: str, pool: str | None, force: bool) -> Holder:
    """Give `address` back (plan_release); the holder it was taken from."""
    holders = who(store, address)
    writes = plan_release(holders, pool, force)
    store.commit(writes)
    return next(h for h in holders if pool is None or h.pool == pool)


@dataclass(frozen=True)
class Verdict:
    """One thing the GC would reclaim, and why (orphans: once seen so for the grace)."""

    kind: str
    name: str
    pod: str
    addresses: tuple[str, ...]
    reason: str


def gc_preview(store: Store, policy: gc.Policy) -> list[Verdict]:
    """What the controller's GC would reclaim from what the store holds now; changes nothing.
    An orphaned claim is listed too, with the grace it waits out first."""
    snap = GarbageCollector(policy).snapshot(store)
    out = []
    for r in gc.decide(snap, time.time(), {}, policy):
        addresses = tuple(f"{c.key.namespace}/{c.key.name}" for c in r.claims)
        name = f"{r.key.namespace}/{r.key.name}"
        out.append(Verdict(r.key.kind, name, r.pod, addresses, r.reason.value))
    for c in gc.orphans(snap):
        reason = (
            f"{gc.Reason.ORPHAN_CLAIM.value} (after --orphan-grace, {policy.orphan_grace_s:g} s)"
        )
        address = f"{c.key.namespace}/{c.key.name}"
        out.append(Verdict(CLAIM, address, c.pod, (address,), reason))
    return out
