"""apply and unwind on the in-memory kernel: a real coordinator plan, gathered from the
kernel, applied and undone; a failure injected at every mutating call leaves both
namespaces as they were; DEL's unwind is harmless twice and after the pod's namespace
is gone."""

from __future__ import annotations

import pytest

from spidernet.netconf.coordinator.config import parse_coordinator
from spidernet.node.coordinator.gather import gather_host, gather_pod
from spidernet.node.coordinator.plan import Request, plan_add, sysctl_keys
from spidernet.node.netlink.records import Rule
from spidernet.node.plan.apply import ApplyFailed, Target, apply, unwind
from spidernet.node.plan.ops import (
    AddRule,
    AddVeth,
    Announce,
    Op,
    ReplyViaLink,
    SetSysctl,
    undo_all,
)
from spidernet.testbed.fakekernel import FakeKernel
from spidernet.testbed.fakeworld import HOST, POD, underlay

TARGET = Target(POD, HOST)


def coordinator_plan(kernel: FakeKernel) -> tuple[Op, ...]:
    """The coordinator's first-NIC underlay plan, from facts read off the kernel."""
    conf = parse_coordinator(
        {"cniVersion": "1.0.0", "name": "n", "type": "x", "serviceCIDR": ["10.96.0.0/12"]}
    )
    access = kernel.access()
    with kernel.netlink(POD) as pod_nl, kernel.netlink(HOST) as host_nl:
        pod = gather_pod(pod_nl, access.read_sysctls(POD, sysctl_keys(conf, "eth0")))
        host = gather_host(host_nl, pod, "")
    request = Request("c0ffee", "eth0", conf, "02:00:00:00:00:01", "02:00:00:00:00:02")
    return plan_add(request, pod, host, mode="underlay", first=True, nic_index=0)


def calls_to_apply(plan: tuple[Op, ...]) -> int:
    kernel = underlay()
    apply(plan, TARGET, access=kernel.access())
    return len(kernel.mutations)


def test_the_plan_touches_both_sides_and_its_undo_restores_them() -> None:
    kernel = underlay()
    plan = coordinator_plan(kernel)
    assert {AddVeth, ReplyViaLink, SetSysctl} <= {type(op) for op in plan}
    before = kernel.snapshot()
    apply(plan, TARGET, access=kernel.access())
    after = kernel.snapshot()
    assert after[HOST] != before[HOST]
    assert after[POD] != before[POD]
    assert unwind(undo_all(plan), TARGET, access=kernel.access()) == []
    assert kernel.snapshot() == before


@pytest.mark.parametrize("index", range(calls_to_apply(coordinator_plan(underlay()))))
def test_a_failure_at_any_call_leaves_nothing_behind(index: int) -> None:
    kernel = underlay()
    plan = coordinator_plan(kernel)
    before = kernel.snapshot()
    access = kernel.access()
    kernel.fail_call(index)
    with pytest.raises(ApplyFailed) as failed:
        apply(plan, TARGET, access=access)
    assert "Input/output error" in str(failed.value)
    assert failed.value.undo_errors == []
    assert kernel.snapshot() == before
    assert all(client.closed for client in access.opened)


def test_every_call_of_the_plan_was_a_failure_point() -> None:
    # The parametrization above is only as good as this count (a plan whose calls the fake
    # did not count would test nothing).
    plan = coordinator_plan(underlay())
    assert calls_to_apply(plan) == sum(1 for op in plan if not isinstance(op, Announce))


def test_an_existing_object_fails_the_add_and_is_left_alone() -> None:
    kernel = underlay()
    plan = coordinator_plan(kernel)
    with kernel.netlink(POD) as nl:
        nl.add_rule(_rule_of(plan))
    before = kernel.snapshot()
    with pytest.raises(ApplyFailed, match="File exists"):
        apply(plan, TARGET, access=kernel.access())
    assert kernel.snapshot() == before


def _rule_of(plan: tuple[Op, ...]) -> Rule:
    op = next(op for op in plan if isinstance(op, AddRule) and op.side == "pod")
    return Rule(op.family, op.priority, op.table, src=op.src, dst=op.dst, fwmark=op.fwmark)


def test_unwind_twice_and_without_apply_is_harmless() -> None:
    kernel = underlay()
    plan = coordinator_plan(kernel)
    before = kernel.snapshot()
    assert unwind(undo_all(plan), TARGET, access=kernel.access()) == []  # DEL without ADD
    apply(plan, TARGET, access=kernel.access())
    assert unwind(undo_all(plan), TARGET, access=kernel.access()) == []
    assert unwind(undo_all(plan), TARGET, access=kernel.access()) == []  # DEL twice
    assert kernel.snapshot() == before


def test_unwind_after_the_pod_namespace_is_gone_cleans_the_host() -> None:
    kernel = underlay()
    plan = coordinator_plan(kernel)
    host_before = kernel.snapshot()[HOST]
    apply(plan, TARGET, access=kernel.access())
    kernel.remove(POD)
    assert unwind(undo_all(plan), TARGET, access=kernel.access()) == []
    assert kernel.snapshot()[HOST] == host_before


def test_unwind_reports_a_failure_and_carries_on() -> None:
    kernel = underlay()
    plan = coordinator_plan(kernel)
    before = kernel.snapshot()
    apply(plan, TARGET, access=kernel.access())
    kernel.fail_call(0)
    errors = unwind(undo_all(plan), TARGET, access=kernel.access())
    assert len(errors) == 1
    assert "Input/output error" in errors[0]
    assert unwind(undo_all(plan), TARGET, access=kernel.access()) == []
    assert kernel.snapshot() == before
