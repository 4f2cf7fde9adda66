"""The objects spidernet writes about itself, not the store's documents: the controller's
Lease (coordination.k8s.io/v1, leader election), the agent's Events on pods (core/v1), and the
Deployment that owns the controller's own objects. `KubeStore` offers them as methods
(`read_lease`, `write_lease`, `post_event`, `own_by_deployment`); they send through its
`KubeApi`. Errors are the store's (NotFound, AlreadyExists, Conflict, Unavailable, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spidernet.control.store.base import AlreadyExists, Key, Stored
from spidernet.control.store.kube_api import KubeApi, json_of


def deployment_owner(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    """The ownerReference to the Deployment `namespace/name` (its uid read now); raises
    NotFound, Unavailable, ..."""
    key = Key("Deployment", namespace, name)
    opts = api.raw()
    doc = api.call(
        key,
        "get",
        lambda: json_of(api.apps.read_namespaced_deployment(name, namespace, **opts)),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
        "uid": str(doc["metadata"]["uid"]),
    }


def owned(meta: dict[str, Any], owner: Mapping[str, Any] | None) -> dict[str, Any]:
    """`meta` with the `owner`'s reference, when one is set."""
    if owner is not None:
        meta["ownerReferences"] = [dict(owner)]
    return meta


def read_lease(api: KubeApi, namespace: str, name: str) -> Stored:
    """The Lease `namespace/name`: its `spec` as the body; raises NotFound."""
    key = Key("Lease", namespace, name)
    coord = api.coordination()
    opts = api.raw()
    doc = api.call(
        key, "get", lambda: json_of(coord.read_namespaced_lease(name, namespace, **opts))
    )
    return Stored(key, dict(doc.get("spec", {})), str(doc["metadata"]["resourceVersion"]))


def write_lease(
    api: KubeApi,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    expected: str | None,
    *,
    owner: Mapping[str, Any] | None,
) -> Stored:
    """Create the Lease (`expected` None; AlreadyExists when taken) or replace it at version
    `expected` (Conflict when someone else wrote it since), owned by `owner` when given."""
    key = Key("Lease", namespace, name)
    coord = api.coordination()
    # A replace writes the whole object: the owner is named again each time.
    meta: dict[str, Any] = owned({"name": name, "namespace": namespace}, owner)
    if expected is not None:
        meta["resourceVersion"] = expected
    body: Any = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": dict(spec),
    }
    opts = api.raw()
    if expected is None:
        doc = api.call(
            key,
            "create",
            lambda: json_of(coord.create_namespaced_lease(namespace, body, **opts)),
        )
    else:
        doc = api.call(
            key,
            "update",
            lambda: json_of(coord.replace_namespaced_lease(name, namespace, body, **opts)),
        )
    return Stored(key, dict(doc.get("spec", {})), str(doc["metadata"]["resourceVersion"]))


def post_event(api: KubeApi, namespace: str, event: Mapping[str, Any]) -> int:
    """Create `event` (control/model/events.py) in `namespace`; when one of its name
    exists, merge-patch it instead: a count one higher, `event`'s message and
    lastTimestamp. The count written.
    Never holds back other requests when the API server does not answer (an Event is
    worth less than an allocation)."""
    name = str(event["metadata"]["name"])
    key = Key("Event", namespace, name)
    body: Any = dict(event)  # the client takes JSON as it is
    opts = api.raw()
    core = api.core
    try:
        api.send(
            key,
            "create",
            lambda: json_of(core.create_namespaced_event(namespace, body, **opts)),
            holds=False,
        )
        return 1
    except AlreadyExists:
        pass
    current = json_of(
        api.send(
            key,
            "get",
            lambda: core.read_namespaced_event(name, namespace, **opts),
            holds=False,
        )
    )
    count = int(current.get("count") or 1) + 1 if isinstance(current, dict) else 2
    patch = {
        "count": count,
        "lastTimestamp": event["lastTimestamp"],
        "message": event["message"],
    }
    api.send(
        key,
        "patch",
        lambda: json_of(core.patch_namespaced_event(name, namespace, patch, **opts)),
        holds=False,
    )
    return count
