"""The k8s lane's Spiderpool CRDs (deploy/chart/crds) on a real API server: installing them,
a small client that creates, reads and patches Spiderpool objects by kind, and the documents
the CRD tests send (tests/k8s/test_crds.py, tests/k8s/test_crd_refusals.py)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.model.documents import parse
from spidernet.control.model.errors import ValidationError
from spidernet.control.model.resources import API_VERSION

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "deploy" / "chart" / "crds"
EXAMPLES = ROOT / "tests" / "unit" / "control" / "model" / "data"
GROUP, VERSION = API_VERSION.split("/")
ESTABLISHED_TIMEOUT_S = 30.0

# kind -> (plural, namespaced)
RESOURCES = {
    "SpiderIPPool": ("spiderippools", False),
    "SpiderSubnet": ("spidersubnets", False),
    "SpiderReservedIP": ("spiderreservedips", False),
    "SpiderEndpoint": ("spiderendpoints", True),
    "SpiderCoordinator": ("spidercoordinators", False),
    "SpiderMultusConfig": ("spidermultusconfigs", True),
}

Doc = dict[str, Any]

POOL = {"subnet": "10.30.0.0/16", "ips": ["10.30.0.10-10.30.0.20"]}
ENDPOINT_IP: Doc = {"interface": "eth0", "ipv4": "10.30.0.10/16"}


def as_dict(value: object) -> Doc:
    """`value`, which the API server answered as a JSON object."""
    assert isinstance(value, dict)
    return value


def crd_files() -> list[Doc]:
    """Spiderpool's six (not the Kubernetes store's internal CRD: test_kube_store.py)."""
    docs = [as_dict(yaml.safe_load(p.read_text())) for p in sorted(CRDS.glob("*.yaml"))]
    return [d for d in docs if d["spec"]["group"] == GROUP]


def wait_established(ext: client.ApiextensionsV1Api, name: str) -> dict[str, str]:
    """The CRD `name`'s conditions once it is Established (a test failure after 30 s)."""
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    conditions: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = ext.read_custom_resource_definition(name).status
        found = status.conditions if status is not None else None
        conditions = {c.type: c.status for c in found or []}
        if conditions.get("Established") == "True":
            return conditions
        time.sleep(0.1)
    pytest.fail(f"CRD {name} not Established in {ESTABLISHED_TIMEOUT_S:.0f}s: {conditions}")


def install(k8s_api: client.ApiClient) -> dict[str, dict[str, str]]:
    """Install deploy/chart/crds; CRD name -> its conditions once Established."""
    ext = client.ApiextensionsV1Api(k8s_api)
    names = []
    for crd in crd_files():
        name = crd["metadata"]["name"]
        body = client.V1CustomResourceDefinition.from_dict(crd)
        # The typed model must carry every schema extension of the file (CEL rules, list
        # types); sanitize_for_serialization has no annotations.
        assert body is not None
        assert k8s_api.sanitize_for_serialization(body) == crd  # type: ignore[no-untyped-call]
        apply_crd(ext, body)
        names.append(name)
    return {name: wait_established(ext, name) for name in names}


def apply_crd(ext: client.ApiextensionsV1Api, body: client.V1CustomResourceDefinition) -> None:
    """Create the CRD `body`, or, when an earlier module of the session installed it,
    replace it with `body`."""
    assert body.metadata is not None
    assert body.metadata.name is not None
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as e:
        if e.status != 409:
            raise
        current = ext.read_custom_resource_definition(body.metadata.name)
        assert current.metadata is not None
        body.metadata.resource_version = current.metadata.resource_version
        ext.replace_custom_resource_definition(body.metadata.name, body)


def new_namespace(k8s_api: client.ApiClient) -> str:
    """A fresh namespace (left behind; the cluster goes with the session)."""
    name = f"crd-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(k8s_api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


class Spider:
    """Create, read and patch Spiderpool objects, namespaced or not, by kind."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, doc: Doc, *, strict: bool = True) -> Doc:
        plural, namespaced = RESOURCES[doc["kind"]]
        validation = "Strict" if strict else None
        if namespaced:
            return as_dict(
                self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, doc, field_validation=validation
                )
            )
        return as_dict(
            self.custom.create_cluster_custom_object(
                GROUP, VERSION, plural, doc, field_validation=validation
            )
        )

    def get(self, kind: str, name: str) -> Doc:
        plural, namespaced = RESOURCES[kind]
        if namespaced:
            return as_dict(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, name
                )
            )
        return as_dict(self.custom.get_cluster_custom_object(GROUP, VERSION, plural, name))

    def patch(self, kind: str, name: str, body: Doc, *, status: bool = False) -> Doc:
        """A JSON merge patch of the object, or of its status subresource."""
        plural, namespaced = RESOURCES[kind]
        assert not namespaced
        call = (
            self.custom.patch_cluster_custom_object_status
            if status
            else self.custom.patch_cluster_custom_object
        )
        return as_dict(
            call(GROUP, VERSION, plural, name, body, _content_type="application/merge-patch+json")
        )

    def refused(self, doc: Doc, code: int = 422, *, strict: bool = True) -> Doc:
        """The Status the API server answers a create with; fails if it is accepted."""
        with pytest.raises(ApiException) as err:
            self.create(doc, strict=strict)
        assert err.value.status == code, err.value.body
        status: Doc = json.loads(err.value.body or "{}")
        return status

    def raw(self, path: str, accept: str = "application/json") -> tuple[int, Doc]:
        """GET a path of the API server; (HTTP status, decoded body)."""
        method, url, headers, _, _ = self.api.param_serialize(
            "GET", path, header_params={"Accept": accept}
        )
        response = self.api.call_api(method, url, header_params=headers)
        payload: bytes = response.response.data  # (the urllib3 response)
        return response.status, as_dict(json.loads(payload or b"{}"))

    def path(self, kind: str) -> str:
        plural, namespaced = RESOURCES[kind]
        where = f"namespaces/{self.namespace}/" if namespaced else ""
        return f"/apis/{GROUP}/{VERSION}/{where}{plural}"


def doc(kind: str, name: str, body: Doc | None = None, *, key: str = "spec") -> Doc:
    """A Spiderpool object of `kind` named `name`, with `body` under `key`."""
    out: Doc = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}}
    if body is not None:
        out[key] = body
    return out


def model_fields(document: Doc) -> list[str]:
    """The fields spidernet's model refuses `document` for ([] when it accepts it)."""
    try:
        parse(document)
    except ValidationError as err:
        return [e.field for e in getattr(err, "errors", [err])]
    return []


def placed(document: Doc, suffix: str, namespace: str) -> Doc:
    """A copy named apart from other tests' objects, namespaced objects in `namespace`."""
    out = as_dict(json.loads(json.dumps(document)))
    out["metadata"]["name"] = f"{out['metadata']['name']}-{suffix}"
    if RESOURCES[out["kind"]][1]:
        out["metadata"]["namespace"] = namespace
    return out


def endpoint(name: str, ips: list[Doc]) -> Doc:
    """A SpiderEndpoint `name` of a Deployment's pod on worker-1 holding `ips`."""
    status = {
        "current": {"uid": str(uuid.uuid4()), "node": "worker-1", "ips": ips},
        "ownerControllerType": "Deployment",
        "ownerControllerName": "web",
    }
    return doc("SpiderEndpoint", name, status, key="status")


def crd_file(kind: str) -> Path:
    """The chart's CRD file of `kind`."""
    return CRDS / f"{GROUP}_{RESOURCES[kind][0]}.yaml"
