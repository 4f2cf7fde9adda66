"""The node service watching the underlay master (`spidernet serve --watch-link`): a pod's
address claimed by a rogue station is recorded (metric, SpiderEndpoint annotation) within
a second; the pod's own traffic is not; after DEL the address is no longer watched."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import pytest

from spidernet.cni.config import parse_conflist
from spidernet.node import netns
from spidernet.node.access.spawn import Spawning
from spidernet.node.detect.announce import announce, gratuitous_arp
from spidernet.node.lab.addresses import GATEWAY4
from spidernet.node.lab.runtime import Chain, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology
from spidernet.node.netlink.client import netlink
from spidernet.testbed.conflists import chain_conf, macvlan, spidernet_ipam
from spidernet.testbed.harness import World
from spidernet.testbed.pools import add_pool

ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=p"
REPORT_S = 1.0  # the bound for a report
METRIC = "spidernet_ip_conflict_counts_total"


@pytest.fixture
def service(world: World, start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    """The service watching the host namespace's eth0, the pods' macvlan master."""
    return start_service("--watch-link", f"eth0@{netns.path_of(world.host)}")


def _conflicts(svc: ServiceProcess) -> list[dict[str, str]]:
    doc = svc.client.request("GET", "/v1/resources/SpiderEndpoint/t/p")
    raw = doc["metadata"].get("annotations", {}).get("spidernet.io/conflicts", "[]")
    return list(json.loads(raw))


def _metric(svc: ServiceProcess) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port()}/metrics") as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(METRIC)
    )


def _send(ns: str, frame: bytes | None, address: ipaddress.IPv4Address) -> float:
    """A gratuitous ARP for `address` from `ns`'s eth0: `frame` as given, or its own. When it
    went out (time.monotonic), after the socket was opened in `ns`: the spawned helper's
    start is the test's time, not the watcher's."""
    access = Spawning()
    sock = access.open_socket(netns.path_of(ns), socket.AF_PACKET, socket.SOCK_RAW)
    try:
        if frame is None:
            sent = time.monotonic()
            announce(sock, "eth0", address)
        else:
            sock.bind(("eth0", 0))
            sent = time.monotonic()
            sock.send(frame)
    finally:
        access.discard(sock)
    return sent


def _until(check: Callable[[], object], deadline_s: float) -> float | None:
    """When (time.monotonic) the first check that came out true began, if one did within
    `deadline_s`; None otherwise."""
    end = time.monotonic() + deadline_s
    while True:
        began = time.monotonic()
        if check():
            return began
        if began >= end:
            return None
        time.sleep(0.02)  # a bounded poll of the service's records


def test_a_rogue_claim_is_recorded_and_the_pods_own_traffic_is_not(
    world: World, topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    add_pool(service.client, "v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.59"], gateway=GATEWAY4)
    conflist = chain_conf(macvlan(spidernet_ipam(service.socket, default_ipv4_ippool=["v4"])))
    chain = Chain(parse_conflist(json.dumps(conflist).encode()), cni_path, host_netns=world.host)
    pod = world.pods[0]
    target = Target("ctr-cw", netns.path_of(pod), "eth0", ARGS)
    [ip] = chain.add(target).ips
    address = ipaddress.IPv4Address(str(ip.address.ip))
    rogue = topo.namespace("rogue")
    topo.attach(world.segment, rogue, "eth0")
    with netlink(netns.path_of(rogue)) as nl:
        rogue_mac = nl.link("eth0").mac
    try:
        # The pod announcing its own address: nothing recorded.
        _send(pod, None, address)
        assert _until(lambda: _conflicts(service), 0.5) is None
        # A rogue claiming it: recorded within a second, with the rogue's MAC.
        sent = _send(rogue, gratuitous_arp(rogue_mac, address), address)
        seen = _until(lambda: _conflicts(service), REPORT_S)
        assert seen is not None, "no conflict recorded"
        assert seen - sent <= REPORT_S
        [entry] = _conflicts(service)
        assert (entry["address"], entry["mac"], entry["link"]) == (str(address), rogue_mac, "eth0")
        assert _metric(service) == 1
        # `spidernet detect watch` shows what the service recorded before it watches itself.
        shown = subprocess.run(
            [
                sys.executable,
                *("-m", "spidernet", "detect", "watch", "--iface", "eth0"),
                *("--netns", world.host, "--backend", "scapy", "--duration", "0.2"),
                *("--socket", str(service.socket)),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        want = f"{address} claimed by {rogue_mac} on eth0 (recorded for t/p)"
        assert want in shown.stdout
        # After DEL the address is no longer watched: the same claim is not counted.
        chain.delete(target)
        _send(rogue, gratuitous_arp(rogue_mac, address), address)
        time.sleep(0.5)  # a window for a report that must not come (nothing to poll for)
        assert _metric(service) == 1
    finally:
        chain.delete(target)
        with netlink(netns.path_of(rogue)) as nl:
            nl.delete_link("eth0")
        netns.remove(rogue)
    # The service removes its tc filter from the host's eth0 when it stops (the world's
    # baseline check covers the host namespace; tc is checked here directly).
    service.stop()
    shown = subprocess.run(
        ["tc", "-n", world.host, "filter", "show", "dev", "eth0", "ingress"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "spidernet-watch" not in shown.stdout
