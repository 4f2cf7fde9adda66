"""spidernet-ipam's `match_master_subnet` (node/ipam/master.py): which link is the master of the
call's NIC, and the config errors when there is none; then the plugin over a real IPAM core
and SQLite store picking each rail's pool with one network config."""

from __future__ import annotations

import io
import ipaddress
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.errors import CNIError, Code
from spidernet.cni.skel import plugin_main
from spidernet.control.store.embedded import EmbeddedStore
from spidernet.node.agent import resources
from spidernet.node.agent.ipam import IpamCore
from spidernet.node.ipam.master import master_link, resolve
from spidernet.node.ipam.plugin import make_plugin


def test_the_master_is_the_main_plugins_master_else_the_vfs_pf(tmp_path: Path) -> None:
    assert master_link({"type": "macvlan", "master": "rail0"}, tmp_path) == "rail0"
    vf = tmp_path / "bus" / "pci" / "devices" / "0000:00:04.1"
    (vf / "physfn" / "net" / "enp0s4").mkdir(parents=True)
    assert master_link({"type": "sriov", "deviceID": "0000:00:04.1"}, tmp_path) == "enp0s4"
    assert master_link({"type": "host-device", "pciBusID": "0000:00:04.1"}, tmp_path) == "enp0s4"
    runtime = {"runtimeConfig": {"deviceID": "0000:00:04.1"}}
    assert master_link({"type": "host-device", **runtime}, tmp_path) == "enp0s4"
    assert master_link({"type": "sriov", "deviceID": "0000:00:09.0"}, tmp_path) == ""
    assert master_link({"type": "sriov", "deviceID": "../../etc"}, tmp_path) == ""
    assert master_link({"type": "ovs", "bridge": "br1"}, tmp_path) == ""


def test_no_master_or_an_unknown_one_is_a_config_error(tmp_path: Path) -> None:
    def read(name: str) -> tuple[Any, ...]:
        raise LookupError(name)

    with pytest.raises(CNIError) as e:
        resolve({"type": "ovs"}, read, tmp_path)
    assert e.value.code == Code.INVALID_NETWORK_CONFIG
    assert "names no master" in e.value.msg
    with pytest.raises(CNIError) as e:
        resolve({"master": "rail9"}, read, tmp_path)
    assert "master 'rail9' does not exist on this node" in e.value.msg


@pytest.fixture
def core(tmp_path: Path) -> Iterator[IpamCore]:
    store = EmbeddedStore(tmp_path / "db", synchronous="NORMAL")
    for name, net in (("rail0", "10.81.0"), ("rail1", "10.82.0")):
        doc = {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderIPPool",
            "metadata": {"name": name},
            "spec": {"subnet": f"{net}.0/24", "ips": [f"{net}.10-{net}.20"]},
        }
        resources.apply(store, doc)
    yield IpamCore(store, node="node1", rng=random.Random(2))
    store.close()


MASTERS = {
    "rail0": (ipaddress.ip_interface("10.81.0.2/24"),),
    "rail1": (ipaddress.ip_interface("10.82.0.2/24"),),
}


def add(core: IpamCore, master: str, ifname: str, match: bool = True) -> dict[str, Any]:
    ipam: dict[str, Any] = {"type": "spidernet-ipam", "default_ipv4_ippool": ["rail0", "rail1"]}
    if match:
        ipam["match_master_subnet"] = True
    conf = {"cniVersion": "1.0.0", "name": "rails", "type": "macvlan", "master": master}
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_IFNAME": ifname,
        "CNI_NETNS": "/run/netns/x",
        "CNI_PATH": "/x",
        "CNI_ARGS": "K8S_POD_NAMESPACE=ai;K8S_POD_NAME=trainer-0",
    }
    out = io.StringIO()
    plugin_main(
        make_plugin(core, MASTERS.__getitem__),
        environ=env,
        stdin=io.BytesIO(json.dumps(conf | {"ipam": ipam}).encode()),
        stdout=out,
        stderr=io.StringIO(),
    )
    answer: dict[str, Any] = json.loads(out.getvalue())
    return answer


def test_one_config_gives_each_rail_nic_its_rails_pool(core: IpamCore) -> None:
    net1 = add(core, "rail0", "net1")
    net2 = add(core, "rail1", "net2")
    assert net1["ips"][0]["address"].startswith("10.81.0.")
    assert net2["ips"][0]["address"].startswith("10.82.0.")
    # Without the switch the first pool listed serves both.
    assert add(core, "rail1", "net3", match=False)["ips"][0]["address"].startswith("10.81.0.")


def test_a_master_the_node_lacks_is_error_7_and_allocates_nothing(core: IpamCore) -> None:
    answer = add(core, "rail7", "net1")
    assert answer["code"] == Code.INVALID_NETWORK_CONFIG
    assert "rail7" in answer["msg"]
    assert core.store.list("IPClaim", namespace="rail0").items == ()
