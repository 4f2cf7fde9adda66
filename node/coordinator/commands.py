"""spidernet-coordinator's verbs: load config -> gather facts -> plan -> apply -> result.

ADD saves the plan it applied (before applying it, so a crash leaves a record to undo);
DEL replays that plan's undos, so it removes exactly what ADD made on both sides
(Spiderpool's DEL leaves host routes and rules behind); CHECK compares the kernel with the
saved plan and names what drifted (Spiderpool's CHECK does nothing). The effects a host
offers (where the host namespace is, the cluster's SpiderCoordinator, announcements) come
in through a `Context`, so the node service and the in-process fallback share this code.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from spidernet.cni.errors import CNIError, Code
from spidernet.cni.result import Result
from spidernet.cni.skel import CallArgs, Plugin
from spidernet.netconf.coordinator.config import (
    ClusterSettings,
    CoordinatorConf,
    parse_coordinator,
    resolve_mode,
)
from spidernet.node.access.base import Reach
from spidernet.node.access.spawn import Spawning
from spidernet.node.netns import NetnsGone
from spidernet.node.plan.apply import Announcer, ApplyFailed, Target, apply, unwind
from spidernet.node.plan.codec import dumps
from spidernet.node.plan.ops import AddRule, DeleteLink, Op, SetMac, undo_all

from .check import drift, load_plan
from .gather import gather_host, gather_pod
from .plan import (
    HOST_RULE_PRIORITY,
    CoordinatorPlanError,
    Request,
    host_veth_name,
    plan_add,
    sysctl_keys,
)

NAME = "spidernet-coordinator"

# (pod namespace, pod name) -> the cluster's settings for the pod, or None when no agent
# answers (config and defaults then decide).
ClusterLookup = Callable[[str, str], ClusterSettings | None]


@dataclass(frozen=True)
class Context:
    """What the coordinator needs from where it runs."""

    host_netns: str | None  # the host side's namespace path; None: this process's own
    state_dir: Path  # saved plans, one file per container and interface
    cluster: ClusterLookup
    announce: Announcer | None = None
    log: Callable[[str], None] = lambda _: None
    # How the namespaces are reached: the node service's broker, or a process per reach.
    access: Reach = field(default_factory=Spawning)


def random_mac() -> str:
    """A random locally administered unicast MAC (so no udev policy rewrites it)."""
    first = (secrets.randbits(8) & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in [first, *secrets.token_bytes(5)])


def _plan_path(ctx: Context, container_id: str, ifname: str) -> Path:
    return ctx.state_dir / "coordinator" / f"{container_id}-{ifname}.json"


def _conf(ctx: Context, args: CallArgs) -> CoordinatorConf:
    ns, name = args.env.arg("K8S_POD_NAMESPACE"), args.env.arg("K8S_POD_NAME")
    found = ctx.cluster(ns, name) if ns and name else None
    if found is None:
        ctx.log("no SpiderCoordinator settings (no control service): config and defaults apply")
    return parse_coordinator(args.conf.raw, found)


def _save(path: Path, plan: tuple[Op, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dumps(plan), encoding="utf-8")
    os.replace(tmp, path)


def _add(ctx: Context, args: CallArgs) -> Result:
    prev = args.conf.prev_result
    if prev is None:
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"{NAME} must follow a plugin: no prevResult")
    conf = _conf(ctx, args)
    if conf.mode == "disabled":
        return prev
    ifname, path = args.env.ifname, args.env.netns
    saved = _plan_path(ctx, args.env.container_id, ifname)
    with ExitStack() as stack:
        try:
            # One client per side for gathering and applying.
            pod_nl = stack.enter_context(ctx.access.netlink(path))
            pod = gather_pod(pod_nl, ctx.access.read_sysctls(path, sysctl_keys(conf, ifname)))
            names = [n.name for n in pod.nics]
            if ifname not in names:
                raise CNIError(
                    Code.INVALID_NETWORK_CONFIG, f"interface '{ifname}' is not in the pod"
                )
            index = names.index(ifname)
            mode = resolve_mode(conf, ifname, pod.veth0 is not None, index)
            host_nl = stack.enter_context(ctx.access.netlink(ctx.host_netns))
            host = gather_host(host_nl, pod, conf.pod_default_cni_nic)
            request = Request(args.env.container_id, ifname, conf, random_mac(), random_mac())
            plan = plan_add(
                request, pod, host, mode=mode.mode, first=mode.first_invoke, nic_index=index
            )
        except NetnsGone as e:
            raise CNIError(Code.INVALID_NETNS, str(e)) from e
        except CoordinatorPlanError as e:
            raise CNIError(Code.INVALID_NETWORK_CONFIG, str(e)) from e
        _save(saved, plan)
        try:
            apply(
                plan,
                Target(path, ctx.host_netns),
                announce=ctx.announce,
                clients={"pod": pod_nl, "host": host_nl},
                access=ctx.access,
            )
        except ApplyFailed as e:
            saved.unlink(missing_ok=True)
            raise CNIError(Code.INTERNAL, f"{NAME}: {e}") from e
        except BaseException:
            saved.unlink(missing_ok=True)
            raise
    return _with_new_macs(prev, plan)


def _with_new_macs(prev: Result, plan: tuple[Op, ...]) -> Result:
    """prevResult with the MACs the plan gave the pod's NICs (podMACPrefix): the runtime
    caches this result and hands it to every plugin's CHECK, and the main plugin's CHECK
    compares the NIC's MAC with it."""
    macs = {op.name: op.mac for op in plan if isinstance(op, SetMac) and op.side == "pod"}
    if not macs:
        return prev
    interfaces = tuple(
        replace(i, mac=macs[i.name]) if i.sandbox and i.name in macs else i for i in prev.interfaces
    )
    return replace(prev, interfaces=interfaces)


def _delete(ctx: Context, args: CallArgs) -> None:
    conf = _conf(ctx, args)
    if conf.mode == "disabled":
        return
    saved = _plan_path(ctx, args.env.container_id, args.env.ifname)
    plan = load_plan(saved)
    if plan is None:
        # No record (lost state, or ADD never ran): remove what can be found by name.
        table = conf.host_rule_table
        shared = tuple(
            AddRule("host", family, HOST_RULE_PRIORITY, table, shared=True)
            for family in (socket.AF_INET, socket.AF_INET6)
        )
        undo: tuple[Op, ...] = (
            DeleteLink("host", host_veth_name(args.env.container_id)),
            *undo_all(shared),
        )
    else:
        undo = undo_all(plan)
    target = Target(args.env.netns or "/nonexistent", ctx.host_netns)
    errors = unwind(undo, target, access=ctx.access)
    if errors:
        raise CNIError(Code.INTERNAL, f"{NAME}: DEL left work undone", "; ".join(errors))
    saved.unlink(missing_ok=True)


def _check(ctx: Context, args: CallArgs) -> None:
    conf = _conf(ctx, args)
    if conf.mode == "disabled":
        return
    plan = load_plan(_plan_path(ctx, args.env.container_id, args.env.ifname))
    if plan is None:
        raise CNIError(Code.UNKNOWN_CONTAINER, f"no ADD recorded for {args.env.container_id}")
    problems = drift(plan, Target(args.env.netns, ctx.host_netns), ctx.access)
    if problems:
        raise CNIError(
            Code.INTERNAL,
            f"{NAME}: {len(problems)} differences from ADD",
            "; ".join(d.message for d in problems),
        )


def _config_only(args: CallArgs) -> None:
    parse_coordinator(args.conf.raw)


def make_plugin(ctx: Context) -> Plugin:
    """spidernet-coordinator over `ctx`."""
    return Plugin(
        name=NAME,
        add=partial(_add, ctx),
        delete=partial(_delete, ctx),
        check=partial(_check, ctx),
        status=_config_only,
        gc=_config_only,
        about=f"{NAME}: host connectivity and policy routing for underlay pods",
    )
