"""spidernet without Kubernetes: podman (CNI backend) runs containers on the embedded default.

A "podman node" namespace on the lab's segment (192.0.2.3) runs podman in a mount namespace
of its own, with a private /run/netns where podman pins its containers' network namespaces,
so the service cannot see them at the paths podman names: it must resolve CNI_NETNS in the
caller's mount namespace. `spidernet serve` (the embedded store) listens on a socket that is
not the default one; every plugin of the network is told it in its config, since podman's
cleanup process does not carry the caller's environment. A container gets an address from the
pool, reaches the gateway over macvlan and its node over the coordinator's veth, and
`podman rm` releases the address and leaves the node's namespace as it was.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spidernet.node import netns
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.node.lab.topology import iface, ping
from spidernet.testbed import conflists
from spidernet.testbed.harness import namespace_footprint
from spidernet.testbed.leaks import diff
from spidernet.testbed.node import RealNode, run
from spidernet.testbed.nodelane import Prepared
from spidernet.testbed.nodespec import GATEWAY4
from spidernet.testbed.waiting import wait_for

PODMAN_NODE_IP = "192.0.2.3"
NETWORK = "spidernet-macvlan"
POOL = {
    "apiVersion": "spiderpool.spidernet.io/v2beta1",
    "kind": "SpiderIPPool",
    "metadata": {"name": "podman-v4"},
    "spec": {
        "subnet": "192.0.2.0/24",
        "ips": ["192.0.2.150-192.0.2.159"],
        "gateway": GATEWAY4,
        "default": True,
    },
}
# podman 4.3 with the CNI backend; runc (crun is refused setrlimit here), cgroupfs and a file
# event log (no systemd), and no default ulimits to set.
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
runtime = "runc"
tmp_dir = "{tmp}"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "cni"
cni_plugin_dirs = [{bins}]
network_config_dir = "{confs}"
"""


@dataclass
class Podman:
    """podman in a mount namespace of its own, held by a sleeping process (its pid known)."""

    holder: subprocess.Popen[bytes]
    dir: Path
    node: str  # the podman node's network namespace

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--"]
        argv += ["env", f"CONTAINERS_CONF={self.dir / 'containers.conf'}", "podman"]
        argv += [f"--root={self.dir / 'root'}", f"--runroot={self.dir / 'runroot'}"]
        return run([*argv, *args], check=check, timeout=180)


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with scratch_service() as svc:
        svc.client.request("POST", "/v1/resources", POOL)
        yield svc


@pytest.fixture(scope="module")
def podman(node: RealNode, lane: Prepared, service: ServiceProcess) -> Iterator[Podman]:
    ns = node.topology.namespace("podnode")
    node.topology.attach(node.segment, ns, "eth0", (iface(f"{PODMAN_NODE_IP}/24"),))
    subprocess.run(["ip", "-n", ns, "route", "add", "default", "via", GATEWAY4], check=True)
    top = Path(tempfile.mkdtemp(prefix="spidernet-podman-", dir="/var/tmp"))
    bins = top / "cni-bin"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "spidernet",
            "install-cni",
            "--bin-dir",
            str(bins),
            "--forwarder",
            "c",
        ],
        check=True,
        capture_output=True,
    )
    confs = top / "cni-conf"
    confs.mkdir()
    socket = str(service.socket)
    conflist = conflists.chain_conf(
        conflists.macvlan(conflists.spidernet_ipam(socket)),
        conflists.spidernet_coordinator(socket),
        name=NETWORK,
    )
    (confs / f"{NETWORK}.conflist").write_text(json.dumps(conflist, indent=2))
    quoted = ", ".join(f'"{d}"' for d in (bins, "/usr/lib/cni"))
    conf = CONTAINERS_CONF.format(bins=quoted, confs=confs, tmp=top / "tmp")
    (top / "containers.conf").write_text(conf)
    # The holder: podman's mount namespace (a /run of its own, where podman pins network
    # namespaces and runc keeps its state, and a private /var/lib/cni) in the podman node's
    # network namespace, alive until the module ends.
    script = (
        "mount -t tmpfs tmpfs /run && mkdir /run/netns && mount -t tmpfs tmpfs /var/lib/cni"
        " && exec sleep 100000"
    )
    # nsenter, not `ip netns exec`: that remounts /sys, and runc then finds no cgroup.
    holder = subprocess.Popen(
        netns.exec_argv(
            netns.path_of(ns),
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        )
    )
    pod = Podman(holder, top, ns)
    try:
        wait_for("podman's mount namespace", lambda: _private_netns(holder.pid), 30, 0.1)
        pod("load", "-i", str(lane.workload_archive))
        yield pod
    finally:
        pod("rm", "-a", "-f", check=False)
        holder.send_signal(signal.SIGTERM)
        holder.wait()
        subprocess.run(["rm", "-rf", str(top)], check=False)
        netns.remove(ns)
        node.topology.created.remove(ns)


def _private_netns(pid: int) -> bool:
    """True once the holder's /run/netns is a tmpfs of its own."""
    try:
        mounts = Path(f"/proc/{pid}/mounts").read_text()
    except OSError:
        return False
    return " /var/lib/cni tmpfs " in mounts


def _endpoints(service: ServiceProcess) -> list[dict[str, object]]:
    items: list[dict[str, object]] = service.client.request("GET", "/v1/resources/SpiderEndpoint")[
        "items"
    ]
    return items


def test_a_podman_container_gets_an_address_reaches_gateway_and_node_and_rm_releases_it(
    podman: Podman, service: ServiceProcess, lane: Prepared
) -> None:
    before = namespace_footprint(podman.node)
    podman(
        "run", "-d", "--name", "c1", f"--network={NETWORK}", lane.workload_image, "sleep", "3600"
    )
    inspect = json.loads(podman("inspect", "c1").stdout)[0]
    sandbox = inspect["NetworkSettings"]["SandboxKey"]
    assert sandbox.startswith("/run/netns/"), sandbox
    # The service cannot see podman's namespace at that path: it lives in podman's mounts.
    assert not Path(sandbox).exists()
    pid = inspect["State"]["Pid"]
    ours = f"/proc/{pid}/ns/net"
    addr = run(["nsenter", f"--net={ours}", "ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
    ip = addr.split()[3].split("/")[0]
    assert ip.startswith("192.0.2.15"), addr
    for target in (GATEWAY4, PODMAN_NODE_IP):
        assert ping(ours, target), f"the container does not reach {target}"
    (endpoint,) = _endpoints(service)
    assert ip in json.dumps(endpoint)
    podman("rm", "-f", "c1")
    wait_for("the address released", lambda: not _endpoints(service), 30, 0.2)
    assert diff(before, namespace_footprint(podman.node)) == []
