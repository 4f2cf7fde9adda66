"""`spidernet migrate`: read Spiderpool's records and the claims from the store, plan the
adoption (control/controller/adopt.py), and carry it out unless asked only to show it."""

from __future__ import annotations

from dataclasses import dataclass, field

from spidernet.control.store.base import (
    CLAIM,
    AlreadyExists,
    Conflict,
    Key,
    NotFound,
    Store,
)

from . import adopt, gc

ATTEMPTS = 3


@dataclass
class Outcome:
    """What a run did (nothing, with `dry_run`)."""

    plan: adopt.Plan
    adopted: list[adopt.Held] = field(default_factory=list)
    lost: list[adopt.Contested] = field(default_factory=list)  # claimed by another meanwhile
    unfinalized: list[Key] = field(default_factory=list)


def read_plan(store: Store, only: frozenset[str] | None = None) -> adopt.Plan:
    """The adoption the store's records call for now (of the pools `only`, when given)."""
    pools = [(s.key.name, s.body) for s in store.list(adopt.POOL).items]
    endpoints = [(s.key, s.body) for s in store.list(gc.ENDPOINT).items]
    claims = {s.key: s.body for s in store.list(CLAIM).items}
    return adopt.plan(pools, endpoints, claims, only)


def migrate(store: Store, *, dry_run: bool = False, only: frozenset[str] | None = None) -> Outcome:
    """Plan, then (unless `dry_run`) create each claim and remove each finalizer. A claim
    created by someone else in between is checked again: the same pod's is fine, another's is
    reported in `lost`."""
    out = Outcome(read_plan(store, only))
    if dry_run:
        return out
    for held in out.plan.adopt:
        try:
            store.create(held.key, held.claim())
            out.adopted.append(held)
        except AlreadyExists:
            owner = str(store.get(held.key).body.get("pod", ""))
            if owner != held.pod:
                out.lost.append(adopt.Contested(held, owner))
    for key in out.plan.unfinalize:
        if _unfinalize(store, key):
            out.unfinalized.append(key)
    return out


def _unfinalize(store: Store, key: Key) -> bool:
    """Remove Spiderpool's finalizer from `key`; False when it is gone or has none."""
    for _ in range(ATTEMPTS):
        try:
            current = store.get(key)
        except NotFound:
            return False
        bare = adopt.without_finalizer(current.body)
        if bare == current.body:
            return False
        try:
            store.update(key, bare, current.version)
            return True
        except Conflict:
            continue
        except NotFound:
            return False
    raise Conflict(key, f"changed {ATTEMPTS} times while its finalizer was being removed")


def report(out: Outcome, *, dry_run: bool) -> str:
    """What a person reads: each address adopted (or to adopt), then what was left and why."""
    plan = out.plan
    verb = "would adopt" if dry_run else "adopted"
    done = plan.adopt if dry_run else out.adopted
    lines = [f"{verb} {len(done)} address(es) Spiderpool's records hold:"]
    lines += [f"  {h.pool:<24} {h.address:<40} {h.pod}" for h in done]
    lines.append(f"already claimed by the same pod: {len(plan.already)}")
    for c in [*plan.conflicts, *out.lost]:
        lines.append(
            f"CONFLICT {c.held.pool}/{c.held.address}: Spiderpool gives it to {c.held.pod}, "
            f"its IPClaim names {c.owner}; left as it is"
        )
    finalized = plan.unfinalize if dry_run else out.unfinalized
    verb = "would remove" if dry_run else "removed"
    lines.append(f"{verb} Spiderpool's finalizer from {len(finalized)} object(s)")
    lines += [f"  {k.kind} {k.namespace + '/' if k.namespace else ''}{k.name}" for k in finalized]
    lines += [f"PROBLEM {p}" for p in plan.problems]
    return "\n".join(lines) + "\n"
