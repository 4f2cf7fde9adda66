"""Reaching into namespaces: the broker process and the process-per-reach opener give the
same answers, act only in the namespace asked for, and clean up after themselves."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from spidernet.node import netns
from spidernet.node.access.base import Namespaces
from spidernet.node.access.broker import Broker
from spidernet.node.lab.topology import Topology, iface

MISSING = "/run/netns/spidernet-no-such-netns"
KEY = "net.ipv4.conf.all.rp_filter"


def _own(key: str) -> str:
    return Path(netns.sysctl_path(key)).read_text().strip()


def test_netlink_and_sockets_act_in_the_namespace_asked_for(
    topo: Topology, access: Namespaces
) -> None:
    seg = topo.segment()
    pod = topo.namespace("pod")
    topo.attach(seg, pod, "eth7", (iface("192.0.2.7/24"),))
    path = netns.path_of(pod)
    with access.netlink(path) as nl:
        assert sorted(link.name for link in nl.links()) == ["eth7", "lo"]
        assert [str(a.address) for a in nl.addresses() if a.address.version == 4][-1] == (
            "192.0.2.7/24"
        )
    # A packet socket from the namespace binds to its link, which this namespace lacks.
    sock = access.open_socket(path, socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sock.bind(("eth7", 0))
        assert sock.getsockname()[0] == "eth7"
    finally:
        access.discard(sock)
    with pytest.raises(netns.NetnsGone):
        access.netlink(MISSING)
    with pytest.raises(netns.NetnsGone):
        access.open_socket(MISSING, socket.AF_PACKET, socket.SOCK_RAW)


def test_sysctls_are_the_namespaces_own(topo: Topology, access: Namespaces) -> None:
    pod = topo.namespace("pod")
    path = netns.path_of(pod)
    ours = _own(KEY)
    new = "2" if ours != "2" else "1"
    access.set_sysctl(path, KEY, new, missing_ok=False)
    assert access.read_sysctls(path, [KEY, "net.ipv4.conf.eth9.rp_filter"]) == {KEY: new}
    assert netns.get_sysctl(pod, KEY) == new
    assert _own(KEY) == ours  # this machine's own value is untouched
    access.set_sysctl(path, "net.ipv4.conf.eth9.rp_filter", "1", missing_ok=True)
    with pytest.raises((OSError, netns.NetnsCommandError), match="eth9"):
        access.set_sysctl(path, "net.ipv4.conf.eth9.rp_filter", "1", missing_ok=False)
    with pytest.raises(netns.NetnsGone):
        access.set_sysctl(MISSING, KEY, "1", missing_ok=False)


def test_the_broker_refuses_what_is_not_a_network_namespace_or_sysctl(topo: Topology) -> None:
    pod = netns.path_of(topo.namespace("pod"))
    broker = Broker()
    try:
        with pytest.raises(OSError, match="is not a network namespace"):
            broker.open_socket("/proc/self/ns/uts", socket.AF_PACKET, socket.SOCK_RAW)
        with pytest.raises(OSError, match=r"'kernel\.hostname' is not a network sysctl key"):
            broker.set_sysctl(pod, "kernel.hostname", "x", missing_ok=False)
        with pytest.raises(OSError, match="not a network sysctl key"):
            broker.read_sysctls(pod, ["net.ipv4.conf.all/../../../kernel/hostname"])
    finally:
        broker.close()


def test_a_dead_broker_is_replaced_and_close_leaves_no_process(topo: Topology) -> None:
    pod = netns.path_of(topo.namespace("pod"))
    broker = Broker()
    try:
        first = broker.ping()["pid"]
        assert broker.pid == first
        os.kill(first, signal.SIGKILL)  # our own child, by its id
        deadline = time.monotonic() + 5
        while broker.pid is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # bounded wait for the kernel to finish it
        assert broker.pid is None
        assert broker.read_sysctls(pod, [KEY]) == {KEY: netns.get_sysctl(pod, KEY)}
        second = broker.pid
        assert second is not None
        assert second != first
    finally:
        broker.close()
    assert broker.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)
