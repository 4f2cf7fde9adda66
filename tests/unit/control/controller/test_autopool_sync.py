"""The auto-pool reconciler's effects on a real (SQLite) store: a pass creates, resizes and
deletes pools and writes the subnet's status at the versions it read; a write the store
refuses is logged and the pass goes on. (The k8s lane runs it on a real API server.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spidernet.control.controller.autopool_sync import AutoPools
from spidernet.control.store.base import CLAIM, Conflict, Key, Store, Stored
from spidernet.control.store.embedded import EmbeddedStore
from spidernet.node.agent import resources

UID = "aaaa-bbbb-cccccccccccc"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "db", synchronous="NORMAL")
    resources.apply(
        s,
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderSubnet",
            "metadata": {"name": "sub-a"},
            "spec": {"subnet": "10.4.0.0/24", "ips": ["10.4.0.10-10.4.0.30"]},
        },
    )
    yield s
    s.close()


def deployment(store: Store, replicas: int, version: str | None = None) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "uid": UID},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"annotations": {"ipam.spidernet.io/subnet": '{"ipv4": ["sub-a"]}'}}
            },
        },
    }
    key = Key("Deployment", "prod", "web")
    if version is None:
        store.create(key, body)
    else:
        store.update(key, body, version)


def pools(store: Store) -> dict[str, list[str]]:
    return {o.key.name: o.body["spec"]["ips"] for o in store.list("SpiderIPPool").items}


def test_a_pass_creates_resizes_and_deletes_and_keeps_the_subnet_status(
    store: EmbeddedStore,
) -> None:
    lines: list[str] = []
    part = AutoPools()
    deployment(store, 2)
    part.reconcile(store, 0.0, lines.append)
    assert pools(store) == {"auto4-web-eth0-ccccc": ["10.4.0.10-10.4.0.12"]}
    status = store.get(Key("SpiderSubnet", "", "sub-a")).body["status"]
    assert status["allocatedIPCount"] == 3
    assert json.loads(status["controlledIPPools"])["auto4-web-eth0-ccccc"]["application"] == (
        "apps_v1_Deployment_prod_web"
    )
    # A claim of .11 (a pod of the application) survives the scale-down to one replica.
    store.create(Key(CLAIM, "auto4-web-eth0-ccccc", "10.4.0.11"), {"pod": "prod/web-1"})
    deployment(store, 0, store.get(Key("Deployment", "prod", "web")).version)
    part.reconcile(store, 1.0, lines.append)
    assert pools(store) == {"auto4-web-eth0-ccccc": ["10.4.0.11"]}
    store.delete(Key("Deployment", "prod", "web"))
    part.reconcile(store, 2.0, lines.append)
    assert pools(store) == {"auto4-web-eth0-ccccc": ["10.4.0.11"]}  # still claimed
    store.delete(Key(CLAIM, "auto4-web-eth0-ccccc", "10.4.0.11"))
    part.reconcile(store, 3.0, lines.append)
    assert pools(store) == {}
    assert "controlledIPPools" not in store.get(Key("SpiderSubnet", "", "sub-a")).body["status"]
    assert lines[0] == "created auto pool auto4-web-eth0-ccccc: 3 addresses for Deployment prod/web"
    assert any("kept while 1 of its addresses are in use" in line for line in lines)
    assert any(line.startswith("deleted auto pool auto4-web-eth0-ccccc") for line in lines)


class Refusing:
    """The store, except that pool creates are refused (as an API server refuses a label
    value too long, or an admission webhook a pool)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, key: Key, body: Any) -> Stored:
        if key.kind == "SpiderIPPool":
            raise Conflict(key, "refused for the test")
        return self.store.create(key, body)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_refused_write_is_logged_and_the_pass_goes_on(store: EmbeddedStore) -> None:
    lines: list[str] = []
    deployment(store, 1)
    AutoPools().reconcile(Refusing(store), 0.0, lines.append)
    assert pools(store) == {}
    assert lines[0].startswith("auto pool auto4-web-eth0-ccccc: skipped until the next pass")
    assert lines[-1].startswith("status of SpiderSubnet sub-a:")
