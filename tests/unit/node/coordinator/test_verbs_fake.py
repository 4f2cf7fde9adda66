"""spidernet-coordinator's verbs in-process on the in-memory kernel, through the skel and
the real result decoder: ADD, CHECK (and the drift it names), DEL twice, DEL without ADD,
DEL after the pod's namespace is gone."""

from __future__ import annotations

import io
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.skel import plugin_main
from spidernet.node import nft
from spidernet.node.coordinator.commands import Context, make_plugin
from spidernet.node.netlink.records import Route
from spidernet.testbed.fakekernel import FakeKernel
from spidernet.testbed.fakeworld import HOST, HOST_IP, POD, POD_IP, underlay

CONF = {
    "cniVersion": "1.0.0",
    "name": "underlay",
    "type": "spidernet-coordinator",
    "serviceCIDR": ["10.96.0.0/12"],
    "prevResult": {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:99:01", "sandbox": POD}],
        "ips": [{"address": f"{POD_IP}/24", "interface": 0}],
    },
}
ENV = {"CNI_CONTAINERID": "c0ffee", "CNI_NETNS": POD, "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}


class Node:
    """The coordinator over a fake kernel, with its state in `state_dir`."""

    def __init__(self, kernel: FakeKernel, state_dir: Path) -> None:
        self.kernel = kernel
        ctx = Context(HOST, state_dir, cluster=lambda _ns, _name: None, access=kernel.access())
        self.plugin = make_plugin(ctx)

    def call(self, command: str, **env: str) -> tuple[int, dict[str, Any] | None]:
        out, err = io.StringIO(), io.StringIO()
        environ = {**ENV, "CNI_COMMAND": command, **env}
        data = io.BytesIO(json.dumps(CONF).encode())
        status = plugin_main(self.plugin, environ=environ, stdin=data, stdout=out, stderr=err)
        return status, json.loads(out.getvalue()) if out.getvalue() else None


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    kernel = underlay()

    # CHECK reads the pod's nftables with the nft program, not through the access layer.
    def listed(path: str) -> str | None:
        return "table" if nft.TABLE in kernel.get(path).nft_tables else None

    monkeypatch.setattr(nft, "list_reply_via_link", listed)
    return Node(kernel, tmp_path)


def test_add_check_del_and_del_again(node: Node) -> None:
    before = node.kernel.snapshot()
    status, result = node.call("ADD")
    assert status == 0, result
    assert result is not None
    assert result["ips"][0]["address"] == f"{POD_IP}/24"
    assert node.kernel.snapshot() != before
    assert node.call("CHECK") == (0, None)
    assert node.call("DEL") == (0, None)
    assert node.kernel.snapshot() == before
    assert node.call("DEL") == (0, None)
    assert node.kernel.snapshot() == before


def test_del_without_add_succeeds_and_changes_nothing(node: Node) -> None:
    before = node.kernel.snapshot()
    assert node.call("DEL") == (0, None)
    assert node.kernel.snapshot() == before


def test_del_after_the_pod_is_gone_cleans_the_host(node: Node) -> None:
    host_before = node.kernel.snapshot()[HOST]
    assert node.call("ADD")[0] == 0
    node.kernel.remove(POD)
    assert node.call("DEL") == (0, None)
    assert node.call("DEL", CNI_NETNS="") == (0, None)
    assert node.kernel.snapshot()[HOST] == host_before


def test_check_names_what_drifted(node: Node) -> None:
    assert node.call("ADD")[0] == 0
    with node.kernel.netlink(POD) as nl:
        veth0 = nl.index("veth0")
        service = Route(
            ipaddress.ip_network("10.96.0.0/12"),
            gateway=ipaddress.ip_address(HOST_IP),
            oif=veth0,
            proto=0,
        )
        nl.delete_route(service)
    node.kernel.get(POD).sysctls["net.ipv4.conf.all.rp_filter"] = "1"
    status, error = node.call("CHECK")
    assert status == 1
    assert error is not None
    assert error["msg"] == "spidernet-coordinator: 2 differences from ADD"
    assert "route 10.96.0.0/12" in error["details"]
    assert "is missing" in error["details"]
    assert "sysctl net.ipv4.conf.all.rp_filter in the pod is 1, not 0" in error["details"]


def test_a_failed_add_leaves_nothing_and_no_saved_plan(node: Node, tmp_path: Path) -> None:
    before = node.kernel.snapshot()
    node.kernel.fail_call(5)
    status, error = node.call("ADD")
    assert status == 1
    assert error is not None
    assert "Input/output error" in error["msg"]
    assert node.kernel.snapshot() == before
    assert list((tmp_path / "coordinator").iterdir()) == []
