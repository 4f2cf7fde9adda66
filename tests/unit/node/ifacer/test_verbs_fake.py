"""spidernet-ifacer's verbs in-process on the in-memory kernel: a bond of two NICs with a
VLAN on top is made by ADD and found by CHECK; a failure at any call of it leaves the
host as it was; DEL twice and DEL without ADD succeed and leave the links for prune."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.skel import plugin_main
from spidernet.node.ifacer.commands import Context, make_plugin
from spidernet.testbed.fakekernel import FakeKernel

ENV = {"CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/x", "CNI_IFNAME": "net1", "CNI_PATH": "/x"}


class Host:
    """The ifacer over a fake host namespace with eth1 (up) and eth2 (down). The namespace
    is keyed by a real file's path: the ifacer records the host namespace's inode."""

    def __init__(self, tmp_path: Path) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.path = str(tmp_path / "host-netns")
        Path(self.path).touch()
        self.kernel = FakeKernel()
        self.kernel.namespace(self.path)
        with self.kernel.netlink(self.path) as nl:
            nl.add_link("eth1", "physical")
            nl.add_link("eth2", "physical")
            nl.set_link("eth1", state="up")
        self.conf = {
            "cniVersion": "1.0.0",
            "name": "bonded",
            "type": "spidernet-ifacer",
            "interfaces": ["eth1", "eth2"],
            "vlanID": 100,
            "bond": {"name": "bond0", "mode": 1, "options": "miimon=100;primary=eth2"},
            "stateDir": str(tmp_path / "state"),
        }
        self.plugin = make_plugin(Context(self.path, self.kernel.access()))

    def call(self, command: str) -> tuple[int, dict[str, Any] | None]:
        out, err = io.StringIO(), io.StringIO()
        environ = {**ENV, "CNI_COMMAND": command}
        data = io.BytesIO(json.dumps(self.conf).encode())
        status = plugin_main(self.plugin, environ=environ, stdin=data, stdout=out, stderr=err)
        return status, json.loads(out.getvalue()) if out.getvalue() else None

    def links(self) -> dict[str, tuple[str, bool, str | None]]:
        with self.kernel.netlink(self.path) as nl:
            links = nl.links()
        names = {x.index: x.name for x in links}
        return {x.name: (x.kind, x.up, names.get(x.master or -1)) for x in links}


def calls_of_add() -> int:
    """How many mutating calls a successful ADD makes (every one a failure point below)."""
    with tempfile.TemporaryDirectory() as scratch:
        host = Host(Path(scratch))
        host.kernel.mutations.clear()
        assert host.call("ADD")[0] == 0
        return len(host.kernel.mutations)


def test_add_makes_the_bond_and_vlan_and_check_finds_them(tmp_path: Path) -> None:
    host = Host(tmp_path)
    assert host.call("CHECK")[0] == 1  # nothing made yet
    status, result = host.call("ADD")
    assert status == 0, result
    assert host.links() == {
        "lo": ("", True, None),
        "eth1": ("physical", True, "bond0"),
        "eth2": ("physical", True, "bond0"),
        "bond0": ("bond", True, None),
        "bond0.100": ("vlan", True, None),
    }
    assert host.call("CHECK") == (0, None)
    assert host.call("DEL") == (0, None)
    assert host.call("DEL") == (0, None)
    assert "bond0.100" in host.links()  # other pods may use it: `spidernet ifacer prune`


def test_del_without_add_succeeds(tmp_path: Path) -> None:
    host = Host(tmp_path)
    before = host.kernel.snapshot()
    assert host.call("DEL") == (0, None)
    assert host.kernel.snapshot() == before


def test_add_makes_a_call_per_kernel_change() -> None:
    # bond, alias, 2 x (down, enslave, up), vlan, alias, bond up, vlan up
    assert calls_of_add() == 12


@pytest.mark.parametrize("index", range(calls_of_add()))
def test_a_failure_at_any_call_of_add_leaves_the_host_as_it_was(index: int, tmp_path: Path) -> None:
    host = Host(tmp_path)
    before = host.kernel.snapshot()
    host.kernel.fail_call(index)
    status, error = host.call("ADD")
    assert status == 1
    assert error is not None
    assert "Input/output error" in error["msg"]
    assert host.kernel.snapshot() == before
    assert not list((tmp_path / "state" / "users").glob("*.json"))
