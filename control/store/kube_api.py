"""The Kubernetes API layer under the store and the gateways: the one module of spidernet that
imports the official client (ruff's banned-api rule and the import-linter contract say so).

`KubeApi` holds a client and its typed APIs, and sends every request: `call(key, doing, fn)`
runs `fn`, a call of the client, and turns the client's errors into store errors
(docs/kube-store.md, "Versions and errors"). A request the API server did not answer holds the
next ones back for `UNANSWERED_HOLD_S`. `KubeStore` (kube.py) and the gateways
(kube_gateways.py, kube_get.py, kube_leases.py) send through it, never through the client.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3.exceptions
import urllib3.response
import urllib3.util
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.store.base import (
    AlreadyExists,
    Conflict,
    Expired,
    Invalid,
    Key,
    NotFound,
    StoreError,
    Unavailable,
)
from spidernet.control.store.kube_names import (
    BUILTIN_KINDS,
    INTERNAL,
    Builtin,
    Doc,
    Resource,
    resource_of,
    selector,
)

# The client's connection to one API server (what KubeStore and KubeApi are built on).
ApiClient = client.ApiClient

_UNAVAILABLE_CODES = frozenset({0, 408})
# Refused before anything was done: unauthenticated, forbidden, too many requests.
_REFUSED_CODES = frozenset({401, 403, 429})
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class NotApplied(Unavailable):
    """Unavailable, and known to have changed nothing: no connection was made, the request
    was not sent, or the API server refused it before acting (401, 403, 429). Any other
    Unavailable of a write may have been applied (docs/kube-store.md, "commit")."""


# How long requests fail at once after one went unanswered (KubeApi.send).
UNANSWERED_HOLD_S = 5.0
# One retry (a pooled connection the server closed, as after its restart), not urllib3's
# three: a request the API server does not answer costs one `timeout` twice at most, and the
# caller's runtime hears error 11 instead of waiting four timeouts. Reads only: urllib3 would
# also resend a PUT or DELETE whose answer was lost, and the resent one, finding the first
# applied, answers 409 or 404, which `commit` would take for a write that did not happen.
RETRY = urllib3.util.Retry(
    total=1, redirect=0, allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"})
)


def load_client(kubeconfig: str | None = None) -> ApiClient:
    """A client from `kubeconfig`, else `$KUBECONFIG`, else the pod's service account when
    `$KUBERNETES_SERVICE_HOST` is set (in-cluster). Raises Unavailable when no configuration
    is usable."""
    from kubernetes import config

    path = kubeconfig or os.environ.get("KUBECONFIG", "")
    conf = client.Configuration()
    conf.retries = RETRY
    try:
        if path:
            api: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=conf
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
            api = ApiClient(conf)
        else:
            raise Unavailable(None, "no kubeconfig given, no $KUBECONFIG and not in a cluster")
    except (config.ConfigException, OSError, ValueError) as e:
        where = f"kubeconfig '{path}'" if path else "the in-cluster configuration"
        raise Unavailable(None, f"failed to load {where}: {e}") from e
    return api


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


def delete_options(expected: str | None) -> object:
    """The body of a delete: at version `expected` (a precondition) when given."""
    if expected is None:
        return client.V1DeleteOptions(preconditions=None)
    return client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=expected))


class KubeApi:
    """Requests to the API server `api` reaches. `timeout`: seconds for each request.
    `close()` closes `api` only when `owns_client`. Any number of threads may share it."""

    def __init__(self, api: ApiClient, *, timeout: float = 10.0, owns_client: bool = False) -> None:
        self.client = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.timeout = timeout
        self._owns = owns_client
        self._closed = False
        self._lock = threading.Lock()
        # (until when, why): the API server did not answer a request; others fail at once
        # until then (UNANSWERED_HOLD_S).
        self._unanswered: tuple[float, str] = (0.0, "")

    def coordination(self) -> client.CoordinationV1Api:
        """coordination.k8s.io/v1 (Leases)."""
        return client.CoordinationV1Api(self.client)

    def admission(self) -> client.AdmissionregistrationV1Api:
        """admissionregistration.k8s.io/v1 (webhook configurations)."""
        return client.AdmissionregistrationV1Api(self.client)

    def networking(self) -> client.NetworkingV1Api:
        """networking.k8s.io/v1 (ServiceCIDRs)."""
        return client.NetworkingV1Api(self.client)

    def raw(self) -> dict[str, Any]:
        """The options of a request whose answer `json_of` reads: the timeout, the raw body."""
        return {"_request_timeout": self.timeout, "_preload_content": False}

    def close(self) -> None:
        """Refuse later requests (ValueError); close the client if this owns it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._owns:
            self.client.close()  # type: ignore[no-untyped-call]  # ApiClient.close: no annotations

    # -- the client's methods ----------------------------------------------------------------

    def custom_method(
        self, verb: str, res: Resource, namespace: str | None
    ) -> Callable[..., object]:
        """The CustomObjectsApi method for `verb` on `res` (namespaced when `namespace`)."""
        scope = "namespaced" if namespace is not None else "cluster"
        suffix = "_status" if verb == "replace_status" else ""
        verb = verb.removesuffix("_status")
        method: Callable[..., object] = getattr(
            self.custom, f"{verb}_{scope}_custom_object{suffix}"
        )
        return method

    def lister(self, kind: str, namespace: str | None, kw: dict[str, Any]) -> Callable[[], object]:
        """A list (or, with watch=True, a watch) of `kind`'s objects, in `namespace` when given:
        a label-selected list of internal objects, or of a Spiderpool kind's CRD."""
        if kind in BUILTIN_KINDS:
            return self._builtin_lister(BUILTIN_KINDS[kind], namespace, kw)
        res = resource_of(kind)
        custom = self.custom
        if res is INTERNAL:
            labels = selector(kind, namespace)
            return lambda: custom.list_cluster_custom_object(
                res.group, res.version, res.plural, label_selector=labels, **kw
            )
        if res.namespaced and namespace is not None:
            return lambda: custom.list_namespaced_custom_object(
                res.group, res.version, namespace, res.plural, **kw
            )
        if res.namespaced:
            return lambda: custom.list_custom_object_for_all_namespaces(
                res.group, res.version, res.plural, **kw
            )
        return lambda: custom.list_cluster_custom_object(res.group, res.version, res.plural, **kw)

    def _builtin_lister(
        self, kind: Builtin, namespace: str | None, kw: dict[str, Any]
    ) -> Callable[[], object]:
        """A list (or watch) of one of Kubernetes' own kinds: the raw JSON (a list), or the
        raw stream (a watch, which asks for `_preload_content=False` itself)."""
        api = self.core if kind.api_version == "v1" else self.apps
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
        return lambda: json_of(method(*args, **kw, _preload_content=False))

    # -- sending -----------------------------------------------------------------------------

    def call(self, key: Key | None, doing: str, fn: Callable[[], object]) -> Doc:
        """The object `fn()` answers, with the client's errors turned into store errors."""
        answer = self.send(key, doing, fn)
        if not isinstance(answer, dict):
            raise Unavailable(key, f"{doing}: the API server answered {type(answer).__name__}")
        return answer

    def send(
        self, key: Key | None, doing: str, fn: Callable[[], object], *, holds: bool = True
    ) -> object:
        """`fn()` with the client's errors as store errors. A request the API server did not
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
            return fn()
        except ApiException as e:
            raise translate(e, key, doing) from e
        except urllib3.exceptions.HTTPError as e:
            if holds:
                self._unanswered = (time.monotonic() + UNANSWERED_HOLD_S, str(e))
            kind = NotApplied if never_connected(e) else Unavailable
            raise kind(key, f"{doing}: {e}") from e


def json_of(response: object) -> object:
    """The JSON document of a raw (`_preload_content=False`) response."""
    assert isinstance(response, urllib3.response.BaseHTTPResponse)
    try:
        doc: object = json.loads(response.data)
    finally:
        response.release_conn()  # (back to the pool; the body is read)
    return doc


# -- the client's errors as store errors -------------------------------------------------------


def never_connected(error: BaseException | None) -> bool:
    """No connection was made, so no request reached the server (also when urllib3's
    retries wrapped the error in MaxRetryError)."""
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        error = error.reason
    return isinstance(
        error, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


def read_timed_out(error: BaseException | None) -> bool:
    """A read timeout, also when urllib3's retries wrapped it in MaxRetryError."""
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        error = error.reason
    return isinstance(error, urllib3.exceptions.ReadTimeoutError)


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


def translate(e: ApiException, key: Key | None, doing: str) -> StoreError:
    """The store error of the API server's answer `e` to `doing` (of `key`)."""
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
