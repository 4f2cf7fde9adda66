"""`spidernet detect probe` and `spidernet detect watch` as an operator runs them: exit
statuses, who answered, and a rogue announcement reported while watching."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
from dataclasses import dataclass

import pytest

from spidernet.node import netns
from spidernet.node.access.spawn import Spawning
from spidernet.node.detect.announce import announce, gratuitous_arp
from spidernet.node.lab.addresses import GATEWAY4
from spidernet.node.lab.topology import Topology, iface
from spidernet.node.netlink.client import netlink

POD4, HELD4, FREE4 = "192.0.2.10", "192.0.2.20", "192.0.2.99"


@dataclass(frozen=True)
class Lan:
    pod: str
    rogue: str
    gateway_mac: str
    rogue_mac: str
    pod_mac: str


def _mac(ns: str) -> str:
    with netlink(netns.path_of(ns)) as nl:
        return nl.link("eth0").mac


@pytest.fixture
def lan(topo: Topology) -> Lan:
    seg = topo.segment()
    gw = topo.gateway(seg, (iface(f"{GATEWAY4}/24"),))
    pod = topo.namespace("pod")
    topo.attach(seg, pod, "eth0", (iface(f"{POD4}/24"),))
    rogue = topo.namespace("rogue")
    topo.attach(seg, rogue, "eth0", (iface(f"{HELD4}/24"),))
    return Lan(pod, rogue, _mac(gw), _mac(rogue), _mac(pod))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spidernet", "detect", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_probe_exit_status_says_free_held_or_unreachable(lan: Lan) -> None:
    base = ["probe", "--netns", lan.pod, "--iface", "eth0"]
    free = _cli(*base, "--ip", FREE4, "--gateway", GATEWAY4)
    assert (free.returncode, free.stderr) == (0, "")
    assert free.stdout.splitlines() == [
        f"{FREE4} on eth0: free",
        f"gateway {GATEWAY4}: reachable, answered by {lan.gateway_mac}",
    ]
    held = _cli(*base, "--ip", HELD4, "--profile", "rfc")
    assert held.returncode == 1
    assert held.stdout == f"{HELD4} on eth0: conflict, held by {lan.rogue_mac}\n"
    silent = _cli(*base, "--ip", FREE4, "--gateway", "192.0.2.254")
    assert silent.returncode == 1
    assert "gateway 192.0.2.254: unreachable, no answer from eth0" in silent.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--netns", "snt-no-such-ns", "--iface", "eth0", "--ip", FREE4], "does not exist"),
        (["--iface", "eth9", "--ip", FREE4], "eth9"),
        (["--iface", "eth0", "--ip", "not-an-ip"], "not-an-ip"),
        (["--iface", "eth0", "--ip", FREE4, "--gateway", "2001:db8::1"], "different families"),
    ],
)
def test_probe_usage_errors_exit_2_without_a_traceback(
    lan: Lan, args: list[str], words: str
) -> None:
    if "--netns" not in args:
        args = ["--netns", lan.pod, *args]
    done = _cli("probe", *args)
    assert done.returncode == 2, done.stdout
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_watch_reports_a_rogue_announcement_and_not_the_owners(lan: Lan) -> None:
    # Watch the pod's own link for claims on its address from any other MAC.
    argv = [
        sys.executable,
        *("-m", "spidernet", "detect", "watch", "--netns", lan.pod, "--iface", "eth0"),
        *("--watch", f"{POD4}={lan.pod_mac}", "--no-records", "--duration", "6"),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        started = proc.stderr.readline()  # "watching 1 addresses on eth0 ... (backend)"
        while started and not started.startswith("watching 1 addresses"):
            started = proc.stderr.readline()  # the backend's own log lines come first
        assert started.startswith("watching 1 addresses on eth0"), started
        access = Spawning()
        owner = access.open_socket(netns.path_of(lan.pod), socket.AF_PACKET, socket.SOCK_RAW)
        try:
            announce(owner, "eth0", ipaddress.IPv4Address(POD4))  # the owner's own: silence
        finally:
            access.discard(owner)
        rogue = access.open_socket(netns.path_of(lan.rogue), socket.AF_PACKET, socket.SOCK_RAW)
        try:
            rogue.bind(("eth0", 0))
            # A gratuitous ARP for the pod's address, from the rogue's MAC.
            rogue.send(gratuitous_arp(lan.rogue_mac, ipaddress.IPv4Address(POD4)))
        finally:
            access.discard(rogue)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child
            proc.communicate()
    assert proc.returncode == 1, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert lines[0].endswith(f" {POD4} claimed by {lan.rogue_mac} on eth0 (owner {lan.pod_mac})")


def test_watch_with_nothing_to_watch_is_a_usage_error(lan: Lan) -> None:
    done = _cli("watch", "--netns", lan.pod, "--iface", "eth0", "--no-records")
    assert done.returncode == 2
    assert "nothing to watch" in done.stderr
    bad = _cli("watch", "--netns", lan.pod, "--iface", "eth0", "--watch", "192.0.2.1")
    assert bad.returncode == 2
    assert "is not IP=MAC" in bad.stderr
