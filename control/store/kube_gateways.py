"""The gateways the controller uses besides the store, each a few calls on a KubeStore's
`KubeApi` (kube_api.py): SpiderMultusConfigs and NetworkAttachmentDefinitions (the multus
reconciler), the admission webhook's Secret and configuration, and the sources of the
SpiderCoordinator status's CIDRs; and (for the agent) an IPAMClaim's status. Objects are the
API server's raw JSON; errors are the store's.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from spidernet.control.store.base import Conflict, Key, NotFound
from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_api import json_of
from spidernet.control.store.kube_names import FOREIGN_KINDS, SPIDER_KINDS, Doc, where

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
        self._api = store.api

    def _list(self, group: str, version: str, plural: str) -> list[Doc]:
        api = self._api
        doc = api.call(
            None,
            f"list {plural}",
            lambda: api.custom.list_custom_object_for_all_namespaces(
                group, version, plural, _request_timeout=api.timeout
            ),
        )
        return [dict(item) for item in doc.get("items", [])]

    def list_multus_configs(self) -> list[Doc]:
        res = SPIDER_KINDS["SpiderMultusConfig"]
        return self._list(res.group, res.version, res.plural)

    def list_nads(self) -> list[Doc]:
        return self._list(NAD_GROUP, NAD_VERSION, NAD_PLURAL)

    def create_nad(self, doc: Mapping[str, Any]) -> None:
        """Create the NAD `doc` (AlreadyExists when its name is taken)."""
        self._write_nad("create", doc)

    def replace_nad(self, doc: Mapping[str, Any]) -> None:
        """Replace the NAD at `doc["metadata"]["resourceVersion"]` (Conflict when stale)."""
        self._write_nad("update", doc)

    def _write_nad(self, verb: str, doc: Mapping[str, Any]) -> None:
        """Create (`verb` "create": POST to the collection) or replace ("update": PUT to the
        object's name) the NAD `doc`, named in its metadata."""
        api = self._api
        meta = doc["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        method, where = (
            ("create_namespaced_custom_object", ())
            if verb == "create"
            else ("replace_namespaced_custom_object", (name,))
        )
        api.call(
            Key("NetworkAttachmentDefinition", namespace, name),
            verb,
            lambda: getattr(api.custom, method)(
                NAD_GROUP,
                NAD_VERSION,
                namespace,
                NAD_PLURAL,
                *where,
                dict(doc),
                _request_timeout=api.timeout,
            ),
        )

    def delete_nad(self, namespace: str, name: str, uid: str) -> None:
        """Delete the NAD, only if it is still the object `uid` (a precondition)."""
        api = self._api
        key = Key("NetworkAttachmentDefinition", namespace, name)
        body: Any = {"preconditions": {"uid": uid}} if uid else None
        api.call(
            key,
            "delete",
            lambda: api.custom.delete_namespaced_custom_object(
                NAD_GROUP,
                NAD_VERSION,
                namespace,
                NAD_PLURAL,
                name,
                body=body,
                _request_timeout=api.timeout,
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
        self._api = store.api

    def _opts(self) -> dict[str, Any]:
        return {"_request_timeout": self._api.timeout, "_preload_content": False}

    def read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        """The Secret's data; raises NotFound."""
        core, key = self._api.core, Key("Secret", namespace, name)
        doc = self._api.call(
            key,
            "get",
            lambda: json_of(core.read_namespaced_secret(name, namespace, **self._opts())),
        )
        data = doc.get("data") or {}
        return {k: base64.b64decode(v) for k, v in data.items() if isinstance(v, str)}

    def create_secret(
        self, namespace: str, name: str, secret_type: str, data: Mapping[str, bytes]
    ) -> None:
        """Create the Secret; raises AlreadyExists when another writer made it first."""
        core, key = self._api.core, Key("Secret", namespace, name)
        body: Any = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self._store.owned({"name": name, "namespace": namespace}),
            "type": secret_type,
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        self._api.call(
            key,
            "create",
            lambda: json_of(core.create_namespaced_secret(namespace, body, **self._opts())),
        )

    def read_webhook_configuration(self, name: str) -> Doc:
        """The ValidatingWebhookConfiguration `name` as JSON; raises NotFound."""
        adm = self._api.admission()
        key = Key("ValidatingWebhookConfiguration", "", name)
        return self._api.call(
            key,
            "get",
            lambda: json_of(adm.read_validating_webhook_configuration(name, **self._opts())),
        )

    def patch_webhook_configuration(self, name: str, ops: Sequence[Mapping[str, Any]]) -> None:
        """Apply the JSON patch `ops` (RFC 6902) to the configuration `name`."""
        adm = self._api.admission()
        key = Key("ValidatingWebhookConfiguration", "", name)
        body: Any = [dict(op) for op in ops]
        self._api.call(
            key,
            "patch",
            lambda: json_of(
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
        self._api = store.api

    def _opts(self) -> dict[str, Any]:
        return {"_request_timeout": self._api.timeout, "_preload_content": False}

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ConfigMap's `data`, or None when there is no such ConfigMap."""
        core, key = self._api.core, Key("ConfigMap", namespace, name)
        try:
            doc = self._api.call(
                key,
                "get",
                lambda: json_of(core.read_namespaced_config_map(name, namespace, **self._opts())),
            )
        except NotFound:
            return None
        data = doc.get("data") or {}
        return {str(k): str(v) for k, v in data.items()}

    def pods(self, namespace: str, label_selector: str) -> list[Doc]:
        """The Pods of `namespace` that `label_selector` selects."""
        core = self._api.core
        doc = self._api.call(
            None,
            f"list pods in {namespace}",
            lambda: json_of(
                core.list_namespaced_pod(namespace, label_selector=label_selector, **self._opts())
            ),
        )
        return [dict(item) for item in doc.get("items", [])]

    def calico_pools(self) -> list[Doc] | None:
        """Calico's IPPools, or None when the API server does not serve them."""
        custom = self._api.custom
        try:
            doc = self._api.call(
                None,
                "list Calico IPPools",
                lambda: custom.list_cluster_custom_object(
                    CALICO_GROUP,
                    CALICO_VERSION,
                    CALICO_POOL_PLURAL,
                    _request_timeout=self._api.timeout,
                ),
            )
        except NotFound:
            return None
        return [dict(item) for item in doc.get("items", [])]

    def service_cidrs(self) -> list[Doc] | None:
        """The networking.k8s.io/v1 ServiceCIDRs, or None when the API server does not serve
        them (Kubernetes before 1.33, or the API turned off)."""
        net = self._api.networking()
        try:
            doc = self._api.call(
                None,
                "list ServiceCIDRs",
                lambda: json_of(net.list_service_cidr(**self._opts())),
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
        api = self._api
        api.call(
            key,
            "update status",
            lambda: api.custom.replace_cluster_custom_object_status(
                res.group, res.version, res.plural, name, sent, _request_timeout=api.timeout
            ),
        )


class KubeIpamClaimApi:
    """The one write spidernet makes to another project's object: an IPAMClaim's
    `status.ips` (k8s.cni.cncf.io/v1alpha1), the addresses its interface holds."""

    def __init__(self, store: KubeStore) -> None:
        self._api = store.api

    def write_ips(self, namespace: str, name: str, ips: Sequence[str]) -> None:
        """Set the claim's status.ips to `ips` unless it says so already (NotFound when the
        claim is gone; a Conflict, a write in between, is read and tried again once)."""
        res = FOREIGN_KINDS["IPAMClaim"]
        key = Key("IPAMClaim", namespace, name)
        api = self._api
        kw = where(res, namespace) | {"_request_timeout": api.timeout}
        for attempt in (1, 2):
            doc = api.call(
                key, "get", lambda: api.custom.get_namespaced_custom_object(**kw, name=name)
            )
            if (doc.get("status") or {}).get("ips") == list(ips):
                return
            doc["status"] = {**(doc.get("status") or {}), "ips": list(ips)}
            try:
                self._replace_status(key, kw, doc)
                return
            except Conflict:
                if attempt == 2:
                    raise

    def _replace_status(self, key: Key, kw: dict[str, Any], doc: Doc) -> None:
        api = self._api
        api.call(
            key,
            "update status",
            lambda: api.custom.replace_namespaced_custom_object_status(
                **kw, name=key.name, body=doc
            ),
        )
