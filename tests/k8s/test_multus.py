"""SpiderMultusConfig -> NetworkAttachmentDefinition on a real kube-apiserver: SMCs applied
through the API (its CRD fills the defaults), `reconcile_multus` run over the Kubernetes
store's `KubeMultusApi`, NADs read back. No controller-manager runs, so nothing but the
reconciler removes a NAD whose SpiderMultusConfig is gone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.controller.multus import reconcile_multus, render_nad
from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_gateways import KubeMultusApi

GROUP, VERSION, SMCS = "spiderpool.spidernet.io", "v2beta1", "spidermultusconfigs"
NAD = ("k8s.cni.cncf.io", "v1")
NADS = "network-attachment-definitions"
Doc = dict[str, Any]


@pytest.fixture
def custom(k8s_api: client.ApiClient, store_crds: list[str]) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s_api)


@pytest.fixture
def api(k8s_api: client.ApiClient, store_crds: list[str]) -> Iterator[KubeMultusApi]:
    store = KubeStore(k8s_api)
    yield KubeMultusApi(store)
    store.close()


@pytest.fixture
def namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    name = f"multus-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def apply_smc(custom: client.CustomObjectsApi, namespace: str, name: str, spec: Doc) -> Doc:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderMultusConfig",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    out = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SMCS, body)
    assert isinstance(out, dict)
    return out


def read_nad(custom: client.CustomObjectsApi, namespace: str, name: str) -> Doc | None:
    try:
        out = custom.get_namespaced_custom_object(*NAD, namespace, NADS, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    assert isinstance(out, dict)
    return out


def mine(lines: list[str], namespace: str) -> list[str]:
    """The reconciler's lines about this test's namespace (other tests' SMCs live on)."""
    return [line for line in lines if f" {namespace}/" in line]


SPEC = {
    "cniType": "macvlan",
    "macvlan": {
        "master": ["eth0", "eth1"],
        "vlanID": 10,
        "bond": {"name": "bond0", "mode": 1},
        "ippools": {"ipv4": ["pool-a"]},
    },
}


def test_nads_follow_their_smcs(
    custom: client.CustomObjectsApi, api: KubeMultusApi, namespace: str
) -> None:
    smc = apply_smc(custom, namespace, "net1", SPEC)
    assert mine(reconcile_multus(api), namespace) == [
        f"created NetworkAttachmentDefinition {namespace}/net1"
    ]
    nad = read_nad(custom, namespace, "net1")
    assert nad is not None
    assert json.loads(nad["spec"]["config"]) == json.loads(render_nad(smc)["spec"]["config"])
    types = [p["type"] for p in json.loads(nad["spec"]["config"])["plugins"]]
    assert types == ["spidernet-ifacer", "macvlan", "spidernet-coordinator"]
    (owner,) = nad["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "SpiderMultusConfig",
        "net1",
        smc["metadata"]["uid"],
        True,
    )
    assert mine(reconcile_multus(api), namespace) == []  # nothing drifted

    smc["spec"]["enableCoordinator"] = False
    custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, SMCS, "net1", smc)
    assert mine(reconcile_multus(api), namespace) == [
        f"updated NetworkAttachmentDefinition {namespace}/net1"
    ]
    nad = read_nad(custom, namespace, "net1")
    assert nad is not None
    types = [p["type"] for p in json.loads(nad["spec"]["config"])["plugins"]]
    assert types == ["spidernet-ifacer", "macvlan"]

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, SMCS, "net1")
    assert mine(reconcile_multus(api), namespace) == [
        f"deleted NetworkAttachmentDefinition {namespace}/net1"
    ]
    assert read_nad(custom, namespace, "net1") is None


def test_a_foreign_nad_is_left_alone_and_reported(
    custom: client.CustomObjectsApi, api: KubeMultusApi, namespace: str
) -> None:
    foreign = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "net2", "namespace": namespace},
        "spec": {"config": '{"cniVersion": "0.3.1", "type": "bridge"}'},
    }
    custom.create_namespaced_custom_object(*NAD, namespace, NADS, foreign)
    apply_smc(custom, namespace, "net2", SPEC)
    (line,) = mine(reconcile_multus(api), namespace)
    assert line.startswith(f"conflict SpiderMultusConfig {namespace}/net2")
    nad = read_nad(custom, namespace, "net2")
    assert nad is not None
    assert nad["spec"] == foreign["spec"]
    assert "ownerReferences" not in nad["metadata"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, SMCS, "net2")
    assert mine(reconcile_multus(api), namespace) == []
    assert read_nad(custom, namespace, "net2") is not None  # not ours to delete either


def test_an_invalid_smc_is_reported(
    custom: client.CustomObjectsApi, api: KubeMultusApi, namespace: str
) -> None:
    spec = {**SPEC, "chainCNIJsonData": ["{not json"]}
    apply_smc(custom, namespace, "net3", spec)
    (line,) = mine(reconcile_multus(api), namespace)
    assert line.startswith(f"invalid SpiderMultusConfig {namespace}/net3: spec.chainCNIJsonData[0]")
    assert read_nad(custom, namespace, "net3") is None
