"""Run a real Kubernetes node in the lane's own namespaces (the shape: `testbed.nodespec`).

`running_node` brings up, in order: the lab's L2 segment (a switch and a gateway namespace,
the node's uplink `eth0` on it), the three kernel settings a kubelet insists on, the kubelet's
cgroup root, the PKI, etcd and kube-apiserver, kube-controller-manager and kube-scheduler,
containerd with the lane's images imported, Multus over the cluster network as the node's
CNI, kube-proxy and the kubelet, and yields when the Node is Ready. On leaving, on failure
too, it stops every container and process it started (by pid), removes the cgroups, restores
the kernel settings and removes every namespace, mount and file it made.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from spidernet.node import netns
from spidernet.node.lab.topology import Segment, Topology, iface
from spidernet.node.netlink.client import netlink
from spidernet.testbed import nodehost
from spidernet.testbed.guard import OwnStack
from spidernet.testbed.kubebuild import log_tail as _tail
from spidernet.testbed.kubecluster import ClusterStartFailed, _get, _process, free_port
from spidernet.testbed.kubespec import kubectl_argv, kubectl_env
from spidernet.testbed.nodeargv import (
    apiserver_argv,
    containerd_argv,
    controller_manager_argv,
    etcd_argv,
    kube_proxy_argv,
    kubelet_argv,
    scheduler_argv,
)
from spidernet.testbed.nodeconfig import (
    MULTUS_RBAC,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
    multus_conf,
)
from spidernet.testbed.nodepki import (
    CERTS,
    KUBECONFIG_USERS,
    node_kubeconfig,
    openssl_cnf,
    pki_commands,
)
from spidernet.testbed.nodespec import (
    API_PORT,
    CNI_BIN_DIR,
    CNI_CONF_DIR,
    GATEWAY4,
    KUBELET_SYSCTLS,
    NODE_IP,
    NODE_NAME,
    PRIVATE_PATHS,
    SEGMENT4,
    SHARED_PATHS,
    UPLINK,
    NodeFiles,
    json_text,
)
from spidernet.testbed.waiting import seconds_until

READY_TIMEOUT_S = 180.0
# Below the kubelet's cgroup root, beside its kubepods: every node process (and what it forks:
# containerd's shims) lives here, so nothing outlives the lane even if its process dies.
DAEMONS_CGROUP = "daemons"
# Debian's reference plugins the node's networks use (containernetworking-plugins).
DEBIAN_CNI_DIR = Path("/usr/lib/cni")
DEBIAN_PLUGINS = ("bridge", "host-local", "loopback", "macvlan", "ipvlan", "portmap", "tuning")


class NodeStartFailed(ClusterStartFailed):
    """A node process exited or was not ready in time; the message holds its log tail."""


@dataclass(frozen=True)
class NodeTools:
    """The programs a node runs: Go-built ones from the cache, containerd and ctr from Debian."""

    etcd: Path
    apiserver: Path
    controller_manager: Path
    scheduler: Path
    kubelet: Path
    kube_proxy: Path
    kubectl: Path
    multus: Path
    containerd: str = "containerd"
    ctr: str = "ctr"


@dataclass(frozen=True)
class NodeImages:
    """Image archives to import into the node's containerd, and the sandbox (pause) image."""

    pause: str
    archives: tuple[Path, ...]


@dataclass
class RealNode:
    """A running node: where things are and how to talk to them."""

    files: NodeFiles
    tools: NodeTools
    topology: Topology
    segment: Segment
    gateway: str  # the gateway namespace's name
    cgroup_root: str
    pids: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (group system:masters)."""
        return self.files.kubeconfig_of("admin")

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the node's kubectl as the admin; raises NodeCommandFailed on a non-zero exit
        when `check`."""
        argv = kubectl_argv(self.tools.kubectl, self.kubeconfig, args)
        return run(argv, stdin=stdin, check=check, timeout=timeout, env=kubectl_env(os.environ))

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ctr against the node's containerd, in the CRI's namespace."""
        argv = [self.tools.ctr, f"--address={self.files.containerd_socket}", "-n", "k8s.io"]
        return run([*argv, *args], check=check, timeout=300)

    def log(self, name: str) -> Path:
        """The log file of one node process (etcd, kube-apiserver, kubelet, ...)."""
        return self.files.log(name)


class NodeCommandFailed(Exception):
    """A command the test bed ran against the node exited non-zero; the message holds its
    output."""


def run(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` with its output captured; raise NodeCommandFailed when `check` and it fails."""
    done = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else dict(env),
    )
    if check and done.returncode != 0:
        raise NodeCommandFailed(
            f"'{' '.join(argv[:6])} ...' exited {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def _say(msg: str) -> None:
    print(f"node: {msg}", file=sys.stderr, flush=True)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def make_pki(files: NodeFiles) -> None:
    """The CA, every certificate of nodespec.CERTS, the service-account key pair and each
    identity's kubeconfig."""
    files.openssl_cnf.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.openssl_cnf.write_text(openssl_cnf(CERTS))
    serials = [secrets.randbits(63) for _ in CERTS]
    for argv in pki_commands(files, CERTS, serials):
        run(argv)
    for user in KUBECONFIG_USERS:
        _write(files.kubeconfig_of(user), json_text(node_kubeconfig(files, user)), 0o600)


def _uplink(topo: Topology, segment: Segment) -> None:
    """This namespace's `eth0` on the segment, with the node's address and a default route
    through the gateway (kubelet and kube-proxy take the node's address from it)."""
    here = f"/proc/{os.getpid()}/ns/net"
    with netlink(netns.path_of(segment.switch)) as nl:
        nl.add_veth("node1", UPLINK, peer_netns=here)
        nl.set_link("node1", master=nl.index(segment.bridge), state="up")
    with netlink(None) as nl:
        nl.set_link("lo", state="up")
        nl.set_link(UPLINK, state="up")
        nl.add_address(UPLINK, iface(f"{NODE_IP}/{SEGMENT4.split('/')[1]}"))
    subprocess.run(["ip", "route", "add", "default", "via", GATEWAY4], check=True)
    for key, value in (("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")):
        nodehost.sysctl_path(key).write_text(value)


def _https_ready(port: int, files: NodeFiles, path: str = "/readyz") -> Callable[[], bool]:
    context = ssl.create_default_context(cafile=str(files.ca_crt))
    context.load_cert_chain(str(files.crt("admin")), str(files.key("admin")))
    return lambda: _get(port, path, context) == (200, "ok")


def _http_ok(port: int, path: str) -> Callable[[], bool]:
    return lambda: _get(port, path, None)[0] == 200


@dataclass
class _Starter:
    """Starts the node's processes into one ExitStack (stopped in reverse order)."""

    stack: ExitStack
    files: NodeFiles
    node: RealNode

    def start(
        self, name: str, argv: list[str], ready: Callable[[], bool] | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.files.log(name)
        confine = nodehost.confine(f"{self.node.cgroup_root}/{DAEMONS_CGROUP}")
        proc = self.stack.enter_context(_process(argv, log, confine))
        self.node.pids[name] = proc.pid
        if ready is not None:
            started = time.monotonic()
            while not ready():
                if proc.poll() is not None:
                    raise NodeStartFailed(f"{name} exited ({proc.returncode}):\n{_tail(log)}")
                if time.monotonic() - started > READY_TIMEOUT_S:
                    raise NodeStartFailed(
                        f"{name} not ready in {READY_TIMEOUT_S:.0f}s:\n{_tail(log)}"
                    )
                time.sleep(0.2)
            self.node.timings[name] = time.monotonic() - started
        return proc


def _install_cni(tools: NodeTools, files: NodeFiles) -> None:
    """Debian's plugins and Multus into the node's CNI bin dir; Multus's config (over the
    cluster network) into its config dir."""
    bin_dir = Path(CNI_BIN_DIR)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in DEBIAN_PLUGINS:
        shutil.copy2(DEBIAN_CNI_DIR / name, bin_dir / name)
    shutil.copy2(tools.multus, bin_dir / "multus")
    conf_dir = Path(CNI_CONF_DIR)
    _write(conf_dir / "00-multus.conf", json_text(multus_conf(files)))


def _node_ready(node: RealNode) -> Callable[[], bool]:
    def ready() -> bool:
        done = node.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if done.returncode != 0:
            return False
        conditions = json.loads(done.stdout).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    return ready


def stop_containers(node: RealNode) -> None:
    """Kill and delete every task and container the CRI made (a container's shim exits with
    its last task), before containerd itself stops."""
    tasks = node.ctr("tasks", "ls", "-q", check=False).stdout.split()
    for task in tasks:
        node.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
    deadline = time.monotonic() + 30
    for task in tasks:
        while time.monotonic() < deadline:
            if node.ctr("tasks", "delete", task, check=False).returncode == 0:
                break
            time.sleep(0.2)
    for container in node.ctr("containers", "ls", "-q", check=False).stdout.split():
        node.ctr("containers", "delete", container, check=False)


def _unmount_below(top: Path) -> None:
    """Lazily unmount every mount at or below `top` (overlay roots, shm, netns pins), deepest
    first, so the directory can be removed."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(top) or point.startswith(f"{top}/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_tree(top: Path) -> None:
    _unmount_below(top)
    shutil.rmtree(top, ignore_errors=True)


@contextmanager
def running_node(
    tools: NodeTools, images: NodeImages, parent: Path | None = None
) -> Iterator[RealNode]:
    """A Ready node (see the module's docstring); everything is undone on leaving."""
    nodehost.check_isolated()
    # OwnStack: a child pyroute2 forked never unwinds this node's teardown (testbed.guard).
    with OwnStack() as stack:
        stack.enter_context(nodehost.reap_descendants())
        stack.enter_context(nodehost.private_mounts(PRIVATE_PATHS, SHARED_PATHS))
        files = NodeFiles(Path(tempfile.mkdtemp(prefix="spidernet-node-", dir=parent)))
        stack.callback(_remove_tree, files.dir)
        topo = Topology()
        stack.callback(topo.teardown)
        segment = topo.segment()
        gateway = topo.gateway(segment, (iface(f"{GATEWAY4}/24"),))
        _uplink(topo, segment)
        stack.enter_context(nodehost.kernel_settings(KUBELET_SYSCTLS, nodehost.settings_record()))
        cgroup = stack.enter_context(nodehost.cgroup_root(nodehost.CGROUP_PREFIX + topo.prefix))
        node = RealNode(files, tools, topo, segment, gateway, cgroup)
        started = time.monotonic()
        _say(f"making the PKI in {files.dir}")
        make_pki(files)
        start = _Starter(stack, files, node)
        etcd_client, etcd_peer = free_port(), free_port()
        start.start(
            "etcd",
            etcd_argv(tools.etcd, files, etcd_client, etcd_peer),
            lambda: _get(etcd_client, "/health", None)[0] == 200,
        )
        start.start(
            "kube-apiserver",
            apiserver_argv(tools.apiserver, files, etcd_client),
            _https_ready(API_PORT, files),
        )
        node.kubectl("apply", "-f", "-", stdin="\n---\n".join(json_text(d) for d in MULTUS_RBAC))
        start.start(
            "kube-controller-manager", controller_manager_argv(tools.controller_manager, files)
        )
        start.start("kube-scheduler", scheduler_argv(tools.scheduler, files))
        _write(files.containerd_config, containerd_config(files, images.pause))
        files.containerd_root.mkdir(parents=True, exist_ok=True)
        start.start(
            "containerd",
            containerd_argv(tools.containerd, files),
            lambda: node.ctr("version", check=False).returncode == 0,
        )
        stack.callback(stop_containers, node)  # runs before containerd stops
        for archive in images.archives:
            node.ctr("images", "import", str(archive))
        _install_cni(tools, files)
        _write(files.kube_proxy_config, json_text(kube_proxy_config(files)))
        # kube-proxy reports healthy once its Node exists: it is waited for after the kubelet.
        start.start("kube-proxy", kube_proxy_argv(tools.kube_proxy, files))
        _write(files.resolv_conf, "nameserver 192.0.2.1\n")
        _write(files.kubelet_config, json_text(kubelet_config(files, cgroup)))
        files.kubelet_root.mkdir(parents=True, exist_ok=True)
        files.pod_logs.mkdir(parents=True, exist_ok=True)
        kubelet = start.start("kubelet", kubelet_argv(tools.kubelet, files))
        try:
            node.timings["node-ready"] = seconds_until(
                "node Ready", _node_ready(node), READY_TIMEOUT_S, 0.5
            )
        except TimeoutError as e:
            state = "running" if kubelet.poll() is None else f"exited {kubelet.returncode}"
            raise NodeStartFailed(f"{e} (kubelet {state}):\n{_tail(files.log('kubelet'))}") from e
        node.timings["kube-proxy"] = seconds_until(
            "kube-proxy healthy", _http_ok(10256, "/healthz"), READY_TIMEOUT_S, 0.2
        )
        # The controller-manager gives each namespace its `default` ServiceAccount; no pod
        # is admitted before it exists.
        node.timings["service-accounts"] = seconds_until(
            "the default ServiceAccount",
            lambda: node.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            READY_TIMEOUT_S,
            0.2,
        )
        node.timings["total"] = time.monotonic() - started
        _say(f"node {NODE_NAME} Ready in {node.timings['total']:.0f}s")
        yield node
