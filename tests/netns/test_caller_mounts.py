"""A runtime whose mounts are not the node service's (issue 14): podman with private mounts,
a kubelet's runtime beside an agent in a container. The sandbox's namespace is created in
the runtime's own mount namespace, under a /run/netns the service cannot see, and the chain
(macvlan + spidernet-ipam + spidernet-coordinator) runs there; the service must open
CNI_NETNS as the runtime sees it, and never whatever its own mounts hold at that path.

Every plugin finds the service by the config's `ipam_unix_socket_path` (the coordinator's at
the top of its config); $SPIDERNET_SOCKET names nothing, as in podman's cleanup process.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.config import parse_conflist
from spidernet.control.model.endpoint_doc import ANNO_NETNS
from spidernet.node import netns
from spidernet.node.lab.addresses import GATEWAY4, HOST4
from spidernet.node.lab.runtime import Chain, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface, ping
from spidernet.node.netlink.client import netlink
from spidernet.testbed.conflists import chain_conf, macvlan, spidernet_coordinator, spidernet_ipam
from spidernet.testbed.harness import World, namespace_footprint
from spidernet.testbed.pools import add_pool, allocated

START_TIMEOUT_S = 10.0
CNI_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=p"


@dataclass
class Runtime:
    """A process in a mount namespace of its own (private propagation: nothing it mounts
    reaches this machine's mounts) with a tmpfs on /run/netns; plugins run in it."""

    pid: int
    names: list[str] = field(default_factory=list)

    @property
    def mount_ns(self) -> str:
        return f"/proc/{self.pid}/ns/mnt"

    def seen(self, path: str) -> str:
        """`path` as the runtime sees it, from here (for looking, not for the service)."""
        return f"/proc/{self.pid}/root{path}"

    def ip(self, *args: str) -> None:
        argv = ["nsenter", f"--mount={self.mount_ns}", "--", "ip", *args]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    def add_netns(self, name: str) -> str:
        """A network namespace `name` under the runtime's /run/netns; returns its path."""
        self.ip("netns", "add", name)
        self.names.append(name)
        self.ip("-n", name, "link", "set", "lo", "up")
        return netns.path_of(name)

    def delete_netns(self, name: str) -> None:
        self.ip("netns", "delete", name)
        self.names.remove(name)


@pytest.fixture
def lab(topo: Topology) -> Iterator[World]:
    """Switch + gateway + host (eth0 192.0.2.2); every namespace back to this at the end."""
    seg = topo.segment()
    gw = topo.gateway(seg, (iface(f"{GATEWAY4}/24"),))
    host = topo.namespace("host")
    topo.attach(seg, host, "eth0", (iface(f"{HOST4}/24"),))
    world = World(topo, seg, host, gw, [])
    world.seal()
    yield world
    changes = world.changes()
    assert not changes, changes


@pytest.fixture
def runtime(lab: World) -> Iterator[Runtime]:
    """The runtime's mount namespace, held by a process of this test (stopped by its pid)."""
    script = "mount -t tmpfs -o mode=0755 snt-netns /run/netns && echo ready && exec sleep 600"
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    held = Runtime(proc.pid)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            if not ready or not (chunk := os.read(proc.stdout.fileno(), 64)):
                break
            line += chunk
        assert line == b"ready\n", f"the runtime's mount namespace did not start: {line!r}"
        yield held
    finally:
        for name in list(held.names):
            with suppress(subprocess.CalledProcessError):
                held.delete_netns(name)
        proc.kill()  # our own child, by its handle; its mount namespace goes with it
        proc.wait()
        proc.stdout.close()


def chain(
    service: ServiceProcess,
    lab: World,
    runtime: Runtime,
    cni_path: tuple[str, ...],
    tmp_path: Path,
) -> Chain:
    socket = str(service.socket)
    conflist: dict[str, Any] = chain_conf(
        macvlan(
            spidernet_ipam(
                socket,
                default_ipv4_ippool=["v4"],
                # probes from the pod's namespace, through the service's broker
                enableGatewayDetection=True,
            )
        ),
        spidernet_coordinator(socket),
    )
    # The environment names no service: only the configs lead to it. A plugin that fell
    # back to working in-process would keep its state here, not in the service's.
    env = {
        "SPIDERNET_SOCKET": "/nonexistent/spidernet.sock",
        "SPIDERNET_STATE_DIR": str(tmp_path / "in-process"),
    }
    return Chain(
        parse_conflist(json.dumps(conflist).encode()),
        cni_path,
        host_netns=lab.host,
        extra_env=env,
        mount_ns=runtime.mount_ns,
    )


def plan_of(service: ServiceProcess, cid: str) -> Path:
    """Where the service keeps the coordinator's plan of `cid`'s eth0."""
    return service.state_dir / "coordinator" / f"{cid}-eth0.json"


def host_links(lab: World) -> set[str]:
    with netlink(netns.path_of(lab.host)) as nl:
        return {link.name for link in nl.links()}


def netns_record(service: ServiceProcess) -> str:
    doc = service.client.request("GET", "/v1/endpoints/t/p")
    return str(doc["metadata"]["annotations"][ANNO_NETNS])


@pytest.mark.parametrize("given", ["path", "symlink"])
def test_a_namespace_only_the_runtime_sees(
    lab: World,
    runtime: Runtime,
    service: ServiceProcess,
    cni_path: tuple[str, ...],
    tmp_path: Path,
    given: str,
) -> None:
    name = f"{lab.topo.prefix}-pod"
    path = runtime.add_netns(name)
    if given == "symlink":
        # An absolute symlink in the runtime's /run/netns: followed inside the runtime's
        # root (openat2 RESOLVE_IN_ROOT), it names the pod; followed in the service's root,
        # nothing.
        os.symlink(path, runtime.seen(f"{path}-link"))
        path = f"{path}-link"
    assert not os.path.exists(path)  # the service's mounts hold nothing there
    pod = runtime.seen(netns.path_of(name))
    add_pool(service.client, "v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.60"], gateway=GATEWAY4)
    c = chain(service, lab, runtime, cni_path, tmp_path)
    target = Target("ctr-1", path, "eth0", CNI_ARGS)
    before = host_links(lab)
    result = c.add(target)
    [ip] = result.ips
    with netlink(pod) as nl:
        assert {link.name for link in nl.links()} >= {"eth0", "veth0"}
        assert any(a.address.ip == ip.address.ip for a in nl.addresses())
    assert ping(pod, GATEWAY4)  # over the macvlan
    assert ping(pod, HOST4)  # through the coordinator's veth0
    assert plan_of(service, "ctr-1").exists()  # the service did the work
    assert not (tmp_path / "in-process").exists()
    assert netns_record(service) == path  # the record keeps the path the runtime gave
    assert allocated(service.client, "v4") == 1
    c.check(target)
    c.delete(target)
    assert allocated(service.client, "v4") == 0
    assert not plan_of(service, "ctr-1").exists()
    assert host_links(lab) == before
    with netlink(pod) as nl:
        assert {link.name for link in nl.links()} == {"lo"}
    c.delete(target)  # DEL twice


def test_another_namespace_at_the_same_path_in_the_services_mounts(
    lab: World,
    topo: Topology,
    runtime: Runtime,
    service: ServiceProcess,
    cni_path: tuple[str, ...],
    tmp_path: Path,
) -> None:
    decoy = topo.namespace("pod")  # /run/netns/<prefix>-pod, as the service sees it
    path = runtime.add_netns(decoy)  # the same path, as the runtime sees it
    pod = runtime.seen(path)
    untouched = namespace_footprint(decoy)
    add_pool(service.client, "v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.60"], gateway=GATEWAY4)
    c = chain(service, lab, runtime, cni_path, tmp_path)
    target = Target("ctr-2", path, "eth0", CNI_ARGS)
    before = host_links(lab)
    c.add(target)
    with netlink(pod) as nl:
        assert {link.name for link in nl.links()} >= {"eth0", "veth0"}
    assert namespace_footprint(decoy) == untouched
    assert ping(pod, HOST4)
    c.check(target)
    assert namespace_footprint(decoy) == untouched
    # The sandbox goes away before its DEL (a runtime that crashed, or cleaned up first):
    # DEL succeeds, and does not act on what the service's own mounts hold at the path.
    runtime.delete_netns(decoy)
    c.delete(target)
    assert allocated(service.client, "v4") == 0
    assert not plan_of(service, "ctr-2").exists()
    assert namespace_footprint(decoy) == untouched
    assert host_links(lab) == before
