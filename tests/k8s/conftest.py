"""k8s lane: a real kube-apiserver and etcd, built from the Go module proxy, on loopback.

The binaries are built once into the cache (`python -m spidernet.testbed.kubecluster build`;
about ten minutes the first time) and reused afterwards. One cluster serves the whole session:
each test works in namespaces and CRD groups of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from spidernet.testbed import spidercrds
from spidernet.testbed.kubecluster import Cluster, ensure_binaries, running_cluster
from spidernet.testbed.kubeobjects import remove_pool, wide_pool
from spidernet.testbed.spidercrds import Spider


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def k8s_cluster(record_testsuite_property: Callable[[str, object], None]) -> Iterator[Cluster]:
    """A ready etcd + kube-apiserver; both stopped and their directory removed afterwards."""
    with running_cluster(ensure_binaries()) as cluster:
        # In the JUnit report: how long the cluster took to answer /readyz.
        record_testsuite_property("kube_apiserver_version", cluster.versions.kubernetes)
        record_testsuite_property("kube_apiserver_ready_seconds", f"{cluster.ready_seconds:.1f}")
        yield cluster


@pytest.fixture(scope="session")
def k8s_api(k8s_cluster: Cluster) -> Iterator[client.ApiClient]:
    """The official client, configured from the cluster's kubeconfig (admin identity)."""
    # kubernetes.config and ApiClient.close have no annotations.
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(k8s_cluster.kubeconfig)
    )
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]  # (as above)


CRDS = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "crds"


def install_crd(ext: client.ApiextensionsV1Api, path: Path) -> str:
    """Create the CRD in `path`, or replace it when present; its name once Established."""
    return install_crd_doc(ext, yaml.safe_load(path.read_text()))


def install_crd_doc(ext: client.ApiextensionsV1Api, doc: dict[str, Any]) -> str:
    """Create the CRD `doc`, or replace it when present; its name once Established."""
    body = client.V1CustomResourceDefinition.from_dict(doc)
    assert body is not None
    spidercrds.apply_crd(ext, body)
    name: str = doc["metadata"]["name"]
    spidercrds.wait_established(ext, name)
    return name


@pytest.fixture(scope="session")
def store_crds(k8s_api: client.ApiClient) -> list[str]:
    """Every CRD of deploy/chart/crds (Spiderpool's six and the Kubernetes store's internal one),
    installed once for the session; their names."""
    ext = client.ApiextensionsV1Api(k8s_api)
    return [install_crd(ext, path) for path in sorted(CRDS.glob("*.yaml"))]


@pytest.fixture
def core(k8s_api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(k8s_api)


@pytest.fixture
def custom(k8s_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s_api)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A namespace of this test's own, with the `default` ServiceAccount pods need (no
    controller-manager creates it here)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_service_account(
        name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture
def big_pool(custom: client.CustomObjectsApi, store_crds: list[str]) -> Iterator[str]:
    """A SpiderIPPool of 2000 addresses that no other test uses (testbed.kubeobjects
    `wide_pool`), removed with its claims afterwards."""
    name = wide_pool(custom, "big")
    yield name
    remove_pool(custom, name)


@pytest.fixture(scope="module")
def spiderpool_crds(k8s_api: client.ApiClient) -> dict[str, dict[str, str]]:
    """Install deploy/chart/crds, replacing what an earlier module installed; CRD name ->
    its conditions once Established (the CRD tests' own install, checked field by field)."""
    return spidercrds.install(k8s_api)


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def spider(k8s_api: client.ApiClient, spiderpool_crds: dict[str, dict[str, str]]) -> Spider:
    """A client of the Spiderpool objects in a fresh namespace of its own."""
    return Spider(k8s_api, spidercrds.new_namespace(k8s_api))
