"""The `Store` contract suite (spidernet.testbed.store_contract) against the Kubernetes store
on a real kube-apiserver. Each test starts from an empty store: the fixture deletes every
internal object first (the suite only uses kinds the store keeps as internal objects).

The API server compacts etcd and trims its watch cache on its own schedule and cannot be told
to forget on demand, so this backend has no `short_history`: the Expired test skips (Expired
itself is tested in test_kube_store.py with a revision the watch cache never had).
"""

from __future__ import annotations

import pytest
from kubernetes import client

from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_names import INTERNAL
from spidernet.testbed.store_contract import Backend, StoreContract


def wipe(api: client.ApiClient) -> None:
    """Delete every internal object of the Kubernetes store."""
    client.CustomObjectsApi(api).delete_collection_cluster_custom_object(
        INTERNAL.group, INTERNAL.version, INTERNAL.plural
    )


@pytest.fixture
def backend(k8s_api: client.ApiClient, store_crds: list[str]) -> Backend:
    wipe(k8s_api)
    return Backend("kube", fresh=lambda _dir: KubeStore(k8s_api), short_history=None)


class TestKubeStore(StoreContract):
    """Every contract test, on the API server's internal objects."""
