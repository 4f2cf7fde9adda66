"""spidernet-ifacer's verbs: config -> host links -> plan -> apply, all in the host namespace.

The ifacer runs first in a chain (the main plugin's `master` is what it makes), so its ADD
passes on `prevResult` unchanged when it has one and an empty result otherwise. DEL only
forgets the attachment: the VLANs and bonds stay for the other pods on them, and
`spidernet ifacer prune` removes the ones no pod uses. CHECK re-plans and names what is
missing or down; STATUS says whether the configured NICs are there.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from spidernet.cni.errors import CNIError, Code
from spidernet.cni.result import Result
from spidernet.cni.skel import CallArgs, Plugin
from spidernet.netconf.ifacer.config import IfacerConf, parse_ifacer
from spidernet.node.access.base import Reach
from spidernet.node.access.spawn import Spawning
from spidernet.node.netlink import NetlinkFailure
from spidernet.node.netlink.records import Link
from spidernet.node.plan.apply import ApplyFailed, Target, apply
from spidernet.node.plan.describe import describe
from spidernet.node.plan.ops import AddBond, AddVlan

from . import users
from .plan import IfacerPlan, IfacerPlanError, plan_add

NAME = "spidernet-ifacer"
# The kernel's answer to a link kind it has no driver for.
_NO_DRIVER = (errno.EOPNOTSUPP, errno.ENODEV)


@dataclass(frozen=True)
class Context:
    """Where the ifacer acts: the host namespace (None: this process's own, the in-process
    fallback; the node service passes its caller's) and how it is reached."""

    host_netns: str | None = None
    access: Reach = field(default_factory=Spawning)


def _links(ctx: Context) -> list[Link]:
    with ctx.access.netlink(ctx.host_netns) as nl:
        return nl.links()


def _plan(ctx: Context, conf: IfacerConf) -> IfacerPlan:
    links = _links(ctx)
    try:
        return plan_add(conf, links)
    except IfacerPlanError as e:
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"{NAME}: {e}") from e


def _apply_failed(e: ApplyFailed) -> CNIError:
    msg = f"{NAME}: {e}"
    cause = e.cause
    no_driver = isinstance(cause, NetlinkFailure) and cause.errno in _NO_DRIVER
    if isinstance(e.op, AddVlan | AddBond) and no_driver:
        module = "8021q" if isinstance(e.op, AddVlan) else "bonding"
        msg += f" (is the kernel module '{module}' available on this node?)"
    return CNIError(Code.INTERNAL, msg)


def _add(ctx: Context, args: CallArgs) -> Result:
    conf = parse_ifacer(args.conf.raw)
    root = users.state_dir(conf.state_dir)
    env = args.env
    with users.locked(root):
        plan = _plan(ctx, conf)
        host = users.host_ns(ctx.host_netns)
        user = users.User(args.conf.name, env.container_id, env.ifname, env.netns, host, plan.uses)
        users.save(root, user)
        try:
            target = Target(env.netns or "/nonexistent", ctx.host_netns)
            apply(plan.ops, target, access=ctx.access)
        except ApplyFailed as e:
            users.remove(root, env.container_id, env.ifname)
            raise _apply_failed(e) from e
        except BaseException:
            users.remove(root, env.container_id, env.ifname)
            raise
    prev = args.conf.prev_result
    return prev if prev is not None else Result(cni_version=args.conf.cni_version)


def _state_root(args: CallArgs) -> Path:
    # DEL and GC read only where the records are: a config that no longer parses must not
    # keep a runtime retrying DEL forever over a record that is just a file.
    given = args.conf.raw.get("stateDir", "")
    return users.state_dir(given if isinstance(given, str) else "")


def _delete(_: Context, args: CallArgs) -> None:
    root = _state_root(args)
    with users.locked(root):
        users.remove(root, args.env.container_id, args.env.ifname)


def _check(ctx: Context, args: CallArgs) -> None:
    conf = parse_ifacer(args.conf.raw)
    plan = _plan(ctx, conf)
    if plan.ops:
        missing = "; ".join(describe(op).removesuffix(" in the host") for op in plan.ops)
        raise CNIError(
            Code.INTERNAL, f"{NAME}: '{conf.master}' is not as ADD left it", f"needed: {missing}"
        )


def _status(ctx: Context, args: CallArgs) -> None:
    conf = parse_ifacer(args.conf.raw)
    names = {link.name for link in _links(ctx)}
    missing = [n for n in conf.interfaces if n not in names]
    if missing:
        raise CNIError(
            Code.PLUGIN_NOT_AVAILABLE, f"{NAME}: interface(s) {', '.join(missing)} not on the host"
        )


def _gc(ctx: Context, args: CallArgs) -> None:
    valid = args.conf.valid_attachments
    if valid is None:
        return
    keep = {(a.container_id, a.ifname) for a in valid}
    root = _state_root(args)
    with users.locked(root):
        for user in users.load_all(root, users.host_ns(ctx.host_netns)):
            if user.network == args.conf.name and (user.container_id, user.ifname) not in keep:
                users.remove(root, user.container_id, user.ifname)


def make_plugin(ctx: Context) -> Plugin:
    """spidernet-ifacer acting through `ctx`."""
    return Plugin(
        name=NAME,
        add=partial(_add, ctx),
        delete=partial(_delete, ctx),
        check=partial(_check, ctx),
        status=partial(_status, ctx),
        gc=partial(_gc, ctx),
        about=f"{NAME}: VLAN and bond masters for underlay NICs",
    )
