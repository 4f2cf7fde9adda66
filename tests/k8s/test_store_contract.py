"""The `Store` contract suite against the Kubernetes store on a real kube-apiserver.

The suite has one copy, tests/unit/control/store/test_contract.py (the unit lane runs it against
the embedded store). This module loads that file by path (tests never import each other by
package name) and collects the very same test functions here, where the `backend` and `store`
fixtures below give them a KubeStore. Each test starts from an empty store: the fixture deletes
every internal object first (the suite only uses kinds the store keeps as internal objects).

The API server compacts etcd and trims its watch cache on its own schedule and cannot be told
to forget on demand, so this backend has no `short_history`: the Expired test skips (Expired
itself is tested in test_kube_store.py with a revision the watch cache never had).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from kubernetes import client

from spidernet.control.store.base import Store
from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_names import INTERNAL

CONTRACT = Path(__file__).resolve().parents[1] / "unit" / "control" / "store" / "test_contract.py"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("spidernet_store_contract", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


contract = _load(CONTRACT)
CONTRACT_TESTS = sorted(n for n in vars(contract) if n.startswith("test_"))
# The suite's test functions, collected as this module's own.
globals().update({name: getattr(contract, name) for name in CONTRACT_TESTS})


def wipe(api: client.ApiClient) -> None:
    """Delete every internal object of the Kubernetes store."""
    client.CustomObjectsApi(api).delete_collection_cluster_custom_object(
        INTERNAL.group, INTERNAL.version, INTERNAL.plural
    )


@pytest.fixture
def backend(k8s_api: client.ApiClient, store_crds: list[str]) -> object:
    wipe(k8s_api)
    return contract.Backend("kube", fresh=lambda _dir: KubeStore(k8s_api), short_history=None)


@pytest.fixture
def store(backend: object, tmp_path: Path) -> Iterator[Store]:
    s: Store = backend.fresh(tmp_path)  # type: ignore[attr-defined]  # contract.Backend
    yield s
    s.close()


def test_every_contract_test_runs_here() -> None:
    assert len(CONTRACT_TESTS) >= 18
    for name in CONTRACT_TESTS:
        assert globals()[name] is getattr(contract, name)
