"""Leader election on a coordination.k8s.io/v1 Lease: the decision (pure) and its spec.

A controller acts only while it holds the Lease. Each pass it reads the Lease and: creates it
when there is none; renews it when it holds it; takes it over when the holder let it go (no
`holderIdentity`) or did not renew it within `leaseDurationSeconds`; else stands by. Every write
is at the version read, so of two candidates taking over at once the API server lets one win
(the other gets Conflict and stands by). On a clean stop the holder clears `holderIdentity`, so
a standby takes over at its next pass instead of after the lease expires.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_DURATION_S = 15


class Step(enum.Enum):
    """What a candidate does with the Lease it read."""

    CREATE = "create"
    RENEW = "renew"
    TAKE_OVER = "take over"
    STAND_BY = "stand by"


@dataclass(frozen=True)
class LeaseState:
    """A Lease's spec as read."""

    holder: str
    renewed_at: float | None
    duration_s: float
    transitions: int


def state_of(spec: Mapping[str, Any]) -> LeaseState:
    """A Lease spec as a record."""
    renew = spec.get("renewTime")
    at = None
    if isinstance(renew, str) and renew:
        at = datetime.fromisoformat(renew.replace("Z", "+00:00")).timestamp()
    return LeaseState(
        holder=str(spec.get("holderIdentity") or ""),
        renewed_at=at,
        duration_s=float(spec.get("leaseDurationSeconds") or DEFAULT_DURATION_S),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def step(current: LeaseState | None, identity: str, now: float) -> Step:
    """What `identity` does with the Lease `current` (None: there is none)."""
    if current is None:
        return Step.CREATE
    if current.holder == identity:
        return Step.RENEW
    expired = current.renewed_at is None or now > current.renewed_at + current.duration_s
    if not current.holder or expired:
        return Step.TAKE_OVER
    return Step.STAND_BY


def _micro(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def spec_for(
    what: Step, current: LeaseState | None, identity: str, now: float, duration_s: int
) -> dict[str, Any]:
    """The spec to write for `what` (CREATE, RENEW or TAKE_OVER)."""
    transitions = current.transitions if current is not None else 0
    spec: dict[str, Any] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration_s,
        "renewTime": _micro(now),
        "leaseTransitions": transitions + (1 if what is Step.TAKE_OVER else 0),
    }
    if what is not Step.RENEW:
        spec["acquireTime"] = _micro(now)
    return spec


def released(current: LeaseState, now: float) -> dict[str, Any]:
    """The spec a holder writes when it stops: no holder, so a standby takes over at once."""
    return {
        "leaseDurationSeconds": int(current.duration_s),
        "renewTime": _micro(now),
        "leaseTransitions": current.transitions,
    }
