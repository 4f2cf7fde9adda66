"""k8s lane: a real kube-apiserver and etcd, built from the Go module proxy, on loopback.

The binaries are built once into the cache (`python -m spidernet.node.lab.kubecluster build`;
about ten minutes the first time) and reused afterwards. One cluster serves the whole session:
each test works in namespaces and CRD groups of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kubernetes import client, config

from spidernet.node.lab.kubecluster import Cluster, ensure_binaries, running_cluster


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
