"""The Kubernetes store: the `Store` contract on a kube-apiserver, through the official client.

Where documents live:
- Spiderpool's six kinds are objects of their CRDs (deploy/chart/crds, spiderpool.spidernet.io/
  v2beta1), cluster-scoped or namespaced as the CRD says; the body is the Kubernetes document.
  The store fills `apiVersion`, `kind`, `metadata.name` (and `metadata.namespace`) from the key
  and refuses a body that names another; a read gives the object as the API server holds it
  (with the defaults its schema fills) minus the server's bookkeeping (`resourceVersion`, `uid`,
  `generation`, `creationTimestamp`, `managedFields`). A namespaced kind needs its Namespace.
- Every other kind (IPClaim, ...) but the four below is one object of the internal CRD
  `spidernetobjects.internal.spidernet.io` (cluster-scoped): `spec` = {kind, namespace, name,
  body}, the body kept as given (`x-kubernetes-preserve-unknown-fields`). The object's name is a
  readable slug of the key plus 80 bits of its SHA-256 (`object_name`), DNS-1123-safe; labels
  carry the kind and namespace (`label_value`), so `list(kind, namespace)` is one label-selected
  list, filtered again on the exact `spec` fields. An IPClaim is one small object per address:
  `create` is one POST and the API server is the arbiter (409 AlreadyExists), so nodes never
  contend for a shared pool object.
- Kubernetes' own Pod, Namespace, Node (core/v1) and StatefulSet, Deployment, ReplicaSet and
  DaemonSet (apps/v1), which the IPAM core and the controller read, are the cluster's real
  objects, read-only (`BUILTIN_KINDS`): `get`, `list` and `changes` read them (the body keeps
  `metadata.uid`; only `resourceVersion`, the version, and `managedFields` are left out), and
  any write to them raises ReadOnly before anything is sent.

Versions are `metadata.resourceVersion`. `update` and `delete` send the expected one (in the
object, as a delete precondition) and the API server enforces it: 409 is Conflict, 404
NotFound, 400/422 Invalid (writes send `fieldValidation=Strict`, so an unknown field is refused,
not dropped), 410 Expired; connection errors, timeouts, 429 and 5xx are Unavailable.

Status subresource (SpiderIPPool, SpiderSubnet, SpiderCoordinator): the main resource ignores
`status`, so a write whose body's status differs from the stored one takes a second request to
`/status`, at the version the first one returned. The two are not atomic: another writer (or a
watcher) may see the object between them. A create whose status write fails is deleted again;
an update whose status write fails keeps its spec and raises, and the caller's next update,
made at its old version, gets Conflict and re-reads.

`commit`: Kubernetes has no multi-object transaction. A commit of one write is that write. For
more, the store first reads every key and checks the whole sequence (existence, expected
versions) as the embedded store would apply it, raising the first failing write's error before
anything is written: the common failure (an address taken) leaves no trace, not even in
`changes`. Then it applies the writes in order; if one fails (someone wrote in between), it
undoes those already applied, newest first (deletes what it created, puts back the previous
body of what it updated, re-creates what it deleted: a new object, with a new uid) and raises
the original error, with any failed undo as a note. So: all or none on errors; not isolated
(readers and watchers may see the intermediate state, and the undo as events); not crash-safe
(a crash between writes leaves what was written, e.g. claims without an endpoint, for the GC).
A failure after which the write may still have been applied (its answer lost: a read timeout,
a connection cut, a 5xx) undoes nothing: undoing the claims under an endpoint the server did
store would leave it listing addresses nobody holds, which the next ADD would hand out again.
The writes stay, as after a crash, and the error says so in a note. Only a failure known to
have changed nothing (no connection made, the request not sent, 401, 403, 429) is undone.

`changes(kind, since)`: a watch from `since`. The store first lists one object to learn the
current revision `now` (a consistent read), then watches and collects events until one is at
`now` or later, or no event arrives for `watch_idle` seconds, or the server ends the watch after
`watch_timeout`. The next revision is the last event's (a bookmark's when the server sends one):
never past an event not yet seen, so nothing is skipped, but a kind that is quiet while others
write keeps its old position (Kubernetes gives no progress marker on demand). A position older
than the API server's watch cache is 410 Gone: Expired, and the caller lists again, as any
informer does. Revisions are the API server's; the store only compares them (as integers) to
refuse one newer than the server (a replaced cluster) with Expired.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import urllib3.exceptions
import urllib3.response
import urllib3.util
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.store.base import (
    AlreadyExists,
    Conflict,
    Create,
    Delete,
    Event,
    EventType,
    Expired,
    Invalid,
    Key,
    Listing,
    NotFound,
    ReadOnly,
    Stored,
    StoreError,
    Unavailable,
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
_UNAVAILABLE_CODES = frozenset({0, 408})
# Refused before anything was done: unauthenticated, forbidden, too many requests.
_REFUSED_CODES = frozenset({401, 403, 429})


class NotApplied(Unavailable):
    """Unavailable, and known to have changed nothing: no connection was made, the request
    was not sent, or the API server refused it before acting (401, 403, 429). Any other
    Unavailable of a write may have been applied (module docstring, `commit`)."""


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


# How long requests fail at once after one went unanswered (KubeStore._send).
UNANSWERED_HOLD_S = 5.0
# One retry (a pooled connection the server closed, as after its restart), not urllib3's
# three: a request the API server does not answer costs one `timeout` twice at most, and the
# caller's runtime hears error 11 instead of waiting four timeouts. Reads only: urllib3 would
# also resend a PUT or DELETE whose answer was lost, and the resent one, finding the first
# applied, answers 409 or 404, which `commit` would take for a write that did not happen.
RETRY = urllib3.util.Retry(
    total=1, redirect=0, allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"})
)


class KubeStore:
    """A `Store` on the API server `api` reaches (a `kubernetes.client.ApiClient`), with the
    CRDs of deploy/chart/crds installed. Calls block; any number of threads may share the store.

    `timeout`: seconds for each request. `watch_idle`, `watch_timeout`: how `changes` decides it
    has caught up (module docstring). `close()` closes `api` only when `owns_client`.
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        timeout: float = 10.0,
        watch_idle: float = 0.25,
        watch_timeout: int = 2,
        owns_client: bool = False,
    ) -> None:
        self._api = api
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._timeout = timeout
        self._watch_idle = watch_idle
        self._watch_timeout = watch_timeout
        self._owns = owns_client
        self._closed = False
        self._lock = threading.Lock()
        # (until when, why): the API server did not answer a request; others fail at once
        # until then (UNANSWERED_HOLD_S).
        self._unanswered: tuple[float, str] = (0.0, "")
        # The ownerReference the controller's own objects (its Lease, the webhook's Secret)
        # carry, so that deleting its Deployment deletes them (own_by_deployment).
        self.owner: dict[str, Any] | None = None

    @classmethod
    def from_kubeconfig(cls, path: str) -> KubeStore:
        """A store with a client of its own, configured from the kubeconfig at `path`."""
        return cls.connect(path)

    @classmethod
    def connect(
        cls, kubeconfig: str | None = None, *, timeout: float = 10.0, watch_idle: float = 0.25
    ) -> KubeStore:
        """A store with a client of its own: from `kubeconfig`, else `$KUBECONFIG`, else the
        pod's service account when `$KUBERNETES_SERVICE_HOST` is set (in-cluster). `timeout`,
        `watch_idle`: as the constructor's. Raises Unavailable when no configuration is usable."""
        from kubernetes import config

        path = kubeconfig or os.environ.get("KUBECONFIG", "")
        conf = client.Configuration()
        conf.retries = RETRY
        try:
            if path:
                api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=path, client_configuration=conf
                )
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
                api = client.ApiClient(conf)
            else:
                raise Unavailable(None, "no kubeconfig given, no $KUBECONFIG and not in a cluster")
        except (config.ConfigException, OSError, ValueError) as e:
            where = f"kubeconfig '{path}'" if path else "the in-cluster configuration"
            raise Unavailable(None, f"failed to load {where}: {e}") from e
        return cls(api, timeout=timeout, watch_idle=watch_idle, owns_client=True)

    def own_by_deployment(self, namespace: str, name: str) -> None:
        """Have the Lease and the webhook Secret this store creates from now on owned by the
        Deployment `namespace/name` (Kubernetes' garbage collector deletes them with it: a
        `helm uninstall` leaves neither behind). Raises NotFound, Unavailable, ..."""
        key = Key("Deployment", namespace, name)
        opts: dict[str, Any] = {"_request_timeout": self._timeout, "_preload_content": False}
        doc = self._call(
            key,
            "get",
            lambda: _json_of(self._apps.read_namespaced_deployment(name, namespace, **opts)),
        )
        self.owner = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
            "uid": str(doc["metadata"]["uid"]),
        }

    def _owned(self, meta: dict[str, Any]) -> dict[str, Any]:
        """`meta` with the owner's reference, when one is set."""
        if self.owner is not None:
            meta["ownerReferences"] = [dict(self.owner)]
        return meta

    # -- leases (coordination.k8s.io/v1), for the controller's leader election ---------------

    def read_lease(self, namespace: str, name: str) -> Stored:
        """The Lease `namespace/name`: its `spec` as the body; raises NotFound."""
        key = Key("Lease", namespace, name)
        coord = client.CoordinationV1Api(self._api)
        opts: dict[str, Any] = {"_request_timeout": self._timeout, "_preload_content": False}
        doc = self._call(
            key, "get", lambda: _json_of(coord.read_namespaced_lease(name, namespace, **opts))
        )
        return Stored(key, dict(doc.get("spec", {})), str(doc["metadata"]["resourceVersion"]))

    def write_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any], expected: str | None
    ) -> Stored:
        """Create the Lease (`expected` None; AlreadyExists when taken) or replace it at version
        `expected` (Conflict when someone else wrote it since)."""
        key = Key("Lease", namespace, name)
        coord = client.CoordinationV1Api(self._api)
        # A replace writes the whole object: the owner is named again each time.
        meta: dict[str, Any] = self._owned({"name": name, "namespace": namespace})
        if expected is not None:
            meta["resourceVersion"] = expected
        body: Any = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": dict(spec),
        }
        opts: dict[str, Any] = {"_request_timeout": self._timeout, "_preload_content": False}
        if expected is None:
            doc = self._call(
                key,
                "create",
                lambda: _json_of(coord.create_namespaced_lease(namespace, body, **opts)),
            )
        else:
            doc = self._call(
                key,
                "update",
                lambda: _json_of(coord.replace_namespaced_lease(name, namespace, body, **opts)),
            )
        return Stored(key, dict(doc.get("spec", {})), str(doc["metadata"]["resourceVersion"]))

    # -- events (core/v1), the agent's word on a pod --------------------------------------

    def post_event(self, namespace: str, event: Mapping[str, Any]) -> int:
        """Create `event` (control/model/events.py) in `namespace`; when one of its name
        exists, merge-patch it instead: a count one higher, `event`'s message and
        lastTimestamp. The count written.
        Never holds back other requests when the API server does not answer (an Event is
        worth less than an allocation)."""
        name = str(event["metadata"]["name"])
        key = Key("Event", namespace, name)
        body: Any = dict(event)  # the client takes JSON as it is
        opts: dict[str, Any] = {"_request_timeout": self._timeout, "_preload_content": False}
        try:
            self._send(
                key,
                "create",
                lambda: _json_of(self._core.create_namespaced_event(namespace, body, **opts)),
                holds=False,
            )
            return 1
        except AlreadyExists:
            pass
        current = _json_of(
            self._send(
                key,
                "get",
                lambda: self._core.read_namespaced_event(name, namespace, **opts),
                holds=False,
            )
        )
        count = int(current.get("count") or 1) + 1 if isinstance(current, dict) else 2
        patch = {
            "count": count,
            "lastTimestamp": event["lastTimestamp"],
            "message": event["message"],
        }
        self._send(
            key,
            "patch",
            lambda: _json_of(self._core.patch_namespaced_event(name, namespace, patch, **opts)),
            holds=False,
        )
        return count

    # -- the contract ------------------------------------------------------------------------

    def get(self, key: Key) -> Stored:
        """The object at `key`; raises NotFound."""
        if key.kind in BUILTIN_KINDS:
            return self._get_builtin(key)
        return self._get(key)

    def list(self, kind: str, namespace: str | None = None) -> Listing:
        """Every object of `kind` (in `namespace` when given), ordered by key, and the revision
        they were read at (one consistent list)."""
        res = _resource(kind)
        namespaced = _namespaced(kind)
        if namespaced is not None and namespace is not None and bool(namespace) != namespaced:
            # A cluster-scoped kind has nothing in a namespace, a namespaced one nothing in ''.
            return Listing((), self._now(kind))
        doc = self._call(
            None,
            f"list {kind}",
            self._list_call(kind, namespace),
        )
        decoded = (_decode_as(kind, res, o) for o in doc.get("items", []))
        items = [s for s in decoded if s.key.kind == kind]
        if namespace is not None:
            items = [s for s in items if s.key.namespace == namespace]
        items.sort(key=lambda s: s.key)
        return Listing(tuple(items), str(doc["metadata"]["resourceVersion"]))

    def create(self, key: Key, body: Mapping[str, Any]) -> Stored:
        """Store a new object; raises AlreadyExists."""
        _writable(key)
        return self._create(key, _body(key, body))

    def update(self, key: Key, body: Mapping[str, Any], expected: str) -> Stored:
        """Replace the object if its version is `expected`; raises NotFound or Conflict."""
        _writable(key)
        return self._update(key, _body(key, body), expected)

    def delete(self, key: Key, expected: str | None = None) -> None:
        """Remove the object (at version `expected` when given); raises NotFound or Conflict."""
        _writable(key)
        self._delete(key, expected)

    def commit(self, writes: Sequence[Write]) -> tuple[Stored | None, ...]:
        """Apply the writes in order, all or none on errors (module docstring: checked first,
        undone on a later failure; not isolated, not crash-safe). Returns what each stored."""
        for w in writes:
            _writable(w.key)
        bodies = [None if isinstance(w, Delete) else _body(w.key, w.body) for w in writes]
        if len(writes) == 1:
            return (self._apply(writes[0], bodies[0]),)
        before: dict[Key, Stored | None] = {}
        for w in writes:
            if w.key not in before:
                before[w.key] = self._find(w.key)
        _check(writes, before)
        state = dict(before)
        done: list[tuple[Write, Stored | None, Stored | None]] = []
        results: list[Stored | None] = []
        for write, body in zip(writes, bodies, strict=True):
            try:
                result = self._apply(write, body)
            except Unavailable as e:
                if isinstance(e, NotApplied):
                    self._undo(done, e)
                elif done:
                    e.add_note(
                        f"the {len(done)} write(s) before it are not undone: it may have been "
                        "applied; the GC reclaims what is left"
                    )
                raise
            except Exception as e:
                self._undo(done, e)
                raise
            done.append((write, state[write.key], result))
            state[write.key] = result
            results.append(result)
        return tuple(results)

    def changes(self, kind: str, since: str) -> tuple[tuple[Event, ...], str]:
        """Events of `kind` after revision `since`, oldest first, and the revision to ask from
        next; raises Expired when the API server no longer has `since` or never gave it out."""
        after = _revision(since)
        res = _resource(kind)
        now = self._now(kind)
        if after > int(now):
            raise Expired(None, f"revision {after} is ahead of the API server's {now}")
        if after == int(now):
            return (), since
        events: list[Event] = []
        position = since
        try:
            stream = self._send(None, f"watch {kind}", self._watch_call(kind, since), holds=False)
        except Unavailable as e:
            if not _read_timed_out(e.__cause__):
                raise
            # A loaded API server did not even answer the watch within `watch_idle`: nothing
            # was seen, so nothing is skipped; the caller asks from `since` again next time.
            return (), since
        assert isinstance(stream, urllib3.response.BaseHTTPResponse)  # (_preload_content=False)
        try:
            for event in _lines(stream):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise _watch_error(kind, obj)
                revision = str(obj.get("metadata", {}).get("resourceVersion", ""))
                if event.get("type") != "BOOKMARK":
                    stored = _decode_as(kind, res, obj)
                    if stored.key.kind == kind:
                        events.append(Event(EventType(event["type"]), stored, revision))
                position = revision or position
                if int(position) >= int(now):
                    break
        except urllib3.exceptions.ReadTimeoutError:
            pass  # quiet for `watch_idle` seconds: caught up
        except urllib3.exceptions.HTTPError as e:
            raise Unavailable(None, f"watch {kind}: {e}") from e
        finally:
            stream.close()
            stream.release_conn()
        return tuple(events), position

    def close(self) -> None:
        """Refuse later calls (ValueError); close the client if the store owns it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._owns:
            self._api.close()  # type: ignore[no-untyped-call]  # ApiClient.close: no annotations

    def __enter__(self) -> KubeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- single writes -----------------------------------------------------------------------

    def _apply(self, write: Write, body: Doc | None) -> Stored | None:
        if isinstance(write, Create):
            assert body is not None
            return self._create(write.key, body)
        if isinstance(write, Update):
            assert body is not None
            return self._update(write.key, body, write.expected)
        self._delete(write.key, write.expected)
        return None

    def _get(self, key: Key) -> Stored:
        res, namespace, name = _place(key)
        kw = _where(res, namespace) | {"_request_timeout": self._timeout}
        doc = self._call(
            key, "get", lambda: self._custom_call("get", res, namespace)(**kw, name=name)
        )
        return _decoded_at(key, res, doc)

    def _get_builtin(self, key: Key) -> Stored:
        kind = BUILTIN_KINDS[key.kind]
        if kind.namespaced != bool(key.namespace):
            raise NotFound(key, "not found")
        api = self._core if kind.api_version == "v1" else self._apps
        timeout = {"_request_timeout": self._timeout, "_preload_content": False}
        if kind.namespaced:
            read = getattr(api, f"read_namespaced_{kind.stem}")
            doc = self._call(key, "get", lambda: _json_of(read(key.name, key.namespace, **timeout)))
        else:
            read = getattr(api, f"read_{kind.stem}")
            doc = self._call(key, "get", lambda: _json_of(read(key.name, **timeout)))
        return _decode_builtin(key.kind, doc)

    def _find(self, key: Key) -> Stored | None:
        try:
            return self._get(key)
        except NotFound:
            return None

    def _create(self, key: Key, body: Doc) -> Stored:
        res, namespace, name = _place(key)
        doc = _encode(key, res, name, body)
        kw = _where(res, namespace) | {"_request_timeout": self._timeout}
        created = self._call(
            key,
            "create",
            lambda: self._custom_call("create", res, namespace)(
                **kw, body=doc, field_validation="Strict"
            ),
        )
        if not _status_differs(res, doc, created):
            return _decoded_at(key, res, created)
        try:
            return _decoded_at(key, res, self._write_status(key, res, namespace, doc, created))
        except StoreError:
            # Left for the caller to see when this fails too; the status error says why.
            with contextlib.suppress(StoreError):
                self._delete(key, str(created["metadata"]["resourceVersion"]))
            raise

    def _update(self, key: Key, body: Doc, expected: str) -> Stored:
        res, namespace, name = _place(key)
        doc = _encode(key, res, name, body)
        doc["metadata"]["resourceVersion"] = expected
        kw = _where(res, namespace) | {"_request_timeout": self._timeout}
        replaced = self._call(
            key,
            "update",
            lambda: self._custom_call("replace", res, namespace)(
                **kw, name=name, body=doc, field_validation="Strict"
            ),
        )
        if _status_differs(res, doc, replaced):
            replaced = self._write_status(key, res, namespace, doc, replaced)
        return _decoded_at(key, res, replaced)

    def _write_status(
        self, key: Key, res: Resource, namespace: str | None, doc: Doc, current: Doc
    ) -> Doc:
        """PUT `doc`'s status over `current` (at its version) to the status subresource."""
        sent = copy.deepcopy(current)
        if "status" in doc:
            sent["status"] = doc["status"]
        else:
            sent.pop("status", None)
        kw = _where(res, namespace) | {"_request_timeout": self._timeout}
        return self._call(
            key,
            "update status",
            lambda: self._custom_call("replace_status", res, namespace)(
                **kw, name=sent["metadata"]["name"], body=sent, field_validation="Strict"
            ),
        )

    def _delete(self, key: Key, expected: str | None) -> None:
        res, namespace, name = _place(key)
        options = client.V1DeleteOptions(
            preconditions=None
            if expected is None
            else client.V1Preconditions(resource_version=expected)
        )
        kw = _where(res, namespace) | {"_request_timeout": self._timeout}
        self._call(
            key,
            "delete",
            lambda: self._custom_call("delete", res, namespace)(**kw, name=name, body=options),
        )

    def _undo(
        self, done: Sequence[tuple[Write, Stored | None, Stored | None]], error: Exception
    ) -> None:
        """Reverse the applied writes of a failed commit, newest first; failures become notes
        on `error`."""
        for write, before, after in reversed(done):
            try:
                if isinstance(write, Create):
                    assert after is not None
                    self._delete(write.key, after.version)
                elif isinstance(write, Update):
                    assert before is not None
                    assert after is not None
                    self._update(write.key, dict(before.body), after.version)
                else:
                    assert before is not None
                    self._create(write.key, dict(before.body))
            except Exception as e:  # reported on the original error
                error.add_note(f"undo of {type(write).__name__.lower()} {write.key} failed: {e}")

    # -- requests ----------------------------------------------------------------------------

    def _custom_call(
        self, verb: str, res: Resource, namespace: str | None
    ) -> Callable[..., object]:
        """The CustomObjectsApi method for `verb` on `res` (namespaced when `namespace`)."""
        scope = "namespaced" if namespace is not None else "cluster"
        suffix = "_status" if verb == "replace_status" else ""
        verb = verb.removesuffix("_status")
        method: Callable[..., object] = getattr(
            self._custom, f"{verb}_{scope}_custom_object{suffix}"
        )
        return method

    def _lister(self, kind: str, namespace: str | None, kw: dict[str, Any]) -> Callable[[], object]:
        """A list (or, with watch=True, a watch) of `kind`'s objects, in `namespace` when given:
        a label-selected list of internal objects, or of a Spiderpool kind's CRD."""
        if kind in BUILTIN_KINDS:
            return self._builtin_lister(BUILTIN_KINDS[kind], namespace, kw)
        res = _resource(kind)
        if res is INTERNAL:
            selector = _selector(kind, namespace)
            return lambda: self._custom.list_cluster_custom_object(
                res.group, res.version, res.plural, label_selector=selector, **kw
            )
        if res.namespaced and namespace is not None:
            return lambda: self._custom.list_namespaced_custom_object(
                res.group, res.version, namespace, res.plural, **kw
            )
        if res.namespaced:
            return lambda: self._custom.list_custom_object_for_all_namespaces(
                res.group, res.version, res.plural, **kw
            )
        return lambda: self._custom.list_cluster_custom_object(
            res.group, res.version, res.plural, **kw
        )

    def _builtin_lister(
        self, kind: Builtin, namespace: str | None, kw: dict[str, Any]
    ) -> Callable[[], object]:
        """A list (or watch) of one of Kubernetes' own kinds: the raw JSON (a list), or the
        raw stream (a watch, which asks for `_preload_content=False` itself)."""
        api = self._core if kind.api_version == "v1" else self._apps
        args: tuple[str, ...] = ()
        if kind.namespaced and namespace is not None:
            method = getattr(api, f"list_namespaced_{kind.stem}")
            args = (namespace,)
        elif kind.namespaced:
            method = getattr(api, f"list_{kind.stem}_for_all_namespaces")
        else:
            method = getattr(api, f"list_{kind.stem}")
        if kw.get("watch"):
            return lambda: method(*args, **kw)
        return lambda: _json_of(method(*args, **kw, _preload_content=False))

    def _list_call(self, kind: str, namespace: str | None) -> Callable[[], object]:
        return self._lister(kind, namespace, {"_request_timeout": self._timeout})

    def _now(self, kind: str) -> str:
        """The API server's current revision, from a consistent list of at most one object."""
        call = self._lister(kind, None, {"limit": 1, "_request_timeout": self._timeout})
        return str(self._call(None, f"list {kind}", call)["metadata"]["resourceVersion"])

    def _watch_call(self, kind: str, since: str) -> Callable[[], object]:
        kw = {
            "watch": True,
            "resource_version": since,
            "allow_watch_bookmarks": True,
            "timeout_seconds": self._watch_timeout,
            "_preload_content": False,
            "_request_timeout": (self._timeout, self._watch_idle),
        }
        return self._lister(kind, None, kw)

    def _call(self, key: Key | None, doing: str, call: Callable[[], object]) -> Doc:
        """The object `call()` answers, with the client's errors turned into store errors."""
        answer = self._send(key, doing, call)
        if not isinstance(answer, dict):
            raise Unavailable(key, f"{doing}: the API server answered {type(answer).__name__}")
        return answer

    def _send(
        self, key: Key | None, doing: str, call: Callable[[], object], *, holds: bool = True
    ) -> object:
        """`call()` with the client's errors as store errors. A request the API server did not
        answer (refused, reset, timed out) makes the next ones fail at once for
        `UNANSWERED_HOLD_S`: an ADD that needs several requests fails after one timeout, not
        one per request, and a partitioned agent answers its runtime within one timeout.
        `holds=False`: a watch, whose short read timeout only means nothing happened."""
        if self._closed:
            raise ValueError("store is closed")
        until, why = self._unanswered
        if holds and time.monotonic() < until:
            raise NotApplied(
                key, f"{doing}: not sent, the API server did not answer just before: {why}"
            )
        try:
            return call()
        except ApiException as e:
            raise _translate(e, key, doing) from e
        except urllib3.exceptions.HTTPError as e:
            if holds:
                self._unanswered = (time.monotonic() + UNANSWERED_HOLD_S, str(e))
            kind = NotApplied if _never_connected(e) else Unavailable
            raise kind(key, f"{doing}: {e}") from e


# -- mapping between keys, bodies and objects -----------------------------------------------------


def _never_connected(error: BaseException | None) -> bool:
    """No connection was made, so no request reached the server (also when urllib3's
    retries wrapped the error in MaxRetryError)."""
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        error = error.reason
    return isinstance(
        error, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


def _read_timed_out(error: BaseException | None) -> bool:
    """A read timeout, also when urllib3's retries wrapped it in MaxRetryError."""
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        error = error.reason
    return isinstance(error, urllib3.exceptions.ReadTimeoutError)


def _resource(kind: str) -> Resource:
    return SPIDER_KINDS.get(kind, INTERNAL)


def _namespaced(kind: str) -> bool | None:
    """Whether `kind` is namespaced on the API server (None: an internal object's kind, which
    may be either)."""
    if kind in BUILTIN_KINDS:
        return BUILTIN_KINDS[kind].namespaced
    res = _resource(kind)
    return None if res is INTERNAL else res.namespaced


def _writable(key: Key) -> None:
    """Raise ReadOnly for the cluster's own kinds."""
    kind = BUILTIN_KINDS.get(key.kind)
    if kind is not None:
        raise ReadOnly(
            key,
            f"read-only: the cluster's own {kind.api_version} {key.kind}, which spidernet reads "
            "and never writes in Kubernetes mode",
        )


def _json_of(response: object) -> object:
    """The JSON document of a raw (`_preload_content=False`) response."""
    assert isinstance(response, urllib3.response.BaseHTTPResponse)
    try:
        doc: object = json.loads(response.data)
    finally:
        response.release_conn()  # (back to the pool; the body is read)
    return doc


def _decode_builtin(kind: str, obj: Mapping[str, Any]) -> Stored:
    """A builtin object as a stored document (list items carry no kind: it is filled in)."""
    meta = obj.get("metadata", {})
    body = dict(obj)
    body["apiVersion"] = BUILTIN_KINDS[kind].api_version
    body["kind"] = kind
    body["metadata"] = {k: v for k, v in meta.items() if k not in BUILTIN_BOOKKEEPING}
    key = Key(kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
    return Stored(key, body, str(meta.get("resourceVersion", "")))


def _decode_as(kind: str, res: Resource, obj: Mapping[str, Any]) -> Stored:
    """An object of a list or watch of `kind` as a stored document."""
    if kind in BUILTIN_KINDS:
        return _decode_builtin(kind, obj)
    return _decode(res, obj)


def _place(key: Key) -> tuple[Resource, str | None, str]:
    """The resource, Kubernetes namespace (None: cluster-scoped) and object name of `key`."""
    res = _resource(key.kind)
    if res is INTERNAL:
        return res, None, object_name(key)
    if res.namespaced and not key.namespace:
        raise ValueError(f"{key}: {key.kind} is namespaced; the key needs a namespace")
    if not res.namespaced and key.namespace:
        raise ValueError(f"{key}: {key.kind} is cluster-scoped; the key's namespace must be ''")
    return res, key.namespace or None, key.name


def _where(res: Resource, namespace: str | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"group": res.group, "version": res.version, "plural": res.plural}
    if namespace is not None:
        kw["namespace"] = namespace
    return kw


def _selector(kind: str, namespace: str | None) -> str:
    selector = f"{LABEL_KIND}={label_value(kind)}"
    if namespace is not None:
        selector += f",{LABEL_NAMESPACE}={label_value(namespace)}"
    return selector


def _body(key: Key, body: Mapping[str, Any]) -> Doc:
    """A private copy of `body`, checked as the embedded store checks it (TypeError or
    ValueError when it is not a JSON object)."""
    copied: Doc = json.loads(encode(key, body))
    return copied


def _encode(key: Key, res: Resource, name: str, body: Doc) -> Doc:
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


def _decode(res: Resource, obj: Mapping[str, Any]) -> Stored:
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


def _decoded_at(key: Key, res: Resource, obj: Mapping[str, Any]) -> Stored:
    """`obj` decoded, checked to be the object of `key` (an internal name's hash clash)."""
    stored = _decode(res, obj)
    if stored.key != key:
        raise Conflict(key, f"object {obj['metadata']['name']!r} holds {stored.key}")
    return stored


def _status_differs(res: Resource, sent: Doc, stored: Doc) -> bool:
    return res.status and sent.get("status") != stored.get("status")


def _check(writes: Sequence[Write], before: Mapping[Key, Stored | None]) -> None:
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


def _revision(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a store revision: {text!r}")
    return int(text)


def _lines(stream: urllib3.response.BaseHTTPResponse) -> Iterator[Doc]:
    """The watch events of a streaming response, one JSON object a line."""
    for line in stream:
        if line.strip():
            event: Doc = json.loads(line)
            yield event


def _watch_error(kind: str, status: Mapping[str, Any]) -> StoreError:
    code = status.get("code")
    message = f"watch {kind}: {status.get('message', status)}"
    if code == 410:
        return Expired(None, message)
    return Unavailable(None, message)


def _message(e: ApiException) -> str:
    try:
        status = json.loads(e.body or "")
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return f"{e.status} {e.reason}"


def _reason(e: ApiException) -> str:
    try:
        status = json.loads(e.body or "")
    except ValueError:
        return ""
    return str(status.get("reason", "")) if isinstance(status, dict) else ""


def _translate(e: ApiException, key: Key | None, doing: str) -> StoreError:
    code = e.status or 0
    if code == 404:
        return NotFound(key, "not found")
    if code == 409:
        if _reason(e) == "AlreadyExists":
            return AlreadyExists(key, "already exists")
        return Conflict(key, _message(e))
    if code == 410:
        return Expired(key, f"{doing}: {_message(e)}")
    if code in (400, 422):
        return Invalid(key, f"{doing}: {_message(e)}")
    if code in _REFUSED_CODES:
        return NotApplied(key, f"{doing}: {_message(e)}")
    if code in _UNAVAILABLE_CODES or code >= 500:
        return Unavailable(key, f"{doing}: {_message(e)}")
    return StoreError(key, f"{doing}: {_message(e)}")


# -- SpiderMultusConfig -> NetworkAttachmentDefinition (spidernet.control.controller.multus) ------

NAD_GROUP = "k8s.cni.cncf.io"
NAD_VERSION = "v1"
NAD_PLURAL = "network-attachment-definitions"


class KubeMultusApi:
    """The few calls the multus reconciler makes, on a KubeStore's client: SpiderMultusConfigs
    and NetworkAttachmentDefinitions as the API server's raw JSON (uid and resourceVersion
    kept, which the store's documents leave out). Errors are the store's (NotFound, Conflict,
    Invalid, Unavailable, ...)."""

    def __init__(self, store: KubeStore) -> None:
        self._store = store

    def _list(self, group: str, version: str, plural: str) -> list[Doc]:
        store = self._store
        doc = store._call(
            None,
            f"list {plural}",
            lambda: store._custom.list_custom_object_for_all_namespaces(
                group, version, plural, _request_timeout=store._timeout
            ),
        )
        return [dict(item) for item in doc.get("items", [])]

    def list_multus_configs(self) -> list[Doc]:
        res = SPIDER_KINDS["SpiderMultusConfig"]
        return self._list(res.group, res.version, res.plural)

    def list_nads(self) -> list[Doc]:
        return self._list(NAD_GROUP, NAD_VERSION, NAD_PLURAL)

    def create_nad(self, doc: Mapping[str, Any]) -> None:
        store = self._store
        meta = doc["metadata"]
        key = Key("NetworkAttachmentDefinition", meta["namespace"], meta["name"])
        store._call(
            key,
            "create",
            lambda: store._custom.create_namespaced_custom_object(
                NAD_GROUP,
                NAD_VERSION,
                meta["namespace"],
                NAD_PLURAL,
                dict(doc),
                _request_timeout=store._timeout,
            ),
        )

    def replace_nad(self, doc: Mapping[str, Any]) -> None:
        """Replace the NAD at `doc["metadata"]["resourceVersion"]` (Conflict when stale)."""
        store = self._store
        meta = doc["metadata"]
        key = Key("NetworkAttachmentDefinition", meta["namespace"], meta["name"])
        store._call(
            key,
            "update",
            lambda: store._custom.replace_namespaced_custom_object(
                NAD_GROUP,
                NAD_VERSION,
                meta["namespace"],
                NAD_PLURAL,
                meta["name"],
                dict(doc),
                _request_timeout=store._timeout,
            ),
        )

    def delete_nad(self, namespace: str, name: str, uid: str) -> None:
        """Delete the NAD, only if it is still the object `uid` (a precondition)."""
        store = self._store
        key = Key("NetworkAttachmentDefinition", namespace, name)
        body: Any = {"preconditions": {"uid": uid}} if uid else None
        store._call(
            key,
            "delete",
            lambda: store._custom.delete_namespaced_custom_object(
                NAD_GROUP,
                NAD_VERSION,
                namespace,
                NAD_PLURAL,
                name,
                body=body,
                _request_timeout=store._timeout,
            ),
        )


# -- the admission webhook's Secret and ValidatingWebhookConfiguration (controller/webhook.py) ----


class KubeAdmissionApi:
    """The calls the webhook makes at start, on a KubeStore's client: its TLS Secret
    (core/v1, `data` decoded from base64) and the ValidatingWebhookConfiguration whose
    caBundle it sets (admissionregistration.k8s.io/v1, raw JSON). Errors are the store's
    (NotFound, AlreadyExists, Conflict, Invalid, Unavailable, ...)."""

    def __init__(self, store: KubeStore) -> None:
        self._store = store

    def _opts(self) -> dict[str, Any]:
        return {"_request_timeout": self._store._timeout, "_preload_content": False}

    def read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        """The Secret's data; raises NotFound."""
        core, key = self._store._core, Key("Secret", namespace, name)
        doc = self._store._call(
            key,
            "get",
            lambda: _json_of(core.read_namespaced_secret(name, namespace, **self._opts())),
        )
        data = doc.get("data") or {}
        return {k: base64.b64decode(v) for k, v in data.items() if isinstance(v, str)}

    def create_secret(
        self, namespace: str, name: str, secret_type: str, data: Mapping[str, bytes]
    ) -> None:
        """Create the Secret; raises AlreadyExists when another writer made it first."""
        core, key = self._store._core, Key("Secret", namespace, name)
        body: Any = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self._store._owned({"name": name, "namespace": namespace}),
            "type": secret_type,
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        self._store._call(
            key,
            "create",
            lambda: _json_of(core.create_namespaced_secret(namespace, body, **self._opts())),
        )

    def read_webhook_configuration(self, name: str) -> Doc:
        """The ValidatingWebhookConfiguration `name` as JSON; raises NotFound."""
        adm = client.AdmissionregistrationV1Api(self._store._api)
        key = Key("ValidatingWebhookConfiguration", "", name)
        return self._store._call(
            key,
            "get",
            lambda: _json_of(adm.read_validating_webhook_configuration(name, **self._opts())),
        )

    def patch_webhook_configuration(self, name: str, ops: Sequence[Mapping[str, Any]]) -> None:
        """Apply the JSON patch `ops` (RFC 6902) to the configuration `name`."""
        adm = client.AdmissionregistrationV1Api(self._store._api)
        key = Key("ValidatingWebhookConfiguration", "", name)
        body: Any = [dict(op) for op in ops]
        self._store._call(
            key,
            "patch",
            lambda: _json_of(
                adm.patch_validating_webhook_configuration(
                    name, body, _content_type="application/json-patch+json", **self._opts()
                )
            ),
        )


# -- the SpiderCoordinator status's CIDR sources (spidernet.control.controller.cidrs_sync) --------

CALICO_GROUP = "crd.projectcalico.org"
CALICO_VERSION = "v1"
CALICO_POOL_PLURAL = "ippools"


class KubeCidrApi:
    """The reads the SpiderCoordinator status needs (ConfigMaps, the kube-controller-manager
    Pods, Calico IPPools, ServiceCIDRs) as the API server's raw JSON, and the status-only
    write. An API the server does not serve (no Calico, no ServiceCIDR API) and a missing
    ConfigMap read as None. Errors are the store's (Conflict, Unavailable, ...)."""

    def __init__(self, store: KubeStore) -> None:
        self._store = store

    def _opts(self) -> dict[str, Any]:
        return {"_request_timeout": self._store._timeout, "_preload_content": False}

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ConfigMap's `data`, or None when there is no such ConfigMap."""
        core, key = self._store._core, Key("ConfigMap", namespace, name)
        try:
            doc = self._store._call(
                key,
                "get",
                lambda: _json_of(core.read_namespaced_config_map(name, namespace, **self._opts())),
            )
        except NotFound:
            return None
        data = doc.get("data") or {}
        return {str(k): str(v) for k, v in data.items()}

    def pods(self, namespace: str, label_selector: str) -> list[Doc]:
        """The Pods of `namespace` that `label_selector` selects."""
        core = self._store._core
        doc = self._store._call(
            None,
            f"list pods in {namespace}",
            lambda: _json_of(
                core.list_namespaced_pod(namespace, label_selector=label_selector, **self._opts())
            ),
        )
        return [dict(item) for item in doc.get("items", [])]

    def calico_pools(self) -> list[Doc] | None:
        """Calico's IPPools, or None when the API server does not serve them."""
        custom = self._store._custom
        try:
            doc = self._store._call(
                None,
                "list Calico IPPools",
                lambda: custom.list_cluster_custom_object(
                    CALICO_GROUP,
                    CALICO_VERSION,
                    CALICO_POOL_PLURAL,
                    _request_timeout=self._store._timeout,
                ),
            )
        except NotFound:
            return None
        return [dict(item) for item in doc.get("items", [])]

    def service_cidrs(self) -> list[Doc] | None:
        """The networking.k8s.io/v1 ServiceCIDRs, or None when the API server does not serve
        them (Kubernetes before 1.33, or the API turned off)."""
        net = client.NetworkingV1Api(self._store._api)
        try:
            doc = self._store._call(
                None,
                "list ServiceCIDRs",
                lambda: _json_of(net.list_service_cidr(**self._opts())),
            )
        except NotFound:
            return None
        return [dict(item) for item in doc.get("items", [])]

    def write_coordinator_status(
        self, name: str, body: Mapping[str, Any], version: str, status: Mapping[str, Any]
    ) -> None:
        """PUT `status` to the SpiderCoordinator's /status at `version` (Conflict when it
        changed since), leaving its spec alone."""
        res = SPIDER_KINDS["SpiderCoordinator"]
        key = Key("SpiderCoordinator", "", name)
        sent: Doc = {
            "apiVersion": res.api_version,
            "kind": "SpiderCoordinator",
            "metadata": {"name": name, "resourceVersion": version},
            "spec": dict(body.get("spec") or {}),
            "status": dict(status),
        }
        store = self._store
        store._call(
            key,
            "update status",
            lambda: store._custom.replace_cluster_custom_object_status(
                res.group, res.version, res.plural, name, sent, _request_timeout=store._timeout
            ),
        )


# -- `spidernet get` on the API server (spidernet.control.cluster_get) ----------------------------


@dataclass(frozen=True)
class RawList:
    """Objects as the API server holds them (metadata whole), and the revision of the list."""

    items: tuple[Doc, ...]
    version: str


@dataclass(frozen=True)
class RawEvent:
    """One change a watch saw: ADDED, MODIFIED or DELETED, and the object then."""

    type: str
    object: Doc


def context_namespace(kubeconfig: str | None = None) -> str:
    """The namespace a namespaced `get` reads without `-n`, as kubectl decides it: the
    kubeconfig's current context's (`kubeconfig`, else `$KUBECONFIG`), in a pod its service
    account's, else `default`."""
    from kubernetes import config

    path = kubeconfig or os.environ.get("KUBECONFIG", "")
    if path:
        try:
            _, current = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError, ValueError):
            return "default"
        return str((current or {}).get("context", {}).get("namespace") or "default")
    with contextlib.suppress(OSError):
        text = Path(SERVICE_ACCOUNT_NAMESPACE).read_text(encoding="utf-8").strip()
        if text:
            return text
    return "default"


WATCH_SECONDS = 300  # how long one watch request of `KubeGetApi.watch` asks to run
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class KubeGetApi:
    """The reads `spidernet get` makes, on a KubeStore's client: Spider* objects as the API
    server's raw JSON (creationTimestamp kept, for AGE), selected by label on the server, and
    a watch of them. Errors are the store's (NotFound, Expired, Unavailable, ...)."""

    def __init__(self, store: KubeStore) -> None:
        self._store = store

    def _lister(
        self, kind: str, namespace: str | None, selector: str | None, kw: dict[str, Any]
    ) -> Callable[[], object]:
        res, custom = SPIDER_KINDS[kind], self._store._custom
        if selector:
            kw = kw | {"label_selector": selector}
        if res.namespaced and namespace is not None:
            return lambda: custom.list_namespaced_custom_object(
                res.group, res.version, namespace, res.plural, **kw
            )
        if res.namespaced:
            return lambda: custom.list_custom_object_for_all_namespaces(
                res.group, res.version, res.plural, **kw
            )
        return lambda: custom.list_cluster_custom_object(res.group, res.version, res.plural, **kw)

    def list(self, kind: str, namespace: str | None, selector: str | None) -> RawList:
        """Every `kind` object (in `namespace` when given and the kind is namespaced) that
        `selector` (a label selector's text) selects."""
        store = self._store
        kw: dict[str, Any] = {"_request_timeout": store._timeout}
        doc = store._call(None, f"list {kind}", self._lister(kind, namespace, selector, kw))
        items = tuple(dict(item) for item in doc.get("items", []))
        return RawList(items, str(doc.get("metadata", {}).get("resourceVersion", "")))

    def get(self, kind: str, namespace: str | None, name: str) -> Doc:
        """The object `name` (in `namespace` for a namespaced kind); raises NotFound."""
        store, res = self._store, SPIDER_KINDS[kind]
        key = Key(kind, namespace or "", name)
        where = _where(res, namespace if res.namespaced else None)
        scope = "namespaced" if res.namespaced else "cluster"
        method = getattr(store._custom, f"get_{scope}_custom_object")
        return store._call(
            key, "get", lambda: method(**where, name=name, _request_timeout=store._timeout)
        )

    def watch(
        self, kind: str, namespace: str | None, selector: str | None, since: str
    ) -> Iterator[RawEvent]:
        """The changes after revision `since`, as they happen, until the API server ends the
        watch (after about five minutes) or the caller stops iterating. Bookmarks are not
        yielded. Raises Expired when `since` is older than the server's watch cache (list
        again), Unavailable when the connection breaks."""
        kw: dict[str, Any] = {
            "watch": True,
            "resource_version": since,
            "timeout_seconds": WATCH_SECONDS,
            "_preload_content": False,
            # The server ends the watch first; a read that outlasts it is a lost connection.
            "_request_timeout": (self._store._timeout, WATCH_SECONDS + 30),
        }
        stream = self._store._send(
            None, f"watch {kind}", self._lister(kind, namespace, selector, kw), holds=False
        )
        assert isinstance(stream, urllib3.response.BaseHTTPResponse)  # (_preload_content=False)
        try:
            for event in _live_lines(stream):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise _watch_error(kind, obj)
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    yield RawEvent(str(event["type"]), dict(obj))
        except urllib3.exceptions.ReadTimeoutError:
            return  # (the caller watches again from the last version it saw)
        except urllib3.exceptions.HTTPError as e:
            raise Unavailable(None, f"watch {kind}: {e}") from e
        finally:
            stream.close()
            stream.release_conn()


def _live_lines(stream: urllib3.response.BaseHTTPResponse) -> Iterator[Doc]:
    """The watch events of a streaming response as each arrives: iterating the response
    itself reads 64 KiB at a time, and a quiet watch would hold back what it has."""
    assert isinstance(stream, urllib3.response.HTTPResponse)
    chunks = stream.read_chunked(decode_content=True) if stream.chunked else stream.stream(1)
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                event: Doc = json.loads(line)
                yield event
