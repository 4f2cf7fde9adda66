"""The conflict watch's second look at an owner's MAC runs outside any call, in the service's
own mount namespace: when the owner's recorded path names there another namespace than at
its ADD (or none), the watch says so and reads nothing from it. Namespaces are stood in for
by files here (what is compared is the (st_dev, st_ino) a path leads to); the real watcher
is tests/netns/test_conflict_watch.py."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from spidernet.control.store.embedded import open_store
from spidernet.node import netns
from spidernet.node.access.base import Namespaces
from spidernet.node.agent.conflicts import ConflictWatch
from spidernet.node.agent.metrics import Metrics
from spidernet.node.detect.watch import Conflict

ADDRESS = ipaddress.ip_address("192.0.2.50")
OWNER_MAC, NEW_MAC = "02:00:00:00:00:01", "0a:1b:00:00:00:01"
PATH = "/run/netns/cni-from-another-runtime"


@dataclass
class FakeLink:
    mac: str


class FakeNetlink:
    def __init__(self, macs: dict[str | None, str], where: str | None) -> None:
        self.mac = macs.get(where)

    def __enter__(self) -> FakeNetlink:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def link(self, _: str) -> FakeLink:
        if self.mac is None:
            raise netns.NetnsGone("no such namespace")
        return FakeLink(self.mac)


class FakeAccess:
    """Answers netlink(path) with the MAC the opened path (after the view) leads to."""

    def __init__(self) -> None:
        self.macs: dict[str | None, str] = {}
        self.opened: list[str] = []

    def netlink(self, where: str | None) -> FakeNetlink:
        opened = netns.openable(where) if where else where
        self.opened.append(str(opened))
        return FakeNetlink(self.macs, opened)


class OneConflict:
    backend = "scapy"

    def __init__(self) -> None:
        self.pending: list[Conflict] = []

    def watch(self, address: object, owner_mac: str) -> None:
        return None

    def unwatch(self, address: object) -> None:
        return None

    def poll(self, timeout_s: float) -> list[Conflict]:
        out, self.pending = self.pending, []
        return out

    def close(self) -> None:
        return None


@contextmanager
def watch(tmp_path: Path) -> Iterator[tuple[ConflictWatch, FakeAccess, OneConflict, list[str]]]:
    store = open_store(tmp_path / "state")
    access, watcher = FakeAccess(), OneConflict()
    log: list[str] = []
    # The watch only asks for netlink clients; the fake gives nothing else.
    cw = ConflictWatch(cast(Namespaces, access), store, Metrics(), log.append)
    cw._watchers.append(watcher)
    try:
        yield cw, access, watcher, log
    finally:
        store.close()


def claim() -> Conflict:
    return Conflict(ADDRESS, NEW_MAC, OWNER_MAC, 0.0, "eth0")


@pytest.mark.parametrize("service_sees", ["another", "nothing"])
def test_the_second_look_does_not_read_another_namespace(tmp_path: Path, service_sees: str) -> None:
    pod, other = tmp_path / "pod", tmp_path / "other"
    pod.write_text("")
    other.write_text("")
    with watch(tmp_path) as (cw, access, watcher, log):
        access.macs = {str(pod): OWNER_MAC, str(other): NEW_MAC, PATH: NEW_MAC}
        # ADD: the caller sees PATH as `pod`
        with netns.seen_as({PATH: str(pod)}):
            cw.track("t", "p", PATH, "eth0", [ADDRESS])
        # later, in the service's own mounts, PATH leads elsewhere (or nowhere); the MAC
        # there is the claim's, which would wrongly count as the owner's own
        view = {PATH: str(other)} if service_sees == "another" else {PATH: str(tmp_path / "x")}
        access.opened.clear()
        watcher.pending = [claim()]
        with netns.seen_as(view):
            assert cw.poll(0.0) == [claim()]  # recorded, unchecked
        assert access.opened == []  # nothing was read from whatever is there
        what = "names another network namespace" if service_sees == "another" else "does not"
        [said] = [line for line in log if "cannot check" in line]
        assert what in said
        assert f"'{PATH}'" in said
        assert "recorded unchecked" in said


def test_the_second_look_reads_the_same_namespace(tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    pod.write_text("")
    with watch(tmp_path) as (cw, access, watcher, log):
        access.macs = {str(pod): OWNER_MAC}
        with netns.seen_as({PATH: str(pod)}):
            cw.track("t", "p", PATH, "eth0", [ADDRESS])
            access.macs[str(pod)] = NEW_MAC  # the coordinator's podMACPrefix, after IPAM
            watcher.pending = [claim()]
            assert cw.poll(0.0) == []  # the owner's own new MAC: not a conflict
        assert cw.watched()[ADDRESS].mac == NEW_MAC
        assert not [line for line in log if "cannot check" in line]
