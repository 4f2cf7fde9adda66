"""Kubernetes Events the agent writes on a Pod whose allocation failed (pure: the reason for
a CNI error, and the core/v1 Event document).

`kubectl describe pod` lists them under "Events" (it finds them by the pod's uid), and
`kubectl get events` shows them beside the kubelet's own "FailedCreatePodSandBox". One
Event per pod and reason: a kubelet that retries the sandbox makes its count go up instead
of writing a new one each time, as the Kubernetes event recorder does.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

COMPONENT = "spidernet-agent"
REPORTER = "spidernet.io/agent"

# The CNI codes of spidernet-ipam (cni/errors.py) worth a word on the pod; the others
# (try again later, internal) say the agent or the API server is in trouble, not the pod's
# network, and the pod's sandbox error already carries them.
REASONS = {
    7: "InvalidIPAMConfig",
    110: "NoIPPool",
    111: "IPPoolExhausted",
    112: "IPConflict",
    113: "GatewayUnreachable",
}
AUTO_POOL_NOT_READY = "AutoPoolNotReady"
MAX_MESSAGE = 1024  # the API server refuses an Event message over 1 KiB


def failure_reason(code: int, *, waiting: bool = False) -> str | None:
    """The Event reason for an ADD that failed with CNI error `code`, or None when the
    failure is not the pod's to hear about. `waiting`: the pod's SpiderSubnet auto pool
    was still being made or sized when the wait ended."""
    if waiting and code in (110, 111):
        return AUTO_POOL_NOT_READY
    return REASONS.get(code)


def event_name(pod_name: str, pod_uid: str, reason: str) -> str:
    """One name per pod (by uid) and reason: a DNS subdomain of at most 253 characters."""
    digest = hashlib.sha256(f"{pod_uid}/{reason}".encode()).hexdigest()[:16]
    return f"{pod_name[:200]}.{digest}"


def _time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_event(  # noqa: PLR0917 - the fields of one Event
    namespace: str, name: str, uid: str, reason: str, message: str, node: str, now: datetime
) -> dict[str, Any]:
    """A Warning Event on the Pod `namespace/name` (uid `uid`, when known), from the agent of
    `node`, first and last seen `now` (UTC)."""
    involved: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": namespace,
        "name": name,
    }
    if uid:
        involved["uid"] = uid
    at = _time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(name, uid, reason), "namespace": namespace},
        "involvedObject": involved,
        "type": "Warning",
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": REPORTER,
        "reportingInstance": node,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }


CONTROLLER = "spidernet-controller"
POOL_API_VERSION = "spiderpool.spidernet.io/v2beta1"
# Events about cluster-scoped objects live here (as the Kubernetes event recorder puts them).
CLUSTER_EVENTS_NAMESPACE = "default"


def pool_event(pool: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    """A Normal Event on the SpiderIPPool `pool` from the controller (one per message)."""
    digest = hashlib.sha256(f"{pool}/{reason}/{message}".encode()).hexdigest()[:16]
    at = _time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pool[:200]}.{digest}", "namespace": CLUSTER_EVENTS_NAMESPACE},
        "involvedObject": {"apiVersion": POOL_API_VERSION, "kind": "SpiderIPPool", "name": pool},
        "type": "Normal",
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": CONTROLLER},
        "reportingComponent": "spidernet.io/controller",
        "reportingInstance": CONTROLLER,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }
