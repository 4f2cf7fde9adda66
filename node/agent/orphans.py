"""The embedded store's garbage collector: addresses whose sandbox is gone without a DEL.

A runtime that removes a container without calling DEL (podman whose cleanup process
failed, a node whose runtime state was wiped) leaves its addresses allocated for ever: with
the embedded store there is no API server to say the pod is gone. What does say it is the
kernel: every endpoint records the identity (DEV:INODE) of its sandbox's network namespace as
the ADD's caller saw it (`spidernet.io/netns-id`), and a namespace that no process, bind
mount or open descriptor on the host holds any more (node/netns.py `live_identities`) can
never be entered again. Such an endpoint is an orphan once it has been seen gone for the
grace period; its addresses are then released exactly as a DEL would.

Deliberately conservative: an endpoint without a recorded identity (written before this was
recorded, or an ADD without a namespace) is never judged; a StatefulSet's pod, whose address
outlives its sandboxes, is kept; an identity that the kernel reuses for a new namespace keeps
the old endpoint (a missed reclaim, never a wrong one). The order of a pass guarantees that an
endpoint created meanwhile is never taken: endpoints are listed before the host is scanned,
and each release is a commit conditional on the version that was judged.

This module plans (pure); the IPAM core lists, scans and releases (ipam.py `collect`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spidernet.control.store.base import Key, Stored

from . import endpoints as ep

DEFAULT_INTERVAL_S = 60.0
DEFAULT_GRACE_S = 120.0
HISTORY = 200

LIVE = "live"
GONE = "gone"  # seen gone, still within the grace period
ORPHAN = "orphan"
KEPT = "kept"  # not judged (no identity recorded, or a StatefulSet's pod)


@dataclass(frozen=True)
class Verdict:
    """What the collector thinks of one endpoint of this node, and why."""

    key: Key
    container: str
    netns: str
    netns_id: str
    addresses: tuple[str, ...]
    state: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": f"{self.key.namespace}/{self.key.name}",
            "container": self.container,
            "netns": self.netns,
            "netnsID": self.netns_id,
            "addresses": list(self.addresses),
            "state": self.state,
            "reason": self.reason,
        }


@dataclass
class Collector:
    """The collector's memory between passes: since when each endpoint's namespace has been
    seen gone (monotonic seconds), and what it released (wall-clock seconds, newest last)."""

    grace_s: float = DEFAULT_GRACE_S
    interval_s: float = DEFAULT_INTERVAL_S
    gone_since: dict[Key, float] = field(default_factory=dict)
    released: collections.deque[tuple[float, Verdict]] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY)
    )

    def judge(
        self,
        endpoints: Iterable[Stored],
        *,
        node: str,
        live: frozenset[str],
        now: float,
        stateful: Callable[[Mapping[str, Any]], bool],
        grace_s: float | None = None,
    ) -> list[Verdict]:
        """A verdict for each endpoint of `node`, remembering when a namespace was first
        seen gone (and forgetting endpoints that are no longer listed or gone)."""
        grace = self.grace_s if grace_s is None else grace_s
        verdicts: list[Verdict] = []
        seen: set[Key] = set()
        for obj in endpoints:
            doc = obj.body
            if doc.get("status", {}).get("current", {}).get("node") != node:
                continue
            state, reason = self._state(obj, live, now, grace, stateful)
            if state in (GONE, ORPHAN):
                seen.add(obj.key)
            addresses = tuple(
                str(entry[fam])
                for entry in ep.entries_of(doc)
                for fam in ("ipv4", "ipv6")
                if entry.get(fam)
            )
            verdicts.append(
                Verdict(
                    key=obj.key,
                    container=ep.container_of(doc),
                    netns=ep.netns_of(doc),
                    netns_id=ep.netns_id_of(doc),
                    addresses=addresses,
                    state=state,
                    reason=reason,
                )
            )
        for key in set(self.gone_since) - seen:
            del self.gone_since[key]
        return verdicts

    def _state(
        self,
        obj: Stored,
        live: frozenset[str],
        now: float,
        grace: float,
        stateful: Callable[[Mapping[str, Any]], bool],
    ) -> tuple[str, str]:
        doc = obj.body
        ident = ep.netns_id_of(doc)
        path = ep.netns_of(doc) or "no path"
        if not ident:
            return KEPT, "no network namespace identity recorded: not judged"
        if stateful(doc):
            return KEPT, "a StatefulSet's pod keeps its address across sandboxes"
        if ident in live:
            return LIVE, f"network namespace {ident} ({path}) is held on this host"
        since = self.gone_since.setdefault(obj.key, now)
        gone_for = now - since
        where = (
            f"network namespace {ident} ({path}) is held by no process, mount or "
            f"descriptor on this host, for {gone_for:.0f} s"
        )
        if gone_for >= grace:
            return ORPHAN, f"{where} (grace {grace:.0f} s): released"
        return GONE, f"{where}; released after {grace:.0f} s"

    def remember(self, when: float, verdict: Verdict) -> None:
        """Record a release (wall-clock `when`) and forget the endpoint's first sighting."""
        self.released.append((when, verdict))
        self.gone_since.pop(verdict.key, None)
