"""What spidernet-ifacer must do on the host for one config (pure).

Given the config and the host's links, `plan_add` returns the operations that make the
master a pod hangs from exist and be up (a VLAN on a NIC, a bond over NICs, a VLAN on the
bond), reusing what exists, or raises IfacerPlanError when the host holds something that is in
the way: a link of that name that is something else, a NIC enslaved elsewhere, or the VLAN
ID already used under another name (Spiderpool's rule). Links this plan creates carry the
alias `IFACER_ALIAS`, so `spidernet ifacer` can tell them from the administrator's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spidernet.netconf.ifacer.config import MODES, IfacerConf
from spidernet.node.errors import NodeError
from spidernet.node.netlink.records import Link
from spidernet.node.plan.ops import AddBond, AddVlan, Enslave, Op, SetLinkUp

IFACER_ALIAS = "spidernet-ifacer"


class IfacerPlanError(NodeError, ValueError):
    """The host is not in a state the ifacer can work with; the message says why."""


@dataclass(frozen=True)
class IfacerPlan:
    """The operations to apply, and the links the pod's master depends on (its lower
    links, NICs first), which the user record lists."""

    ops: tuple[Op, ...]
    uses: tuple[str, ...]


def _describe(link: Link, by_index: dict[int, Link]) -> str:
    if link.kind == "vlan":
        parent = by_index.get(link.link or -1)
        on = f" on '{parent.name}'" if parent else ""
        return f"vlan {link.vlan_id}{on}"
    if link.kind == "bond" and link.bond_mode is not None:
        return f"bond ({MODES[link.bond_mode]})"
    return link.kind or "device"


def _up(link: Link) -> tuple[Op, ...]:
    return () if link.up else (SetLinkUp("host", link.name),)


def _bond_ops(conf: IfacerConf, by_name: dict[str, Link], by_index: dict[int, Link]) -> list[Op]:
    bond = conf.bond
    assert bond is not None
    ops: list[Op] = []
    existing = by_name.get(bond.name)
    if existing is not None:
        if existing.kind != "bond":
            what = _describe(existing, by_index)
            raise IfacerPlanError(f"'{bond.name}' exists on the host and is a {what}, not a bond")
        if existing.bond_mode is not None and existing.bond_mode != bond.mode:
            raise IfacerPlanError(
                f"bond '{bond.name}' exists in mode {MODES[existing.bond_mode]},"
                f" the config asks for {MODES[bond.mode]}"
            )
    else:
        ops.append(AddBond("host", bond.name, (("mode", bond.mode), *bond.options), IFACER_ALIAS))
    bond_index = existing.index if existing is not None else None
    for name in conf.interfaces:
        nic = by_name[name]
        if nic.master is not None and nic.master == bond_index:
            continue
        if nic.master is not None:
            master = by_index.get(nic.master)
            owner = f"'{master.name}'" if master else f"link {nic.master}"
            raise IfacerPlanError(f"interface '{name}' is already enslaved to {owner}")
        ops.append(Enslave("host", name, bond.name, nic.up))
    if existing is None or not existing.up:
        ops.append(SetLinkUp("host", bond.name))
    return ops


def _vlan_ops(
    conf: IfacerConf, by_name: dict[str, Link], by_index: dict[int, Link], parent_new: bool
) -> list[Op]:
    name, parent = conf.master, conf.parent
    for link in by_name.values():
        if link.kind == "vlan" and link.vlan_id == conf.vlan_id and link.name != name:
            raise IfacerPlanError(
                f"cannot make '{name}': VLAN {conf.vlan_id} already exists on this host as"
                f" '{link.name}' ({_describe(link, by_index)}); one VLAN ID, one interface"
            )
    existing = by_name.get(name)
    if existing is None:
        ops: list[Op] = []
        if not parent_new and parent in by_name:
            ops += _up(by_name[parent])
        return [
            *ops,
            AddVlan("host", name, parent, conf.vlan_id, IFACER_ALIAS),
            SetLinkUp("host", name),
        ]
    parent_link = by_name.get(parent)
    if (
        existing.kind != "vlan"
        or existing.vlan_id != conf.vlan_id
        or parent_link is None
        or existing.link != parent_link.index
    ):
        what = _describe(existing, by_index)
        raise IfacerPlanError(
            f"'{name}' exists on the host and is a {what}, not vlan {conf.vlan_id} on '{parent}'"
        )
    return [*_up(parent_link), *_up(existing)]


def plan_add(conf: IfacerConf, links: Sequence[Link]) -> IfacerPlan:
    """The operations that make `conf.master` exist and be up on a host with `links`."""
    by_name = {link.name: link for link in links}
    by_index = {link.index: link for link in links}
    missing = [n for n in conf.interfaces if n not in by_name]
    if missing:
        raise IfacerPlanError(f"interface(s) {', '.join(missing)} not found on the host")
    ops: list[Op] = []
    parent_new = False
    if conf.bond is not None:
        ops += _bond_ops(conf, by_name, by_index)
        parent_new = conf.bond.name not in by_name
    if conf.vlan_id:
        ops += _vlan_ops(conf, by_name, by_index, parent_new)
    uses = [*conf.interfaces]
    if conf.bond is not None:
        uses.append(conf.bond.name)
    if conf.vlan_id:
        uses.append(conf.master)
    return IfacerPlan(tuple(ops), tuple(uses))
