"""The `Rtnetlink` contract (testbed/netlink_contract.py) against the in-memory kernel; the
netns lane runs the same cases against the real adapter (tests/netns/test_netlink_contract.py)."""

from __future__ import annotations

import pytest

from spidernet.testbed.fakekernel import FakeKernel
from spidernet.testbed.netlink_contract import CASES, Bench, Case


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fake_kernel_keeps_the_contract(case: Case) -> None:
    kernel = FakeKernel()
    kernel.namespace("/run/netns/a")
    kernel.namespace("/run/netns/b")
    case.run(Bench("/run/netns/a", "/run/netns/b", "/run/netns/missing", kernel.netlink))
