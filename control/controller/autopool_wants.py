"""SpiderSubnet auto pools: which pools each application asks for (pure; autopool.py plans
them). An application's pod template names its subnets and NICs (`ipam.spidernet.io/subnet`
or `subnets`), its pool size (`ipam.spidernet.io/ippool-ip-number`: "+N" replicas + N, "N"
exactly N, absent replicas + 1) and whether its pools go with it
(`ipam.spidernet.io/ippool-reclaim`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from spidernet.control.allocator.autopools import (
    ANNO_IPPOOL_IP_NUMBER,
    ANNO_IPPOOL_RECLAIM,
    APP_KINDS,
    subnet_wants,
)
from spidernet.control.allocator.errors import AllocationError
from spidernet.control.allocator.request import AppRef, controller_ref
from spidernet.control.errors import ControlError

# Spiderpool's `clusterSubnetAutoPoolDefaultRedundantIPNumber` (Helm `defaultRedundantIPNumber`).
DEFAULT_REDUNDANT = 1
NAME_LIMIT = 253
_NUMBER = re.compile(r"^(\+?)(\d{1,6})$")


@dataclass(frozen=True)
class Application:
    """An application as read: who it is, how many pods it wants, its template annotations."""

    ref: AppRef
    replicas: int
    annotations: Mapping[str, str]


def application_of(kind: str, body: Mapping[str, Any]) -> Application | None:
    """The application of a Deployment / ReplicaSet / StatefulSet / DaemonSet document; None
    for a ReplicaSet that a controller (a Deployment) owns: the owner is the application."""
    if kind not in APP_KINDS:
        return None
    meta = body.get("metadata") or {}
    if kind == "ReplicaSet" and controller_ref(meta, "") is not None:
        return None
    spec = body.get("spec") or {}
    if kind == "DaemonSet":
        replicas = (body.get("status") or {}).get("desiredNumberScheduled", 0)
    else:
        replicas = spec.get("replicas", 1)
    template = (spec.get("template") or {}).get("metadata") or {}
    annotations = template.get("annotations") or {}
    ref = AppRef(
        api_version=str(body.get("apiVersion") or "apps/v1"),
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
    )
    return Application(
        ref,
        replicas if isinstance(replicas, int) and replicas >= 0 else 0,
        {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {},
    )


class BadAnnotation(ControlError, ValueError):
    """An application's annotation cannot be used; the message names it."""


def pool_size(app: Application) -> int:
    """How many addresses the application's pool holds (per NIC and family)."""
    text = app.annotations.get(ANNO_IPPOOL_IP_NUMBER)
    if text is None:
        return app.replicas + DEFAULT_REDUNDANT
    m = _NUMBER.match(text.strip())
    if m is None:
        raise BadAnnotation(
            f"invalid annotation {ANNO_IPPOOL_IP_NUMBER}={text!r} of {app.ref.describe}: "
            'expected "N" (a fixed size) or "+N" (replicas plus N)'
        )
    flexible, number = m.group(1) == "+", int(m.group(2))
    if not flexible and number == 0:
        raise BadAnnotation(
            f"invalid annotation {ANNO_IPPOOL_IP_NUMBER}={text!r} of {app.ref.describe}: "
            "a fixed size must be at least 1"
        )
    return app.replicas + number if flexible else number


def reclaim_of(app: Application) -> bool:
    """Whether the application's pools go with it (`ipam.spidernet.io/ippool-reclaim`)."""
    text = app.annotations.get(ANNO_IPPOOL_RECLAIM, "true").strip().lower()
    if text not in ("true", "false"):
        raise BadAnnotation(
            f"invalid annotation {ANNO_IPPOOL_RECLAIM}={text!r} of {app.ref.describe}: "
            'expected "true" or "false"'
        )
    return text == "true"


def pool_name(app: AppRef, interface: str, version: int) -> str:
    """Spiderpool's auto pool name: `auto4-web-eth0-1a2b3` (lower case, at most 253)."""
    tail = app.uid.rsplit("-", 1)[-1][:5]
    name = f"auto{version}-{app.name}-{interface}-{tail}".lower()
    return name[:NAME_LIMIT].rstrip("-.")


@dataclass(frozen=True)
class Want:
    """One pool an application asks for."""

    app: Application
    interface: str
    version: int
    subnet: str
    size: int
    reclaim: bool

    @property
    def name(self) -> str:
        return pool_name(self.app.ref, self.interface, self.version)


def wants_of(apps: Iterable[Application]) -> tuple[list[Want], list[str]]:
    """The pools the applications ask for, and why some cannot be served."""
    out: list[Want] = []
    problems: list[str] = []
    for app in sorted(apps, key=lambda a: (a.ref.namespace, a.ref.name, a.ref.kind)):
        try:
            asked = subnet_wants(app.annotations)
            if asked is None:
                continue
            size, reclaim = pool_size(app), reclaim_of(app)
        except AllocationError as e:
            problems.append(f"{app.ref.describe}: {e.message}")
            continue
        except BadAnnotation as e:
            problems.append(str(e))
            continue
        for nic in asked[1]:
            for version in (4, 6):
                if nic.subnet(version):
                    out.append(
                        Want(app, nic.interface, version, nic.subnet(version), size, reclaim)
                    )
    return out, problems
