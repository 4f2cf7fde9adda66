"""`spidernet lab up|status|down`: pods in network namespaces wired through the real CNI
chain (Debian's macvlan plugin + spidernet-ipam + spidernet-coordinator), served by an
embedded `spidernet serve`.

`up` records everything it makes in `lab.json` under the lab directory, so `status` and
`down` work from another process; `down` removes exactly what was recorded, also after a
half-finished `up`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spidernet.cni.config import parse_conflist
from spidernet.cni.result import parse_result, to_dict
from spidernet.control.client import ServiceError, ServiceUnreachable
from spidernet.node import netns
from spidernet.node.errors import NodeError
from spidernet.node.install import install_cni
from spidernet.node.netlink.client import netlink
from spidernet.node.netlink.records import RT_TABLE_MAIN

from .addresses import GATEWAY4, GATEWAY6, HOST4, HOST6, SERVICE_CIDR, SERVICE_IP
from .runtime import Chain, PluginFailed, Target
from .service import ServiceProcess
from .topology import Segment, Topology, iface, ping

DEFAULT_DIR = Path(os.environ.get("SPIDERNET_LAB_DIR", "/run/spidernet-lab"))
SYSTEM_CNI_DIR = "/usr/lib/cni"
NETWORK = "lab-net"
# Debian 12's reference plugins speak CNI up to 1.0.0.
CNI_VERSION = "1.0.0"
POOLS = (
    {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": "lab-v4"},
        "spec": {
            "subnet": "192.0.2.0/24",
            "ips": ["192.0.2.10-192.0.2.250"],
            "gateway": GATEWAY4,
            "default": True,
        },
    },
    {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": "lab-v6"},
        "spec": {
            "subnet": "2001:db8:1::/64",
            "ips": ["2001:db8:1::10-2001:db8:1::ffff"],
            "gateway": GATEWAY6,
            "default": True,
        },
    },
)


class LabError(NodeError):
    """The lab cannot do what was asked (already up, not up, a plugin failed, ...)."""


@dataclass
class PodState:
    """One lab pod: its namespace, sandbox id and the chain's cached ADD result."""

    name: str
    netns: str
    container_id: str
    result: dict[str, Any] | None = None


@dataclass
class LabState:
    """Everything `up` made, as recorded in lab.json."""

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    host: str = ""
    gateway: str = ""
    service_pid: int = 0
    pods: list[PodState] = field(default_factory=list)


def _paths(lab_dir: Path) -> dict[str, Path]:
    return {
        "state": lab_dir / "lab.json",
        "socket": lab_dir / "spidernet.sock",
        "store": lab_dir / "store",
        "bin": lab_dir / "bin",
        "log": lab_dir / "service.log",
    }


def _save(lab_dir: Path, state: LabState) -> None:
    path = _paths(lab_dir)["state"]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(path)


def load(lab_dir: Path = DEFAULT_DIR) -> LabState | None:
    """The recorded lab, or None when no lab is up."""
    try:
        raw = json.loads(_paths(lab_dir)["state"].read_text())
    except FileNotFoundError:
        return None
    pods = [PodState(**p) for p in raw.pop("pods", [])]
    return LabState(**raw, pods=pods)


def _service(lab_dir: Path, pid: int = 0) -> ServiceProcess:
    p = _paths(lab_dir)
    return ServiceProcess(socket=p["socket"], state_dir=p["store"], log=p["log"], pid=pid)


def _chain(lab_dir: Path, host: str) -> Chain:
    p = _paths(lab_dir)
    conflist = {
        "cniVersion": CNI_VERSION,
        "name": NETWORK,
        "plugins": [
            {
                "type": "macvlan",
                "master": "eth0",
                "mode": "bridge",
                "ipam": {"type": "spidernet-ipam", "ipam_unix_socket_path": str(p["socket"])},
            },
            {"type": "spidernet-coordinator", "serviceCIDR": [SERVICE_CIDR]},
        ],
    }
    env = {"SPIDERNET_SOCKET": str(p["socket"]), "SPIDERNET_STATE_DIR": str(p["store"])}
    return Chain(
        parse_conflist(json.dumps(conflist).encode()),
        cni_path=[str(p["bin"]), SYSTEM_CNI_DIR],
        host_netns=host,
        extra_env=env,
    )


def _target(pod: PodState) -> Target:
    return Target(
        container_id=pod.container_id,
        netns_path=str(netns.path_of(pod.netns)),
        ifname="eth0",
        cni_args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME={pod.name}",
    )


def up(
    pods: int, lab_dir: Path = DEFAULT_DIR, progress: Callable[[str], None] | None = None
) -> LabState:
    """Build the lab; on any failure remove what was made and raise LabError."""
    say = progress or (lambda _: None)
    if load(lab_dir) is not None:
        raise LabError(f"a lab is already up (state in {lab_dir}); run `spidernet lab down`")
    if shutil.which("macvlan", path=SYSTEM_CNI_DIR) is None:
        raise LabError(
            f"the macvlan plugin is missing from {SYSTEM_CNI_DIR}: "
            "install Debian's containernetworking-plugins"
        )
    lab_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    p = _paths(lab_dir)
    topo = Topology()
    state = LabState(prefix=topo.prefix, namespaces=topo.created)
    _save(lab_dir, state)
    try:
        install_cni(p["bin"], sys.executable)
        say("starting spidernet serve")
        service = _service(lab_dir)
        service.start(detach=True)
        state.service_pid = service.pid
        _save(lab_dir, state)
        segment: Segment = topo.segment("switch")
        state.gateway = topo.gateway(segment, (iface(f"{GATEWAY4}/24"), iface(f"{GATEWAY6}/64")))
        state.host = topo.namespace("host")
        topo.attach(segment, state.host, "eth0", (iface(f"{HOST4}/24"), iface(f"{HOST6}/64")))
        with netlink(netns.path_of(state.host)) as nl:
            nl.add_address("lo", iface(f"{SERVICE_IP}/32"))
        _save(lab_dir, state)
        for doc in POOLS:
            service.client.request("POST", "/v1/resources", doc)
        chain = _chain(lab_dir, state.host)
        for i in range(1, pods + 1):
            pod = PodState(f"pod{i}", topo.namespace(f"pod{i}"), f"lab-{topo.prefix}-pod{i}")
            state.pods.append(pod)
            _save(lab_dir, state)
            say(f"ADD {pod.name}")
            result = chain.add(_target(pod))
            pod.result = to_dict(result, CNI_VERSION)
            _save(lab_dir, state)
    except (PluginFailed, OSError, ServiceError, ServiceUnreachable, netns.NetnsCommandError) as e:
        errors = down(lab_dir)
        extra = f" (cleanup: {'; '.join(errors)})" if errors else ""
        raise LabError(f"failed to bring the lab up: {e}{extra}") from e
    return state


@dataclass(frozen=True)
class PodRow:
    """One line of the lab's table."""

    pod: str
    netns: str
    ipv4: str
    ipv6: str
    gateway: str
    reaches_gateway: bool
    reaches_host: bool
    reaches_service: bool
    routes: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        """The pod reaches its gateway, its host and the service address."""
        return self.reaches_gateway and self.reaches_host and self.reaches_service


def _routes(ns: str) -> tuple[str, ...]:
    """The pod's main-table routes, `ip route`-like ("10.96.0.0/12 via 192.0.2.2 veth0")."""
    with netlink(netns.path_of(ns)) as nl:
        names = {link.index: link.name for link in nl.links()}
        found = [r for r in nl.routes() if r.table == RT_TABLE_MAIN and r.dst.version == 4]
    return tuple(
        f"{'default' if r.dst.prefixlen == 0 else r.dst}"
        + (f" via {r.gateway}" if r.gateway else "")
        + f" {names.get(r.oif or -1, '?')}"
        for r in found
    )


def rows(state: LabState) -> list[PodRow]:
    """Each pod's addresses (from its ADD result), its IPv4 routes, and whether it reaches
    the gateway (over macvlan), its host and the service address (over veth0) now."""
    out = []
    for pod in state.pods:
        ips = parse_result(pod.result).ips if pod.result else ()
        v4 = next((str(ip.address) for ip in ips if ip.address.version == 4), "-")
        v6 = next((str(ip.address) for ip in ips if ip.address.version == 6), "-")
        gw = next((str(ip.gateway) for ip in ips if ip.gateway and ip.address.version == 4), "-")
        reach = gw != "-" and ping(pod.netns, gw, deadline_s=2)
        host = ping(pod.netns, HOST4, deadline_s=2)
        service = ping(pod.netns, SERVICE_IP, deadline_s=2)
        out.append(
            PodRow(pod.name, pod.netns, v4, v6, gw, reach, host, service, _routes(pod.netns))
        )
    return out


def down(lab_dir: Path = DEFAULT_DIR) -> list[str]:
    """Remove everything the recorded lab made; returns the errors (it keeps going)."""
    state = load(lab_dir)
    if state is None:
        return []
    errors: list[str] = []
    if state.host and state.pods:
        chain = _chain(lab_dir, state.host)
        for pod in reversed(state.pods):
            if pod.result is not None:
                chain.cache[(pod.container_id, "eth0")] = parse_result(pod.result)
            try:
                chain.delete(_target(pod))
            except (PluginFailed, OSError) as e:
                errors.append(f"DEL {pod.name}: {e}")
    if state.service_pid:
        _service(lab_dir, state.service_pid).stop()
    topo = Topology(prefix=state.prefix, created=list(state.namespaces))
    for pod in state.pods:
        if pod.netns not in topo.created:
            topo.created.append(pod.netns)
    for name in (state.gateway, state.host):
        if name and name not in topo.created:
            topo.created.insert(0, name)
    existing = set(netns.names())
    topo.created = [n for n in topo.created if n in existing]
    errors.extend(topo.teardown())
    shutil.rmtree(lab_dir, ignore_errors=True)
    return errors
