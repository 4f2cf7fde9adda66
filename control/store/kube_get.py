"""`spidernet get` on the API server (spidernet.control.cluster_get): Spider* objects as the
API server's raw JSON, selected by label on the server, and a watch of them, through a
KubeStore's `KubeApi` (kube_api.py). Errors are the store's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from spidernet.control.store.base import Key
from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_names import SPIDER_KINDS, Doc, where
from spidernet.control.store.kube_watch import live_events, live_request

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


class KubeGetApi:
    """The reads `spidernet get` makes, on a KubeStore's client: Spider* objects as the API
    server's raw JSON (creationTimestamp kept, for AGE), selected by label on the server, and
    a watch of them. Errors are the store's (NotFound, Expired, Unavailable, ...)."""

    def __init__(self, store: KubeStore) -> None:
        self._api = store.api

    def _lister(
        self, kind: str, namespace: str | None, selector: str | None, kw: dict[str, Any]
    ) -> Callable[[], object]:
        res, custom = SPIDER_KINDS[kind], self._api.custom
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
        api = self._api
        kw: dict[str, Any] = {"_request_timeout": api.timeout}
        doc = api.call(None, f"list {kind}", self._lister(kind, namespace, selector, kw))
        items = tuple(dict(item) for item in doc.get("items", []))
        return RawList(items, str(doc.get("metadata", {}).get("resourceVersion", "")))

    def get(self, kind: str, namespace: str | None, name: str) -> Doc:
        """The object `name` (in `namespace` for a namespaced kind); raises NotFound."""
        api, res = self._api, SPIDER_KINDS[kind]
        key = Key(kind, namespace or "", name)
        at = where(res, namespace if res.namespaced else None)
        scope = "namespaced" if res.namespaced else "cluster"
        method = getattr(api.custom, f"get_{scope}_custom_object")
        return api.call(key, "get", lambda: method(**at, name=name, _request_timeout=api.timeout))

    def watch(
        self, kind: str, namespace: str | None, selector: str | None, since: str
    ) -> Iterator[RawEvent]:
        """The changes after revision `since`, as they happen, until the API server ends the
        watch (after about five minutes) or the caller stops iterating. Bookmarks are not
        yielded. Raises Expired when `since` is older than the server's watch cache (list
        again), Unavailable when the connection breaks."""
        kw = live_request(self._api, since)
        lister = self._lister(kind, namespace, selector, kw)
        for event in live_events(self._api, kind, lister):
            if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                yield RawEvent(str(event["type"]), dict(event.get("object") or {}))
