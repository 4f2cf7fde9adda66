"""The Kubernetes store: the `Store` contract on a kube-apiserver, through the official client.

The modules beside it: kube_names.py (pure: where documents live, keys to objects and back),
kube_api.py (the client, its requests and errors: the one importer of `kubernetes`),
kube_watch.py (`changes`), kube_leases.py (Leases, Events, owners) and the gateways other
callers use on a store's `KubeApi` (kube_gateways.py, kube_get.py).

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
more, the store first reads every key (but that of a first write that creates it, when no other
write touches it: its POST is the check) and checks the whole sequence (existence, expected
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

`changes(kind, since)`: a watch from `since` (kube_watch.py).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from spidernet.control.store import kube_leases as leases
from spidernet.control.store.base import (
    Create,
    Delete,
    Event,
    Key,
    Listing,
    NotFound,
    Stored,
    StoreError,
    Unavailable,
    Update,
    Write,
)
from spidernet.control.store.kube_api import (
    ApiClient,
    KubeApi,
    NotApplied,
    delete_options,
    json_of,
    load_client,
)
from spidernet.control.store.kube_names import (
    BUILTIN_KINDS,
    Doc,
    Resource,
    check_writes,
    copied_body,
    decode_as,
    decode_builtin,
    decoded_at,
    encode_object,
    ensure_writable,
    namespaced_of,
    place,
    resource_of,
    status_differs,
    where,
)
from spidernet.control.store.kube_watch import Closer, changes, current_revision, follow


class KubeStore:
    """A `Store` on the API server `api` reaches (a `kubernetes.client.ApiClient`), with the
    CRDs of deploy/chart/crds installed. Calls block; any number of threads may share the store.

    `timeout`: seconds for each request. `watch_idle`, `watch_timeout`: how `changes` decides it
    has caught up (kube_watch.py). `close()` closes `api` only when `owns_client`.
    `api` (the attribute): the `KubeApi` the store sends through, which the gateways
    (kube_gateways.py, kube_get.py) share.
    """

    def __init__(
        self,
        api: ApiClient,
        *,
        timeout: float = 10.0,
        watch_idle: float = 0.25,
        watch_timeout: int = 2,
        owns_client: bool = False,
    ) -> None:
        self.api = KubeApi(api, timeout=timeout, owns_client=owns_client)
        self._watch_idle = watch_idle
        self._watch_timeout = watch_timeout
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
        api = load_client(kubeconfig)
        return cls(api, timeout=timeout, watch_idle=watch_idle, owns_client=True)

    def own_by_deployment(self, namespace: str, name: str) -> None:
        """Have the Lease and the webhook Secret this store creates from now on owned by the
        Deployment `namespace/name` (Kubernetes' garbage collector deletes them with it: a
        `helm uninstall` leaves neither behind). Raises NotFound, Unavailable, ..."""
        self.owner = leases.deployment_owner(self.api, namespace, name)

    def owned(self, meta: dict[str, Any]) -> dict[str, Any]:
        """`meta` with the owner's reference, when one is set."""
        return leases.owned(meta, self.owner)

    # -- leases (the controller's leader election) and events (the agent's word on a pod) --

    def read_lease(self, namespace: str, name: str) -> Stored:
        """The Lease `namespace/name`: its `spec` as the body; raises NotFound."""
        return leases.read_lease(self.api, namespace, name)

    def write_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any], expected: str | None
    ) -> Stored:
        """Create the Lease (`expected` None; AlreadyExists when taken) or replace it at version
        `expected` (Conflict when someone else wrote it since)."""
        return leases.write_lease(self.api, namespace, name, spec, expected, owner=self.owner)

    def post_event(self, namespace: str, event: Mapping[str, Any]) -> int:
        """Create `event` in `namespace`, or raise the count of the one of its name
        (kube_leases.post_event). The count written."""
        return leases.post_event(self.api, namespace, event)

    # -- the contract ------------------------------------------------------------------------

    def get(self, key: Key) -> Stored:
        """The object at `key`; raises NotFound."""
        if key.kind in BUILTIN_KINDS:
            return self._get_builtin(key)
        return self._get(key)

    def list(self, kind: str, namespace: str | None = None) -> Listing:
        """Every object of `kind` (in `namespace` when given), ordered by key, and the revision
        they were read at (one consistent list)."""
        res = resource_of(kind)
        namespaced = namespaced_of(kind)
        if namespaced is not None and namespace is not None and bool(namespace) != namespaced:
            # A cluster-scoped kind has nothing in a namespace, a namespaced one nothing in ''.
            return Listing((), current_revision(self.api, kind))
        call = self.api.lister(kind, namespace, {"_request_timeout": self.api.timeout})
        doc = self.api.call(None, f"list {kind}", call)
        decoded = (decode_as(kind, res, o) for o in doc.get("items", []))
        items = [s for s in decoded if s.key.kind == kind]
        if namespace is not None:
            items = [s for s in items if s.key.namespace == namespace]
        items.sort(key=lambda s: s.key)
        return Listing(tuple(items), str(doc["metadata"]["resourceVersion"]))

    def create(self, key: Key, body: Mapping[str, Any]) -> Stored:
        """Store a new object; raises AlreadyExists."""
        ensure_writable(key)
        return self._create(key, copied_body(key, body))

    def update(self, key: Key, body: Mapping[str, Any], expected: str) -> Stored:
        """Replace the object if its version is `expected`; raises NotFound or Conflict."""
        ensure_writable(key)
        return self._update(key, copied_body(key, body), expected)

    def delete(self, key: Key, expected: str | None = None) -> None:
        """Remove the object (at version `expected` when given); raises NotFound or Conflict."""
        ensure_writable(key)
        self._delete(key, expected)

    def commit(self, writes: Sequence[Write]) -> tuple[Stored | None, ...]:
        """Apply the writes in order, all or none on errors (module docstring: checked first,
        undone on a later failure; not isolated, not crash-safe). Returns what each stored."""
        for w in writes:
            ensure_writable(w.key)
        bodies = [None if isinstance(w, Delete) else copied_body(w.key, w.body) for w in writes]
        if len(writes) < 2:
            return tuple(self._apply(w, b) for w, b in zip(writes, bodies, strict=True))
        # The first write's key is not read when it creates that key and no other write of
        # the commit touches it: its POST is the check (409 AlreadyExists), nothing is applied
        # before it, so its failure leaves no trace either, and its undo needs no earlier
        # body. An ADD's first write is its first claim: one GET fewer per ADD.
        first = writes[0]
        unread = isinstance(first, Create) and [w.key for w in writes].count(first.key) == 1
        before: dict[Key, Stored | None] = {first.key: None} if unread else {}
        for w in writes:
            if w.key not in before:
                before[w.key] = self._find(w.key)
        check_writes(writes, before)
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
        return changes(
            self.api, kind, since, watch_idle=self._watch_idle, watch_timeout=self._watch_timeout
        )

    def follow(
        self, kind: str, since: str, opened: Callable[[Closer], None]
    ) -> Iterator[tuple[Event | None, str]]:
        """The changes of `kind` after `since` as they happen, until the server ends the watch
        or `opened`'s closer is called (kube_watch.follow): a live informer's feed."""
        return follow(self.api, kind, since, opened)

    def close(self) -> None:
        """Refuse later calls (ValueError); close the client if the store owns it."""
        self.api.close()

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
        res, namespace, name = place(key)
        kw = where(res, namespace) | {"_request_timeout": self.api.timeout}
        doc = self.api.call(
            key, "get", lambda: self.api.custom_method("get", res, namespace)(**kw, name=name)
        )
        return decoded_at(key, res, doc)

    def _get_builtin(self, key: Key) -> Stored:
        kind = BUILTIN_KINDS[key.kind]
        if kind.namespaced != bool(key.namespace):
            raise NotFound(key, "not found")
        api = self.api.core if kind.api_version == "v1" else self.api.apps
        timeout = self.api.raw()
        if kind.namespaced:
            read = getattr(api, f"read_namespaced_{kind.stem}")
            doc = self.api.call(
                key, "get", lambda: json_of(read(key.name, key.namespace, **timeout))
            )
        else:
            read = getattr(api, f"read_{kind.stem}")
            doc = self.api.call(key, "get", lambda: json_of(read(key.name, **timeout)))
        return decode_builtin(key.kind, doc)

    def _find(self, key: Key) -> Stored | None:
        try:
            return self._get(key)
        except NotFound:
            return None

    def _create(self, key: Key, body: Doc) -> Stored:
        res, namespace, name = place(key)
        doc = encode_object(key, res, name, body)
        kw = where(res, namespace) | {"_request_timeout": self.api.timeout}
        created = self.api.call(
            key,
            "create",
            lambda: self.api.custom_method("create", res, namespace)(
                **kw, body=doc, field_validation="Strict"
            ),
        )
        if not status_differs(res, doc, created):
            return decoded_at(key, res, created)
        try:
            return decoded_at(key, res, self._write_status(key, res, namespace, doc, created))
        except StoreError:
            # Left for the caller to see when this fails too; the status error says why.
            with contextlib.suppress(StoreError):
                self._delete(key, str(created["metadata"]["resourceVersion"]))
            raise

    def _update(self, key: Key, body: Doc, expected: str) -> Stored:
        res, namespace, name = place(key)
        doc = encode_object(key, res, name, body)
        doc["metadata"]["resourceVersion"] = expected
        kw = where(res, namespace) | {"_request_timeout": self.api.timeout}
        replaced = self.api.call(
            key,
            "update",
            lambda: self.api.custom_method("replace", res, namespace)(
                **kw, name=name, body=doc, field_validation="Strict"
            ),
        )
        if status_differs(res, doc, replaced):
            replaced = self._write_status(key, res, namespace, doc, replaced)
        return decoded_at(key, res, replaced)

    def _write_status(
        self, key: Key, res: Resource, namespace: str | None, doc: Doc, current: Doc
    ) -> Doc:
        """PUT `doc`'s status over `current` (at its version) to the status subresource."""
        sent = copy.deepcopy(current)
        if "status" in doc:
            sent["status"] = doc["status"]
        else:
            sent.pop("status", None)
        kw = where(res, namespace) | {"_request_timeout": self.api.timeout}
        return self.api.call(
            key,
            "update status",
            lambda: self.api.custom_method("replace_status", res, namespace)(
                **kw, name=sent["metadata"]["name"], body=sent, field_validation="Strict"
            ),
        )

    def _delete(self, key: Key, expected: str | None) -> None:
        res, namespace, name = place(key)
        options = delete_options(expected)
        kw = where(res, namespace) | {"_request_timeout": self.api.timeout}
        self.api.call(
            key,
            "delete",
            lambda: self.api.custom_method("delete", res, namespace)(**kw, name=name, body=options),
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
