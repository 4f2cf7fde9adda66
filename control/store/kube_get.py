"""`spidernet get` on the API server (spidernet.control.cluster_get): Spider* objects as the
API server's raw JSON, selected by label on the server, and a watch of them, through a
KubeStore's `KubeApi` (kube_api.py). Errors are the store's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3.exceptions
import urllib3.response

from spidernet.control.store.base import Key, Unavailable
from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_names import SPIDER_KINDS, Doc, where
from spidernet.control.store.kube_watch import live_lines, watch_error

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


WATCH_SECONDS = 300  # how long one watch request of `KubeGetApi.watch` asks to run


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
        kw: dict[str, Any] = {
            "watch": True,
            "resource_version": since,
            "timeout_seconds": WATCH_SECONDS,
            "_preload_content": False,
            # The server ends the watch first; a read that outlasts it is a lost connection.
            "_request_timeout": (self._api.timeout, WATCH_SECONDS + 30),
        }
        stream = self._api.send(
            None, f"watch {kind}", self._lister(kind, namespace, selector, kw), holds=False
        )
        assert isinstance(stream, urllib3.response.BaseHTTPResponse)  # (_preload_content=False)
        try:
            for event in live_lines(stream):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise watch_error(kind, obj)
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    yield RawEvent(str(event["type"]), dict(obj))
        except urllib3.exceptions.ReadTimeoutError:
            return  # (the caller watches again from the last version it saw)
        except urllib3.exceptions.HTTPError as e:
            raise Unavailable(None, f"watch {kind}: {e}") from e
        finally:
            stream.close()
            stream.release_conn()
