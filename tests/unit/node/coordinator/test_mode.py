"""The coordinator's mode and policy-table rules of reference §4.2: which mode an interface
gets from its config, its place among the pod's interfaces and veth0, and which routing table
each interface's policy routes use."""

from __future__ import annotations

from typing import Any

import pytest

from spidernet.cni.errors import CNIError, Code
from spidernet.netconf.coordinator.config import CoordinatorConf, parse_coordinator
from spidernet.netconf.coordinator.mode import Mode, policy_table, resolve_mode


def parse(**keys: Any) -> CoordinatorConf:
    """A coordinator config of `keys` alone (no SpiderCoordinator)."""
    return parse_coordinator({"cniVersion": "1.0.0", "name": "n", "type": "x", **keys})


# Mode resolution (reference §4.2): (mode, ifname, veth0 exists, nic_index) -> Mode.
MODE_TABLE: list[tuple[str, str, bool, int | None, Mode]] = [
    ("auto", "eth0", False, 0, Mode("underlay", True)),
    ("auto", "eth0", True, 0, Mode("underlay", True)),
    ("auto", "net1", True, 1, Mode("underlay", False)),
    ("auto", "net1", False, 1, Mode("overlay", True)),
    ("auto", "net2", False, 2, Mode("overlay", False)),
    ("underlay", "eth0", False, None, Mode("underlay", True)),
    ("underlay", "net1", True, None, Mode("underlay", False)),
    ("underlay", "net2", True, 2, Mode("underlay", False)),
    ("overlay", "net1", False, 1, Mode("overlay", True)),
    ("overlay", "net2", False, 2, Mode("overlay", False)),
]


@pytest.mark.parametrize(("mode", "ifname", "veth0", "index", "expected"), MODE_TABLE)
def test_resolve_mode(
    mode: str, ifname: str, veth0: bool, index: int | None, expected: Mode
) -> None:
    assert resolve_mode(parse(mode=mode), ifname, veth0, index) == expected


def test_resolve_mode_uses_pod_default_cni_nic() -> None:
    conf = parse(podDefaultCniNic="net0")
    assert resolve_mode(conf, "net0", False) == Mode("underlay", True)
    assert resolve_mode(conf, "eth0", False, 1) == Mode("overlay", True)


@pytest.mark.parametrize(
    ("mode", "ifname", "veth0", "reason"),
    [
        ("underlay", "net1", False, "underlay mode needs 'veth0'"),
        ("overlay", "eth0", False, "is the pod's first interface"),
        ("overlay", "eth0", True, "is the pod's first interface"),
        ("overlay", "net1", True, "overlay mode cannot follow underlay"),
    ],
)
def test_resolve_mode_refuses(mode: str, ifname: str, veth0: bool, reason: str) -> None:
    with pytest.raises(CNIError) as info:
        resolve_mode(parse(mode=mode), ifname, veth0, 1)
    assert info.value.code == Code.INVALID_NETWORK_CONFIG
    assert info.value.msg.startswith(
        f"failed to resolve coordinator mode for interface '{ifname}': "
    )
    assert reason in info.value.msg


@pytest.mark.parametrize(("mode", "ifname"), [("disabled", "eth0"), ("overlay", "net1")])
def test_resolve_mode_caller_errors(mode: str, ifname: str) -> None:
    # disabled: the plugin returns before resolving; overlay: nic_index is required.
    with pytest.raises(ValueError, match=mode if mode == "disabled" else "nic_index"):
        resolve_mode(parse(mode=mode), ifname, False)


@pytest.mark.parametrize(("index", "table"), [(1, 101), (2, 102), (3, 103), (152, 252)])
def test_policy_table(index: int, table: int) -> None:
    assert policy_table(index) == table


@pytest.mark.parametrize("index", [0, -1, 153])
def test_policy_table_refuses_main_reply_and_kernel_tables(index: int) -> None:
    with pytest.raises(ValueError, match=r"out of range 1\.\.152"):
        policy_table(index)
