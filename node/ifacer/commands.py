"""spidernet-ifacer's verbs: config -> host links -> plan -> apply, all in the host namespace.

The ifacer runs first in a chain (the main plugin's `master` is what it makes), so its ADD
passes on `prevResult` unchanged when it has one and an empty result otherwise. DEL only
forgets the attachment: the VLANs and bonds stay for the other pods on them, and
`spidernet ifacer prune` removes the ones no pod uses. CHECK re-plans and names what is
missing or down; STATUS says whether the configured NICs are there.
"""

from __future__ import annotations

import errno
from pathlib import Path

from spidernet.node.access.spawn import Spawning
from spidernet.node.cni.errors import CNIError, Code
from spidernet.node.cni.result import Result
from spidernet.node.cni.skel import CallArgs, Plugin
from spidernet.node.netlink import NetlinkFailure, open_netlink
from spidernet.node.plan.apply import ApplyFailed, Target, apply
from spidernet.node.plan.describe import describe
from spidernet.node.plan.ops import AddBond, AddVlan

from . import users
from .config import IfacerConf, parse_ifacer
from .plan import IfacerPlan, PlanError, plan_add

NAME = "spidernet-ifacer"
# The kernel's answer to a link kind it has no driver for.
_NO_DRIVER = (errno.EOPNOTSUPP, errno.ENODEV)


def _plan(conf: IfacerConf) -> IfacerPlan:
    with open_netlink() as nl:
        links = nl.links()
    try:
        return plan_add(conf, links)
    except PlanError as e:
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"{NAME}: {e}") from e


def _apply_failed(e: ApplyFailed) -> CNIError:
    msg = f"{NAME}: {e}"
    cause = e.cause
    no_driver = isinstance(cause, NetlinkFailure) and cause.errno in _NO_DRIVER
    if isinstance(e.op, AddVlan | AddBond) and no_driver:
        module = "8021q" if isinstance(e.op, AddVlan) else "bonding"
        msg += f" (is the kernel module '{module}' available on this node?)"
    return CNIError(Code.INTERNAL, msg)


def _add(args: CallArgs) -> Result:
    conf = parse_ifacer(args.conf.raw)
    root = users.state_dir(conf.state_dir)
    env = args.env
    with users.locked(root):
        plan = _plan(conf)
        user = users.User(
            args.conf.name, env.container_id, env.ifname, env.netns, users.host_ns(), plan.uses
        )
        users.save(root, user)
        try:
            apply(plan.ops, Target(env.netns or "/nonexistent", None), access=Spawning())
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


def _delete(args: CallArgs) -> None:
    root = _state_root(args)
    with users.locked(root):
        users.remove(root, args.env.container_id, args.env.ifname)


def _check(args: CallArgs) -> None:
    conf = parse_ifacer(args.conf.raw)
    plan = _plan(conf)
    if plan.ops:
        missing = "; ".join(describe(op).removesuffix(" in the host") for op in plan.ops)
        raise CNIError(
            Code.INTERNAL, f"{NAME}: '{conf.master}' is not as ADD left it", f"needed: {missing}"
        )


def _status(args: CallArgs) -> None:
    conf = parse_ifacer(args.conf.raw)
    with open_netlink() as nl:
        names = {link.name for link in nl.links()}
    missing = [n for n in conf.interfaces if n not in names]
    if missing:
        raise CNIError(
            Code.PLUGIN_NOT_AVAILABLE, f"{NAME}: interface(s) {', '.join(missing)} not on the host"
        )


def _gc(args: CallArgs) -> None:
    valid = args.conf.valid_attachments
    if valid is None:
        return
    keep = {(a.container_id, a.ifname) for a in valid}
    root = _state_root(args)
    with users.locked(root):
        for user in users.load_all(root, users.host_ns()):
            if user.network == args.conf.name and (user.container_id, user.ifname) not in keep:
                users.remove(root, user.container_id, user.ifname)


def make_plugin() -> Plugin:
    """spidernet-ifacer."""
    return Plugin(
        name=NAME,
        add=_add,
        delete=_delete,
        check=_check,
        status=_status,
        gc=_gc,
        about=f"{NAME}: VLAN and bond masters for underlay NICs",
    )
