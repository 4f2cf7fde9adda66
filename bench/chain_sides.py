"""The two chains `bench.chain` compares and the lab they run in.

The lab: a switch, a gateway namespace (192.0.2.1/24), a "host" namespace whose eth0
(192.0.2.2/24) is the macvlan master, a pool of BATCH pod namespaces reused call after call,
a `spidernet serve` holding a SpiderIPPool, and the runtime worker (`bench.chain_worker`)
started once inside the host namespace, which spawns every plugin process.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from spidernet.node import netns
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface
from spidernet.node.netlink.client import netlink
from spidernet.testbed.conflists import chain_conf, macvlan, spidernet_coordinator, spidernet_ipam

from .ipam_calls import HOST_LOCAL, install_plugins
from .ipam_common import BATCH, allocated, pool_doc
from .timing import SpawnError

ROOT = Path(__file__).resolve().parents[1]
REFERENCE, SPIDERNET = "reference", "spidernet"
SIDES = (REFERENCE, SPIDERNET)
LABELS = {
    REFERENCE: "Go macvlan + host-local",
    SPIDERNET: "macvlan + spidernet-ipam + spidernet-coordinator",
}
SUBNET, GATEWAY, HOST_ADDRESS = "192.0.2.0/24", "192.0.2.1", "192.0.2.2/24"
FIRST, LAST = "192.0.2.10", "192.0.2.250"
POOL = "bench-chain"
SERVICE_CIDR = "10.96.0.0/12"
MASTER = "eth0"
HOST_LINKS = {"lo", MASTER}


def cni_args(pod: str) -> str:
    """CNI_ARGS as a Kubernetes runtime passes them."""
    return f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={pod}"


def reference_conflist(data_dir: Path) -> dict[str, Any]:
    """Go macvlan + host-local. The range starts and ends where the SpiderIPPool does, so
    both hand out the same 241 addresses (and host-local never the host's own .2)."""
    rng = {"subnet": SUBNET, "gateway": GATEWAY, "rangeStart": FIRST, "rangeEnd": LAST}
    ipam = {"type": "host-local", "dataDir": str(data_dir), "ranges": [[rng]]}
    return chain_conf(macvlan(ipam, MASTER), name="bench-reference")


def spidernet_conflist(socket: Path) -> dict[str, Any]:
    """macvlan + spidernet-ipam (the service's socket named in the config, as Spiderpool's
    configs do) + spidernet-coordinator."""
    return chain_conf(
        macvlan(spidernet_ipam(socket, default_ipv4_ippool=[POOL]), MASTER),
        spidernet_coordinator(serviceCIDR=[SERVICE_CIDR]),
        name="bench-spidernet",
    )


class Worker:
    """The runtime worker in the host namespace, one request and answer at a time."""

    def __init__(self, host: str, networks: dict[str, Any], log: Path) -> None:
        # `ip netns exec` once, for the worker: it also remounts /sys for that namespace,
        # as for every plugin the netns test lane runs.
        argv = netns.exec_argv(host, [sys.executable, "-m", "bench.chain_worker"])
        self.log = log
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        self._write({"networks": networks})

    def _write(self, doc: dict[str, Any]) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(doc).encode() + b"\n")
        stdin.flush()

    def call(self, **req: str) -> dict[str, Any]:
        """Send one request; its answer, or SpawnError when it failed."""
        self._write(req)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            tail = " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-5:])
            raise SpawnError(f"the runtime worker exited ({self.proc.wait()}): {tail}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise SpawnError(f"{req['net']} {req['op']} {req['verb']}: {answer.get('error')}")
        return answer

    def close(self) -> None:
        """End of input; the worker exits (killed, by its pid, if it does not in time)."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):  # it is gone already (a broken pipe)
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Lab:
    """Everything a run measures against; `stack` undoes it all."""

    topo: Topology
    host: str
    pods: list[str]
    service: ServiceProcess
    worker: Worker
    host_local_dir: Path
    executables: dict[str, str]

    def pod_path(self, index: int) -> str:
        """The netns path of pod namespace `index` of the pool."""
        return netns.path_of(self.pods[index])


def describe(exe: Path) -> str:
    """What an installed plugin executable is: compiled, or the script's `#!` line."""
    head = exe.read_bytes()[:200]
    if head.startswith(b"\x7fELF"):
        return "compiled (ELF)"
    return head.split(b"\n", 1)[0].decode(errors="replace")


def _teardown(topo: Topology, console: Console) -> None:
    for error in topo.teardown():
        console.print(f"[red]teardown: {error}[/]")


def build_lab(base: Path, stack: ExitStack, console: Console) -> Lab:
    """The topology, plugins, service, pool and worker; each registered on `stack` for
    removal (in reverse order) as soon as it exists."""
    topo = Topology()
    stack.callback(_teardown, topo, console)
    segment = topo.segment()
    topo.gateway(segment, (iface(f"{GATEWAY}/24"),))
    host = topo.namespace("host")
    topo.attach(segment, host, MASTER, (iface(HOST_ADDRESS),))
    pods = [topo.namespace(f"pod{i}") for i in range(BATCH)]
    bin_dir = install_plugins(base / "bin", "auto").parent
    svc = ServiceProcess(socket=base / "s.sock", state_dir=base / "state", log=base / "svc.log")
    stack.callback(svc.stop)
    svc.start()
    ips = [f"{FIRST}-{LAST}"]
    svc.client.request("POST", "/v1/resources", pool_doc(POOL, SUBNET, ips, gateway=GATEWAY))
    cni_path = [str(bin_dir), str(HOST_LOCAL.parent)]
    env = {"SPIDERNET_STATE_DIR": str(base / "plugins"), "SPIDERNET_SOCKET": str(svc.socket)}
    networks = {
        REFERENCE: {"conflist": reference_conflist(base / "host-local"), "cni_path": cni_path},
        SPIDERNET: {"conflist": spidernet_conflist(svc.socket), "cni_path": cni_path, "env": env},
    }
    worker = Worker(host, networks, base / "worker.log")
    stack.callback(worker.close)
    exes = {p.name: describe(p) for p in sorted(bin_dir.iterdir())}
    return Lab(topo, host, pods, svc, worker, base / "host-local", exes)


def _links(ns: str) -> set[str]:
    with netlink(netns.path_of(ns)) as nl:
        return {link.name for link in nl.links()}


def verify_clean(lab: Lab) -> dict[str, Any]:
    """After every DEL: nothing allocated, no link left but the lab's own; raises SpawnError
    otherwise. Returns what it found, for the report."""
    left = allocated(lab.service.client, POOL)
    leases = sorted(
        p.name
        for p in lab.host_local_dir.glob("*/*")
        if not p.name.startswith(("last_reserved_ip", "lock"))
    )
    host_links = _links(lab.host)
    pod_links = {pod: sorted(_links(pod) - {"lo"}) for pod in lab.pods}
    problems = []
    if left:
        problems.append(f"{left} addresses still allocated in {POOL}")
    if leases:
        problems.append(f"host-local leases left: {leases}")
    if host_links != HOST_LINKS:
        problems.append(f"host namespace links: {sorted(host_links)}, want {sorted(HOST_LINKS)}")
    problems += [f"{pod} still has {links}" for pod, links in pod_links.items() if links]
    if problems:
        raise SpawnError("after every DEL: " + "; ".join(problems))
    return {
        "pool_allocated_ip_count": left,
        "host_local_leases": len(leases),
        "host_links": sorted(host_links),
        "pod_links_besides_lo": sum(len(v) for v in pod_links.values()),
    }
