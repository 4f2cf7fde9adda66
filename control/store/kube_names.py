"""Where the Kubernetes store's documents live, as pure data and functions: the resources of
each kind, a key's object name and labels, and the mapping between the store's documents and
the API server's objects (docs/kube-store.md, "Where documents live"). No client, no I/O:
`kube.py` sends what these functions build and decodes what the API server answers with them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spidernet.control.store.base import (
    AlreadyExists,
    Conflict,
    Create,
    Invalid,
    Key,
    NotFound,
    ReadOnly,
    Stored,
    Update,
    Write,
)
from spidernet.control.store.embedded import encode

SPIDER_GROUP = "spiderpool.spidernet.io"
SPIDER_VERSION = "v2beta1"
INTERNAL_GROUP = "internal.spidernet.io"
INTERNAL_VERSION = "v1alpha1"
INTERNAL_KIND = "SpidernetObject"
INTERNAL_PLURAL = "spidernetobjects"
LABEL_KIND = f"{INTERNAL_GROUP}/kind"
LABEL_NAMESPACE = f"{INTERNAL_GROUP}/namespace"
# The metadata the API server writes for itself; a read leaves it out of the body.
BOOKKEEPING = ("resourceVersion", "uid", "generation", "creationTimestamp", "managedFields")

_HASH_HEX = 20  # 80 bits of SHA-256 in an object name
_READABLE_MAX = 200  # + "-" + hash stays under the 253 of a DNS-1123 subdomain
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Resource:
    """Where one kind's objects live on the API server."""

    group: str
    version: str
    plural: str
    namespaced: bool
    status: bool  # has the status subresource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


# As deploy/chart/crds declares them (tests/k8s/test_kube_store.py compares).
SPIDER_KINDS = {
    "SpiderIPPool": Resource(SPIDER_GROUP, SPIDER_VERSION, "spiderippools", False, True),
    "SpiderSubnet": Resource(SPIDER_GROUP, SPIDER_VERSION, "spidersubnets", False, True),
    "SpiderReservedIP": Resource(SPIDER_GROUP, SPIDER_VERSION, "spiderreservedips", False, False),
    "SpiderEndpoint": Resource(SPIDER_GROUP, SPIDER_VERSION, "spiderendpoints", True, False),
    "SpiderCoordinator": Resource(SPIDER_GROUP, SPIDER_VERSION, "spidercoordinators", False, True),
    "SpiderMultusConfig": Resource(
        SPIDER_GROUP, SPIDER_VERSION, "spidermultusconfigs", True, False
    ),
}
INTERNAL = Resource(INTERNAL_GROUP, INTERNAL_VERSION, INTERNAL_PLURAL, False, False)
# Other projects' kinds spidernet reads and never writes (docs/kubevirt.md): KubeVirt's VMs
# and VMIs, whose life a VM's addresses follow, and k8snetworkplumbingwg's IPAMClaims, whose
# status.ips alone the agent writes (kube_gateways.py). Absent CRDs read as no objects.
FOREIGN_KINDS = {
    "VirtualMachine": Resource("kubevirt.io", "v1", "virtualmachines", True, True),
    "VirtualMachineInstance": Resource("kubevirt.io", "v1", "virtualmachineinstances", True, True),
    "IPAMClaim": Resource("k8s.cni.cncf.io", "v1alpha1", "ipamclaims", True, True),
}


@dataclass(frozen=True)
class Builtin:
    """One of Kubernetes' own kinds, read through the typed client as raw JSON."""

    api_version: str  # "v1" (CoreV1Api) or "apps/v1" (AppsV1Api)
    stem: str  # the client's method stem: read_namespaced_<stem>, list_<stem>, ...
    namespaced: bool


# Read-only: the cluster's objects, written by Kubernetes, never by spidernet.
BUILTIN_KINDS = {
    "Pod": Builtin("v1", "pod", True),
    "Namespace": Builtin("v1", "namespace", False),
    "Node": Builtin("v1", "node", False),
    "StatefulSet": Builtin("apps/v1", "stateful_set", True),
    # The applications a SpiderSubnet auto pool belongs to (the controller's autopool.py;
    # the agent follows a pod's ReplicaSet to its Deployment).
    "Deployment": Builtin("apps/v1", "deployment", True),
    "ReplicaSet": Builtin("apps/v1", "replica_set", True),
    "DaemonSet": Builtin("apps/v1", "daemon_set", True),
}
# What a read of a builtin object leaves out of its body.
BUILTIN_BOOKKEEPING = ("resourceVersion", "managedFields")

Doc = dict[str, Any]


def object_name(key: Key) -> str:
    """The internal object's name for `key`: a readable slug of it, then a hash of the exact
    key, so two keys that slug alike still differ (`ipclaim-pool-a-10-0-0-5-<20 hex>`)."""
    exact = json.dumps([key.kind, key.namespace, key.name]).encode()
    digest = hashlib.sha256(exact).hexdigest()[:_HASH_HEX]
    slug = _NOT_SLUG.sub("-", f"{key.kind}-{key.namespace}-{key.name}".lower()).strip("-")
    slug = slug[:_READABLE_MAX].rstrip("-")
    return f"{slug}-{digest}" if slug else digest


def label_value(text: str) -> str:
    """`text` when it is a valid label value, else 'h.' + a hash of it. Selection by label is
    then narrowed on the exact `spec` fields, so a clash only costs a larger list."""
    if len(text) <= 63 and _LABEL_VALUE.fullmatch(text):
        return text
    return "h." + hashlib.sha256(text.encode()).hexdigest()[:40]


def resource_of(kind: str) -> Resource:
    """Where `kind`'s objects live: its Spiderpool (or foreign) CRD, else the internal CRD."""
    return SPIDER_KINDS.get(kind) or FOREIGN_KINDS.get(kind, INTERNAL)


def namespaced_of(kind: str) -> bool | None:
    """Whether `kind` is namespaced on the API server (None: an internal object's kind, which
    may be either)."""
    if kind in BUILTIN_KINDS:
        return BUILTIN_KINDS[kind].namespaced
    res = resource_of(kind)
    return None if res is INTERNAL else res.namespaced


def ensure_writable(key: Key) -> None:
    """Raise ReadOnly for the cluster's own kinds."""
    if key.kind in FOREIGN_KINDS:
        res = FOREIGN_KINDS[key.kind]
        raise ReadOnly(
            key,
            f"read-only: {res.api_version} {key.kind} belongs to another project; spidernet "
            "reads it and never writes it",
        )
    kind = BUILTIN_KINDS.get(key.kind)
    if kind is not None:
        raise ReadOnly(
            key,
            f"read-only: the cluster's own {kind.api_version} {key.kind}, which spidernet reads "
            "and never writes in Kubernetes mode",
        )


def decode_builtin(kind: str, obj: Mapping[str, Any]) -> Stored:
    """A builtin object as a stored document (list items carry no kind: it is filled in)."""
    meta = obj.get("metadata", {})
    body = dict(obj)
    body["apiVersion"] = BUILTIN_KINDS[kind].api_version
    body["kind"] = kind
    body["metadata"] = {k: v for k, v in meta.items() if k not in BUILTIN_BOOKKEEPING}
    key = Key(kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
    return Stored(key, body, str(meta.get("resourceVersion", "")))


def decode_as(kind: str, res: Resource, obj: Mapping[str, Any]) -> Stored:
    """An object of a list or watch of `kind` as a stored document."""
    if kind in BUILTIN_KINDS:
        return decode_builtin(kind, obj)
    return decode_object(res, obj)


def place(key: Key) -> tuple[Resource, str | None, str]:
    """The resource, Kubernetes namespace (None: cluster-scoped) and object name of `key`."""
    res = resource_of(key.kind)
    if res is INTERNAL:
        return res, None, object_name(key)
    if res.namespaced and not key.namespace:
        raise ValueError(f"{key}: {key.kind} is namespaced; the key needs a namespace")
    if not res.namespaced and key.namespace:
        raise ValueError(f"{key}: {key.kind} is cluster-scoped; the key's namespace must be ''")
    return res, key.namespace or None, key.name


def where(res: Resource, namespace: str | None) -> dict[str, Any]:
    """The CustomObjectsApi arguments that name `res` (in `namespace` when not None)."""
    kw: dict[str, Any] = {"group": res.group, "version": res.version, "plural": res.plural}
    if namespace is not None:
        kw["namespace"] = namespace
    return kw


def selector(kind: str, namespace: str | None) -> str:
    """The label selector of the internal objects of `kind` (in `namespace` when given)."""
    selector = f"{LABEL_KIND}={label_value(kind)}"
    if namespace is not None:
        selector += f",{LABEL_NAMESPACE}={label_value(namespace)}"
    return selector


def copied_body(key: Key, body: Mapping[str, Any]) -> Doc:
    """A private copy of `body`, checked as the embedded store checks it (TypeError or
    ValueError when it is not a JSON object)."""
    copied: Doc = json.loads(encode(key, body))
    return copied


def encode_object(key: Key, res: Resource, name: str, body: Doc) -> Doc:
    """The object to send for `key` with `body`."""
    if res is INTERNAL:
        labels = {LABEL_KIND: label_value(key.kind), LABEL_NAMESPACE: label_value(key.namespace)}
        return {
            "apiVersion": res.api_version,
            "kind": INTERNAL_KIND,
            "metadata": {"name": name, "labels": labels},
            "spec": {"kind": key.kind, "namespace": key.namespace, "name": key.name, "body": body},
        }
    doc = dict(body)
    for field, value in (("apiVersion", res.api_version), ("kind", key.kind)):
        if doc.setdefault(field, value) != value:
            raise Invalid(key, f"{field}: {doc[field]!r} does not match the key ({value!r})")
    meta = doc.get("metadata", {})
    if not isinstance(meta, dict):
        raise Invalid(key, "metadata: expected an object")
    meta = dict(meta)
    for field, value in (("name", key.name), ("namespace", key.namespace)):
        if not value:
            continue
        if meta.setdefault(field, value) != value:
            raise Invalid(key, f"metadata.{field}: {meta[field]!r} does not match the key")
    for field in BOOKKEEPING:
        meta.pop(field, None)
    doc["metadata"] = meta
    return doc


def decode_object(res: Resource, obj: Mapping[str, Any]) -> Stored:
    """The stored document of an object the API server returned."""
    meta = obj.get("metadata", {})
    version = str(meta.get("resourceVersion", ""))
    if res is INTERNAL:
        spec = obj.get("spec", {})
        key = Key(
            str(spec.get("kind", "")), str(spec.get("namespace", "")), str(spec.get("name", ""))
        )
        return Stored(key, spec.get("body", {}), version)
    body = dict(obj)
    body["metadata"] = {k: v for k, v in meta.items() if k not in BOOKKEEPING}
    key = Key(str(obj.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", "")))
    return Stored(key, body, version)


def decoded_at(key: Key, res: Resource, obj: Mapping[str, Any]) -> Stored:
    """`obj` decoded, checked to be the object of `key` (an internal name's hash clash)."""
    stored = decode_object(res, obj)
    if stored.key != key:
        raise Conflict(key, f"object {obj['metadata']['name']!r} holds {stored.key}")
    return stored


def status_differs(res: Resource, sent: Doc, stored: Doc) -> bool:
    """Whether `sent`'s status still has to go to `res`'s status subresource."""
    return res.status and sent.get("status") != stored.get("status")


def check_writes(writes: Sequence[Write], before: Mapping[Key, Stored | None]) -> None:
    """Raise the error the first failing write would meet, applying them in order to the
    versions in `before` (None: absent); a written object's new version matches nothing."""
    versions: dict[Key, str | None] = {
        k: None if s is None else s.version for k, s in before.items()
    }
    unknown = "\0written"
    for w in writes:
        version = versions[w.key]
        if isinstance(w, Create):
            if version is not None:
                raise AlreadyExists(w.key, "already exists")
            versions[w.key] = unknown
            continue
        if version is None:
            raise NotFound(w.key, "not found")
        if w.expected is not None and w.expected != version:
            shown = "another" if version == unknown else version
            raise Conflict(w.key, f"version {w.expected} expected, {shown} stored")
        versions[w.key] = unknown if isinstance(w, Update) else None


def parse_revision(text: str) -> int:
    """A store revision (a resourceVersion) as an integer; ValueError when it is none."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a store revision: {text!r}")
    return int(text)
