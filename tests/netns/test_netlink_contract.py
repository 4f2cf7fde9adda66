"""The `Rtnetlink` contract (testbed/netlink_contract.py) against the real adapter, each case
in two namespaces of its own (removed afterwards, on failure too: the `topo` fixture); the
unit lane runs the same cases against the in-memory kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from spidernet.node import netns
from spidernet.node.lab.topology import Topology
from spidernet.node.netlink.client import open_netlink
from spidernet.testbed.netlink_contract import CASES, Bench, Case

# The kernel module behind each link kind a case may need beyond veth and bridge.
MODULES = {"vlan": "8021q", "bond": "bonding"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_adapter_keeps_the_contract(case: Case, topo: Topology) -> None:
    lacking = [MODULES[k] for k in case.needs if not Path("/sys/module", MODULES[k]).exists()]
    if lacking:
        pytest.skip(f"this kernel has no {', '.join(lacking)} (the kernel lane has)")
    a, b = netns.path_of(topo.namespace("a")), netns.path_of(topo.namespace("b"))
    case.run(Bench(a, b, f"/run/netns/{topo.prefix}-missing", open_netlink))
