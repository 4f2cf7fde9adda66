"""CHECK: does the kernel still hold what the saved ADD plan made? (effect: reads only)

Each operation that leaves something behind is looked for on its side; the answer is one
sentence per difference, in the plan's own words ("route 10.96.0.0/12 ... in the pod is
missing"). Spiderpool's CHECK does nothing.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spidernet.cni.errors import CNIError, Code
from spidernet.node import nft
from spidernet.node.access.base import Reach
from spidernet.node.netlink.errors import NetlinkMissing
from spidernet.node.netlink.protocol import Rtnetlink
from spidernet.node.netlink.records import State
from spidernet.node.netns import NetnsGone
from spidernet.node.plan.apply import Target
from spidernet.node.plan.codec import CodecError, loads
from spidernet.node.plan.describe import describe
from spidernet.node.plan.ops import (
    AddAddress,
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    DeleteRoute,
    Op,
    ReplyViaLink,
    SetMac,
    SetSysctl,
    SetTxQueueLen,
)


def _route_there(state: State, names: dict[int, str], op: AddRoute | DeleteRoute) -> bool:
    return any(
        r.dst == op.dst
        and r.table == op.table
        and names.get(r.oif or -1) == op.dev
        and (op.gateway is None or r.gateway == op.gateway)
        for r in state.routes
    )


def _rule_there(state: State, op: AddRule) -> bool:
    return any(
        r.family == op.family
        and r.table == op.table
        and r.priority == op.priority
        and r.src == op.src
        and r.dst == op.dst
        and r.fwmark == op.fwmark
        for r in state.rules
    )


def _neighbour_there(state: State, names: dict[int, str], op: AddNeighbour) -> bool:
    return any(
        n.dst == op.ip and names.get(n.ifindex) == op.dev and n.lladdr.lower() == op.mac.lower()
        for n in state.neighbours
    )


def _missing(op: Op, state: State, names: dict[int, str]) -> bool:
    """True when `op`'s result is not in `state` (ops this check cannot see count as there)."""
    links = {link.name: link for link in state.links}
    if isinstance(op, AddVeth):
        return op.host_name not in links
    if isinstance(op, AddRoute):
        return not _route_there(state, names, op)
    if isinstance(op, DeleteRoute):
        return _route_there(state, names, op)  # a moved route came back
    if isinstance(op, AddRule):
        return not _rule_there(state, op)
    if isinstance(op, AddNeighbour):
        return not _neighbour_there(state, names, op)
    if isinstance(op, AddAddress):
        index = links[op.name].index if op.name in links else -1
        return not any(a.index == index and a.address.ip == op.address.ip for a in state.addresses)
    if isinstance(op, SetMac):
        link = links.get(op.name)
        return link is None or link.mac.lower() != op.mac.lower()
    return False


def _state(nl: Rtnetlink) -> tuple[State, dict[int, str]]:
    state = nl.state()
    return state, {link.index: link.name for link in state.links}


@dataclass(frozen=True)
class Drift:
    """One difference: the operation whose result is gone (None: the nftables marking), and
    the sentence that says so."""

    op: Op | None
    message: str


def drift(plan: Sequence[Op], target: Target, access: Reach) -> list[Drift]:
    """What of `plan` the kernel no longer holds, one record each (empty: all there)."""
    problems: list[Drift] = []
    queues: dict[str, int | None] = {}
    try:
        with (
            access.netlink(target.pod_netns) as pod_nl,
            access.netlink(target.host_netns) as host_nl,
        ):
            sides = {"pod": _state(pod_nl), "host": _state(host_nl)}
            for op in plan:
                if isinstance(op, SetTxQueueLen) and op.side == "pod":
                    try:
                        queues[op.name] = pod_nl.txqlen(op.name)
                    except NetlinkMissing:
                        queues[op.name] = None
    except NetnsGone as e:
        return [Drift(None, str(e))]
    for op in plan:
        if isinstance(op, AddVeth):
            state, names = sides["host"]
            if _missing(op, state, names):
                problems.append(Drift(op, f"{describe(op)}: the host end is missing"))
            continue
        if isinstance(op, SetTxQueueLen):
            if op.side == "pod" and queues.get(op.name) != op.qlen:
                said = f"{describe(op)}: the queue length is {queues.get(op.name)}"
                problems.append(Drift(op, said))
            continue
        if isinstance(op, ReplyViaLink | SetSysctl):
            continue  # checked below
        state, names = sides[op.side]
        if _missing(op, state, names):
            what = "is back" if isinstance(op, DeleteRoute) else "is missing"
            problems.append(Drift(op, f"{describe(op)}: {what}"))
    marking = any(isinstance(op, ReplyViaLink) for op in plan)
    if marking and nft.list_reply_via_link(target.pod_netns) is None:
        problems.append(Drift(None, "the pod's nftables reply marking is missing"))
    sysctls = [op for op in plan if isinstance(op, SetSysctl) and op.side == "pod"]
    if sysctls:
        current = access.read_sysctls(target.pod_netns, [op.key for op in sysctls])
        for sysctl in sysctls:
            if current.get(sysctl.key) != sysctl.value:
                said = (
                    f"sysctl {sysctl.key} in the pod is {current.get(sysctl.key)}, "
                    f"not {sysctl.value}"
                )
                problems.append(Drift(sysctl, said))
    return problems


def load_plan(path: Path) -> tuple[Op, ...] | None:
    """The plan ADD saved at `path`, None when there is none; raises CNIError when it cannot
    be read."""
    try:
        return loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (CodecError, OSError) as e:
        raise CNIError(Code.IO_FAILURE, f"failed to read the saved plan '{path}': {e}") from e


def saved_plans(state_dir: Path, container_id: str) -> dict[str, tuple[Op, ...]]:
    """The plans ADD saved for a container under `state_dir`, by interface (what CHECK and
    `spidernet diag` compare the kernel with); raises CNIError when one cannot be read."""
    found: dict[str, tuple[Op, ...]] = {}
    prefix = f"{container_id}-"
    for path in sorted((state_dir / "coordinator").glob(f"{glob.escape(container_id)}-*.json")):
        plan = load_plan(path)
        if plan is not None:
            found[path.name.removeprefix(prefix).removesuffix(".json")] = plan
    return found
