"""The links spidernet-ifacer made on this host, who uses them, and which can go.

`survey` (pure) joins the host's links with the user records: a link the ifacer made (its
alias says so) is in use while a live record names it or another host link stands on it
(a VLAN on a bond, a macvlan an administrator made). `prune_order` (pure) picks the unused
ones, uppers before lowers, so a bond goes only after its unused VLAN. `prune` (effect)
removes them and the records of pods whose namespace is gone; a bond's former slaves are
brought up again (the kernel takes a released slave down).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spidernet.netconf.ifacer.config import MODES
from spidernet.node.netlink import NetlinkMissing, open_netlink
from spidernet.node.netlink.records import Link

from . import users
from .plan import IFACER_ALIAS


@dataclass(frozen=True)
class Made:
    """One ifacer-made link: what it is, the attachments using it, the host links standing
    on it, and (a bond) its slaves."""

    name: str
    kind: str
    detail: str
    up: bool
    users: tuple[str, ...]
    uppers: tuple[str, ...]
    slaves: tuple[str, ...] = ()

    @property
    def unused(self) -> bool:
        """Nothing uses it."""
        return not self.users and not self.uppers


def _detail(link: Link, by_index: dict[int, Link]) -> str:
    if link.kind == "vlan":
        parent = by_index.get(link.link or -1)
        return f"vlan {link.vlan_id} on {parent.name if parent else link.link}"
    if link.kind == "bond" and link.bond_mode is not None:
        return f"mode {MODES[link.bond_mode]}"
    return ""


def survey(links: Sequence[Link], records: Sequence[users.User]) -> list[Made]:
    """The ifacer-made links among `links`, with their live users and uppers."""
    by_index = {link.index: link for link in links}
    out = []
    for link in links:
        if link.alias != IFACER_ALIAS:
            continue
        who = tuple(
            f"{u.container_id[:12]}/{u.ifname}" for u in records if link.name in u.uses and u.alive
        )
        uppers = tuple(x.name for x in links if x.link == link.index and x.index != link.index)
        slaves = tuple(x.name for x in links if x.master == link.index)
        detail = _detail(link, by_index)
        out.append(Made(link.name, link.kind, detail, link.up, who, uppers, slaves))
    return out


def prune_order(made: Sequence[Made]) -> list[Made]:
    """The unused links, in an order that removes each before the links it stands on: a
    link whose only uppers are being removed is unused too."""
    chosen: list[Made] = []
    names: set[str] = set()
    progress = True
    while progress:
        progress = False
        for m in made:
            if m.name in names or m.users:
                continue
            if all(u in names for u in m.uppers):
                chosen.append(m)
                names.add(m.name)
                progress = True
    return chosen


@dataclass(frozen=True)
class Report:
    """What `prune` did (or, dry, would do)."""

    removed: tuple[str, ...]
    stale_records: tuple[str, ...]
    errors: tuple[str, ...] = ()


def current(state_dir: str = "") -> list[Made]:
    """The survey of this namespace's links and records."""
    root = users.state_dir(state_dir)
    with open_netlink() as nl:
        links = nl.links()
    return survey(links, users.load_all(root, users.host_ns()))


def prune(state_dir: str = "", *, dry_run: bool = False) -> Report:
    """Remove the ifacer-made links no live attachment uses, and stale records."""
    root = users.state_dir(state_dir)
    with users.locked(root), open_netlink() as nl:
        records = users.load_all(root, users.host_ns())
        stale = [u for u in records if not u.alive]
        order = prune_order(survey(nl.links(), records))
        if dry_run:
            return Report(tuple(m.name for m in order), tuple(_label(u) for u in stale))
        errors = []
        removed = []
        for m in order:
            try:
                nl.delete_link(m.name, missing_ok=True)
                removed.append(m.name)
                for slave in m.slaves:
                    nl.set_link(slave, state="up")
            except NetlinkMissing:
                continue  # a slave gone meanwhile
            except Exception as e:  # one failure does not stop the others
                errors.append(f"{m.name}: {e}")
        for u in stale:
            users.remove(root, u.container_id, u.ifname)
        return Report(tuple(removed), tuple(_label(u) for u in stale), tuple(errors))


def _label(user: users.User) -> str:
    return f"{user.container_id[:12]}/{user.ifname} ({user.netns or 'no netns'})"
