"""The IPAM core and SpiderSubnet auto pools, in-process over a real SQLite store: embedded
mode refuses the annotation (error 7, saying what it needs); in Kubernetes mode an ADD whose
auto pool is missing is Deferred (the service runs it again later) until the wait is over, then
fails naming the subnet and the application; once the pool exists it allocates from it."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.errors import Deferred
from spidernet.cni.skel import plugin_main
from spidernet.control.allocator.request import AppRef
from spidernet.control.controller.autopool import pool_document
from spidernet.control.controller.autopool_wants import Application, Want
from spidernet.control.model.documents import parse
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.resources import Subnet
from spidernet.control.store.embedded import EmbeddedStore
from spidernet.node.agent import resources
from spidernet.node.agent.ipam import AutoPoolWait, IpamCore
from spidernet.node.ipam.plugin import make_plugin

ANNO = {"ipam.spidernet.io/subnet": '{"ipv4": ["sub-a"]}'}
DB = AppRef("apps/v1", "StatefulSet", "ns", "db", "aaaa-bbbb-cccccccccccc")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "db", synchronous="NORMAL")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "db-0",
            "namespace": "ns",
            "uid": "pod-uid-1",
            "annotations": ANNO,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": "db",
                    "uid": DB.uid,
                    "controller": True,
                }
            ],
        },
    }
    resources.apply(s, pod)
    yield s
    s.close()


def add(core: IpamCore, pod: str = "db-0") -> tuple[int, dict[str, Any]]:
    conf = {
        "cniVersion": "1.0.0",
        "name": "net",
        "type": "macvlan",
        "ipam": {"type": "spidernet-ipam"},
    }
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/x",
        "CNI_NETNS": "/run/netns/x",
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME={pod}",
    }
    out, err = io.StringIO(), io.StringIO()
    status = plugin_main(
        make_plugin(core),
        environ=env,
        stdin=io.BytesIO(json.dumps(conf).encode()),
        stdout=out,
        stderr=err,
    )
    return status, json.loads(out.getvalue())


def auto_pool_doc() -> dict[str, Any]:
    sub = parse(
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderSubnet",
            "metadata": {"name": "sub-a"},
            "spec": {"subnet": "10.3.0.0/24", "ips": ["10.3.0.2-10.3.0.50"]},
        }
    )
    assert isinstance(sub, Subnet)
    want = Want(Application(DB, 1, ANNO), "eth0", 4, "sub-a", 2, True)
    return pool_document(want, sub, IntervalSet.parse(["10.3.0.2-10.3.0.3"], 4))


def test_embedded_mode_refuses_with_error_7(store: EmbeddedStore) -> None:
    status, answer = add(IpamCore(store, node="n1"))
    assert status == 1
    assert answer["code"] == 7
    assert "spidernet serve --kube" in answer["msg"]
    assert "ipam.spidernet.io/subnet" in answer["msg"]


def test_kube_mode_defers_then_fails_naming_subnet_and_app(store: EmbeddedStore) -> None:
    clock = Clock()
    wait = AutoPoolWait(enabled=True, retries=4, interval_s=0.5)
    core = IpamCore(store, node="n1", auto_pool_wait=wait, clock=clock)
    with pytest.raises(Deferred) as later:
        add(core)
    assert later.value.after_s == 0.5
    clock.now += 1.9
    with pytest.raises(Deferred):
        add(core)
    clock.now += 0.1  # 4 x 0.5 s since the first try
    status, answer = add(core)
    assert status == 1
    assert answer["code"] == 110  # NO_POOL
    assert "SpiderSubnet 'sub-a'" in answer["msg"]
    assert "StatefulSet ns/db" in answer["msg"]
    assert "waited 2s" in answer["msg"]
    # A new try starts a new wait.
    with pytest.raises(Deferred):
        add(core)


def test_kube_mode_allocates_from_the_auto_pool_once_it_exists(store: EmbeddedStore) -> None:
    core = IpamCore(
        store, node="n1", rng=random.Random(1), auto_pool_wait=AutoPoolWait(enabled=True)
    )
    with pytest.raises(Deferred):
        add(core)
    resources.apply(store, auto_pool_doc())
    status, answer = add(core)
    assert status == 0, answer
    assert answer["ips"][0]["address"] in ("10.3.0.2/24", "10.3.0.3/24")
    assert core._waiting == {}
