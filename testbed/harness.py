"""Checks that a test left nothing behind, outside and inside its namespaces.

`ProcessSnapshot` covers what lies outside the namespaces a run made: this machine's own
namespace (read only), the set of named namespaces, child processes and open sockets and
pipes. `World` is the standard underlay, whose namespaces each have a baseline footprint to
return to.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from spidernet.node import netns
from spidernet.node.lab.topology import Segment, Topology
from spidernet.node.netlink.client import netlink
from spidernet.testbed.leaks import Footprint, diff, footprint


def _children() -> set[int]:
    """Every live descendant of this process."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    me, out = os.getpid(), set()
    for pid in parents:
        p = pid
        while p in parents and p > 1:
            p = parents[p]
            if p == me:
                out.add(pid)
                break
    return out


def _fds() -> dict[int, str]:
    """Sockets and pipes this process holds (where netlink and subprocess leaks show)."""
    out = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            continue
        if target.startswith(("socket:", "pipe:", "anon_inode:")):
            out[int(entry)] = target
    return out


@dataclass(frozen=True)
class ProcessSnapshot:
    """What a run must leave as it found it, outside its own namespaces."""

    root: Footprint
    namespaces: frozenset[str]
    children: frozenset[int]
    fds: dict[int, str]

    @classmethod
    def take(cls) -> ProcessSnapshot:
        """Read the current state."""
        root = namespace_footprint(None)
        return cls(root, frozenset(netns.names()), frozenset(_children()), _fds())

    def leaks(self, after: ProcessSnapshot) -> list[str]:
        """Lines naming what `after` holds that this snapshot did not (or lost)."""
        out = [f"this machine's namespace: {d}" for d in diff(self.root, after.root)]
        out += [f"namespace left behind: {n}" for n in sorted(after.namespaces - self.namespaces)]
        out += [f"process left running: pid {p}" for p in sorted(after.children - self.children)]
        out += [
            f"file descriptor left open: {fd} -> {target}"
            for fd, target in sorted(after.fds.items())
            if self.fds.get(fd) != target
        ]
        return out


def namespace_footprint(name: str | None) -> Footprint:
    """The footprint of the named namespace (None: this process's own, read only)."""
    with netlink(None if name is None else netns.path_of(name)) as nl:
        return footprint(nl.state())


@dataclass
class World:
    """The standard underlay: pods attach through the "host" namespace's eth0."""

    topo: Topology
    segment: Segment
    host: str
    gateway: str
    pods: list[str]
    baselines: dict[str, Footprint] = field(default_factory=dict)

    def seal(self) -> None:
        """Record every namespace's footprint as the state the test must return to."""
        self.baselines = {ns: namespace_footprint(ns) for ns in self.topo.created}

    def sealed(self) -> Iterator[World]:
        """Seal, yield this world, then fail when a namespace is not back to its baseline:
        the body of a world fixture."""
        self.seal()
        yield self
        changes = self.changes()
        assert not changes, changes

    def changes(self) -> dict[str, list[str]]:
        """What differs from the sealed baseline, per namespace."""
        out = {}
        for ns, base in self.baselines.items():
            if ns in netns.names():
                found = diff(base, namespace_footprint(ns))
            else:
                found = ["namespace vanished"]
            if found:
                out[ns] = found
        return out
