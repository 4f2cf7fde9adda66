"""Documents → resource records: the strict envelope (apiVersion, kind, metadata) and
dispatch to each kind's decoder, then the rules of `rules.py` on the record.

Syntax problems of every field are reported together; rule violations follow once the
document reads cleanly (as Kubernetes runs schema validation before its webhooks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from spidernet.control.model import rules
from spidernet.control.model.decode_ipam import (
    ADDRESS_FIELDS,
    POOL_FIELDS,
    RESERVED_FIELDS,
    decode_pool,
    decode_reserved,
    decode_subnet,
)
from spidernet.control.model.decode_node import (
    COORDINATOR_FIELDS,
    ENDPOINT_STATUS_FIELDS,
    decode_coordinator,
    decode_endpoint,
)
from spidernet.control.model.errors import Collector
from spidernet.control.model.fields import Fields, Meta
from spidernet.control.model.labels import frozen_map
from spidernet.control.model.resources import (
    API_VERSION,
    KINDS,
    Coordinator,
    Endpoint,
    IPPool,
    ReservedIP,
    Resource,
    Subnet,
)

# ObjectMeta's JSON fields. Only name, namespace, labels and annotations are kept; the rest
# are the API server's own (what `kubectl get -o yaml` shows) and are ignored on input.
META_FIELDS = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
_VLAN_GONE = "was removed in Spiderpool v1.0; set the VLAN in the SpiderMultusConfig instead"
# Spec fields Spiderpool had before v1.0 (reference §1.1, §1.5 "Historical"); saved YAML
# from old clusters still carries them, so say what became of them.
RETIRED: dict[str, dict[str, str]] = {
    IPPool.KIND: {"vlan": _VLAN_GONE},
    Subnet.KIND: {"vlan": _VLAN_GONE},
    Coordinator.KIND: {
        "hostRPFilter": "was removed in Spiderpool v1.0 (the node's rp_filter is no longer "
        "set by the coordinator); delete it",
        "detectIPConflict": "was removed in Spiderpool v1.0 (IP conflict detection moved to "
        "the IPAM plugin); delete it",
        "detectGateway": "was removed in Spiderpool v1.0 (gateway detection moved to the IPAM "
        "plugin); delete it",
        "enableVethLinkLocalAddress": "is not a v2beta1 field; use spec.vethLinkAddress",
    },
}
# Kinds whose documents may carry a status (ignored on input except for SpiderEndpoint,
# whose status is its content), as the API server ignores status on a spec write.
_STATUS_KINDS = (IPPool.KIND, Subnet.KIND, Coordinator.KIND, Endpoint.KIND)


# The spec fields each kind accepts (a SpiderEndpoint has none: its status is its content,
# ENDPOINT_STATUS_FIELDS). deploy/chart/crds declares the same (tests/unit/test_crds.py compares).
SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    IPPool.KIND: POOL_FIELDS,
    Subnet.KIND: ADDRESS_FIELDS,
    ReservedIP.KIND: RESERVED_FIELDS,
    Coordinator.KIND: COORDINATOR_FIELDS,
}
_DECODERS: dict[str, Callable[[str, Meta, Fields], Resource]] = {
    IPPool.KIND: decode_pool,
    Subnet.KIND: decode_subnet,
    ReservedIP.KIND: decode_reserved,
    Coordinator.KIND: decode_coordinator,
}


def decode(doc: Mapping[str, Any]) -> Resource:
    """One document as a validated, defaulted record; ValidationError(s) otherwise."""
    raw_meta = doc.get("metadata")
    raw_name = raw_meta.get("name") if isinstance(raw_meta, Mapping) else None
    kind = doc.get("kind")
    c = Collector(
        kind if isinstance(kind, str) and kind else "document",
        raw_name if isinstance(raw_name, str) else "<unnamed>",
    )
    if not isinstance(kind, str) or kind not in KINDS:
        what = f"unknown kind '{kind}'" if isinstance(kind, str) else "is required"
        raise c.error("kind", f"{what}; expected one of {', '.join(KINDS)}")
    if kind == Endpoint.KIND:
        # kubectl's default namespace when a document names none.
        raw_ns = raw_meta.get("namespace") if isinstance(raw_meta, Mapping) else None
        c.namespace = raw_ns if isinstance(raw_ns, str) and raw_ns else "default"
    body = "status" if kind == Endpoint.KIND else "spec"
    allowed: tuple[str, ...] = ("apiVersion", "kind", "metadata", body)
    if kind in _STATUS_KINDS and body == "spec":
        allowed = (*allowed, "status")
    top = Fields(c, doc, "", allowed)
    api = top.string("apiVersion", required=True)
    if api is not None and api != API_VERSION:
        c.add("apiVersion", f"'{api}' is not served; use {API_VERSION}")
    if body == "spec" and top.has("status") and not isinstance(top.raw("status"), Mapping):
        c.add("status", "must be a mapping")
    meta_fields = top.sub("metadata", META_FIELDS)
    if not top.has("metadata"):
        c.add("metadata", "is required")
    name = meta_fields.string("name", required=top.has("metadata")) or ""
    meta_fields.string("namespace")
    meta = Meta(
        frozen_map(meta_fields.string_map("labels")),
        frozen_map(meta_fields.string_map("annotations")),
    )
    record: Resource
    if kind == Endpoint.KIND:
        status = top.sub("status", ENDPOINT_STATUS_FIELDS)
        if not top.has("status"):
            c.add("status", "is required")
        record = decode_endpoint(name, c.namespace, meta, status)
    else:
        # A cluster-scoped object's namespace is dropped, as the API server does.
        spec = top.sub(body, SPEC_FIELDS[kind], RETIRED.get(kind, {}))
        record = _DECODERS[kind](name, meta, spec)
    rules.check(record)
    return record
