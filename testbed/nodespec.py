"""The real node of the node lane, as data: addresses, files, certificates, configs, argv.

One Kubernetes node in the lane's own network namespace: etcd and kube-apiserver (the control
plane), kube-controller-manager, kube-scheduler, containerd, a kubelet and kube-proxy, with
Multus (thin plugin) as the node's CNI over Debian's bridge + host-local for every pod's eth0.
The node's uplink `eth0` sits on the lab's L2 segment (192.0.2.0/24, gateway 192.0.2.1), where
the macvlan NICs that spidernet gives pods land. Nothing here runs a process (`testbed.node`
does); every path is under one directory, except the standard paths a node's software
hard-codes, which `testbed.nodehost` covers with private mounts first (`PRIVATE_PATHS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidernet.testbed.kubespec import SERVICE_ACCOUNT_ISSUER, ClusterFiles, kubeconfig

NODE_NAME = "node1"
UPLINK = "eth0"
SEGMENT4 = "192.0.2.0/24"
GATEWAY4 = "192.0.2.1"
NODE_IP = "192.0.2.2"
API_PORT = 6443
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR
CLUSTER_DNS = "10.96.0.10"
CLUSTER_CIDR = "10.244.0.0/16"
POD_CIDR = "10.244.0.0/24"  # node1's share, handed out by host-local on the cluster bridge
CLUSTER_BRIDGE = "cni0"
CLUSTER_NETWORK = "cluster"  # the name of the eth0 network (bridge + host-local)

# Paths the node's software hard-codes (containerd's netns directory, the CNI directories,
# kubelet's container-log links) or that deploy/'s hostPath volumes name: each gets a tmpfs
# of the lane's own, so nothing lands on this machine's. /opt and /var/log are covered whole
# (the host may lack /opt/cni and /var/log/containers; their contents are not needed here).
PRIVATE_PATHS = (
    "/run/netns",
    "/opt",
    "/etc/cni",
    "/var/lib/cni",
    "/var/log",
    "/run/spidernet",
    "/var/lib/spidernet",
    "/run/containerd",
)
# Private mounts whose later sub-mounts must reach the containers that bind them with
# HostToContainer propagation (containerd refuses that propagation from a private source):
# the pods' network namespaces, which containerd pins under /run/netns after the agent starts.
SHARED_PATHS = ("/run/netns",)
CNI_BIN_DIR = "/opt/cni/bin"
CNI_CONF_DIR = "/etc/cni/net.d"
CNI_STATE_DIR = "/var/lib/cni"

# The three kernel settings a kubelet with protectKernelDefaults insists on, and their values;
# the lane sets them for its run and restores what it found.
KUBELET_SYSCTLS = {"vm.overcommit_memory": "1", "kernel.panic": "10", "kernel.panic_on_oops": "1"}


@dataclass(frozen=True)
class Cert:
    """One certificate the node's CA signs: a server's (with its subject alternative names)
    or a client's (its CN is the user, each O a group)."""

    name: str
    subject: str
    server: bool = False
    sans: tuple[str, ...] = ()


# The API server serves the names in-cluster clients dial: the `kubernetes` Service's
# ClusterIP and DNS names, the node's address, loopback.
CERTS = (
    Cert(
        "apiserver",
        "/CN=kube-apiserver",
        server=True,
        sans=(
            "IP:127.0.0.1",
            f"IP:{NODE_IP}",
            f"IP:{KUBERNETES_SERVICE_IP}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ),
    ),
    Cert("admin", "/O=system:masters/CN=spidernet-node-admin"),
    Cert("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"),
    Cert("controller-manager", "/CN=system:kube-controller-manager"),
    Cert("scheduler", "/CN=system:kube-scheduler"),
    Cert("kube-proxy", "/CN=system:kube-proxy"),
    Cert("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}"),
    Cert("multus", "/CN=spidernet-node-multus"),
)
# The identities that get a kubeconfig (kube-apiserver itself and its kubelet client do not).
KUBECONFIG_USERS = ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet", "multus")


@dataclass(frozen=True)
class NodeFiles(ClusterFiles):
    """Everything the node writes, under one directory (the PKI and etcd as ClusterFiles)."""

    def kubeconfig_of(self, user: str) -> Path:
        """The kubeconfig of one identity (KUBECONFIG_USERS)."""
        return self.dir / "kubeconfig" / f"{user}.kubeconfig"

    @property
    def config_dir(self) -> Path:
        return self.dir / "config"

    @property
    def containerd_config(self) -> Path:
        return self.config_dir / "containerd.toml"

    @property
    def containerd_root(self) -> Path:
        return self.dir / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        """containerd's state directory; /run/containerd is private, and this lies inside it."""
        return Path("/run/containerd/spidernet-node")

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def kubelet_config(self) -> Path:
        return self.config_dir / "kubelet.yaml"

    @property
    def kubelet_root(self) -> Path:
        return self.dir / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.dir / "pod-logs"

    @property
    def resolv_conf(self) -> Path:
        """The resolv.conf kubelet hands pods (nameservers of their DNS policy come after)."""
        return self.config_dir / "resolv.conf"

    @property
    def kube_proxy_config(self) -> Path:
        return self.config_dir / "kube-proxy.yaml"

    @property
    def multus_log(self) -> Path:
        return self.dir / "multus.log"


def openssl_cnf(certs: Sequence[Cert]) -> str:
    """openssl sections: the CA's, then one extension section per certificate (`ext_NAME`)."""
    out = [
        "[req]",
        "distinguished_name = dn",
        "prompt = no",
        "[dn]",
        "CN = unused",
        "[ca]",
        "basicConstraints = critical,CA:TRUE",
        "keyUsage = critical,keyCertSign,cRLSign",
        "subjectKeyIdentifier = hash",
    ]
    for cert in certs:
        out += [
            f"[ext_{cert.name}]",
            "basicConstraints = critical,CA:FALSE",
            "keyUsage = critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage = {'serverAuth' if cert.server else 'clientAuth'}",
        ]
        if cert.sans:
            out.append(f"subjectAltName = {','.join(cert.sans)}")
    return "\n".join(out) + "\n"


def _argv(template: str, **values: object) -> list[str]:
    """Split `template` on whitespace, then fill each word (a value stays one word)."""
    return [word.format(**values) for word in template.split()]


def pki_commands(
    files: NodeFiles, certs: Sequence[Cert], serials: Sequence[int]
) -> list[list[str]]:
    """openssl command lines: the CA, each certificate in `certs` and the service-account key
    pair (EC P-256 throughout, as Go's crypto/x509 and kubeadm accept)."""
    genkey = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key}"
    cnf = files.openssl_cnf
    cmds = [
        _argv(genkey, key=files.ca_key),
        _argv(
            "openssl req -x509 -new -config {cnf} -extensions ca -key {key}"
            " -subj /CN=spidernet-node-ca -days 7 -out {crt}",
            cnf=cnf,
            key=files.ca_key,
            crt=files.ca_crt,
        ),
    ]
    for cert, serial in zip(certs, serials, strict=True):
        csr = f"{files.crt(cert.name)}.csr"
        cmds += [
            _argv(genkey, key=files.key(cert.name)),
            _argv(
                "openssl req -new -config {cnf} -key {key} -subj {subject} -out {csr}",
                cnf=cnf,
                key=files.key(cert.name),
                subject=cert.subject,
                csr=csr,
            ),
            _argv(
                "openssl x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -set_serial {serial}"
                " -days 7 -extfile {cnf} -extensions ext_{name} -out {crt}",
                csr=csr,
                ca=files.ca_crt,
                ca_key=files.ca_key,
                serial=serial,
                cnf=cnf,
                name=cert.name,
                crt=files.crt(cert.name),
            ),
        ]
    cmds += [
        _argv(genkey, key=files.key("sa")),
        _argv("openssl pkey -in {key} -pubout -out {pub}", key=files.key("sa"), pub=files.sa_pub),
    ]
    return cmds


def server_url() -> str:
    """Where every component reaches the API server: the node's own address."""
    return f"https://{NODE_IP}:{API_PORT}"


def node_kubeconfig(files: NodeFiles, user: str) -> dict[str, Any]:
    """The kubeconfig of `user` (its client certificate) for the node's API server."""
    doc = kubeconfig(server_url(), files)
    doc["users"][0]["user"] = {
        "client-certificate": str(files.crt(user)),
        "client-key": str(files.key(user)),
    }
    return doc


def etcd_argv(binary: Path, files: NodeFiles, client_port: int, peer_port: int) -> list[str]:
    """A one-member etcd on the node's loopback, plain HTTP, no fsync (thrown away after)."""
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(binary),
        "--name=node1",
        f"--data-dir={files.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=node1={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_argv(binary: Path, files: NodeFiles, etcd_port: int) -> list[str]:
    """kube-apiserver as kubeadm configures one: Node and RBAC authorization, NodeRestriction,
    the `kubernetes` Service's endpoint kept on the node's address by the lease reconciler,
    and a client certificate for the kubelets it calls (exec, logs)."""
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=0.0.0.0",
        f"--advertise-address={NODE_IP}",
        f"--secure-port={API_PORT}",
        f"--cert-dir={files.dir / 'pki'}",
        f"--tls-cert-file={files.crt('apiserver')}",
        f"--tls-private-key-file={files.key('apiserver')}",
        f"--client-ca-file={files.ca_crt}",
        f"--kubelet-client-certificate={files.crt('apiserver-kubelet-client')}",
        f"--kubelet-client-key={files.key('apiserver-kubelet-client')}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={files.sa_pub}",
        f"--service-account-signing-key-file={files.key('sa')}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def controller_manager_argv(binary: Path, files: NodeFiles) -> list[str]:
    """kube-controller-manager with a service account per controller (as kubeadm runs it)."""
    kubeconfig_path = files.kubeconfig_of("controller-manager")
    return [
        str(binary),
        f"--kubeconfig={kubeconfig_path}",
        f"--authentication-kubeconfig={kubeconfig_path}",
        f"--authorization-kubeconfig={kubeconfig_path}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={files.key('sa')}",
        f"--root-ca-file={files.ca_crt}",
        f"--cluster-cidr={CLUSTER_CIDR}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
    ]


def scheduler_argv(binary: Path, files: NodeFiles) -> list[str]:
    """kube-scheduler on the node's loopback."""
    kubeconfig_path = files.kubeconfig_of("scheduler")
    return [
        str(binary),
        f"--kubeconfig={kubeconfig_path}",
        f"--authentication-kubeconfig={kubeconfig_path}",
        f"--authorization-kubeconfig={kubeconfig_path}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--profiling=false",
    ]


def containerd_config(files: NodeFiles, pause_image: str) -> str:
    """containerd 1.6's config (version 2): its own root, state and socket; the CRI plugin
    with runc through the cgroupfs driver (cgroup v1, no systemd), the lane's pause image,
    and the standard CNI directories (private to the lane). `restrict_oom_score_adj`: a
    container's OOM score may not go below containerd's own, as where containerd lacks
    CAP_SYS_RESOURCE (this machine's root does), runc could not lower it and every sandbox
    would fail."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f'root = "{files.containerd_root}"',
            f'state = "{files.containerd_state}"',
            "[grpc]",
            f'  address = "{files.containerd_socket}"',
            "[debug]",
            '  level = "info"',
            f"[{cri}]",
            f'  sandbox_image = "{pause_image}"',
            '  stream_server_address = "127.0.0.1"',
            "  enable_selinux = false",
            "  disable_apparmor = true",
            "  restrict_oom_score_adj = true",
            "  max_concurrent_downloads = 3",
            f"[{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]",
            '  BinaryName = "runc"',
            "  SystemdCgroup = false",
            f"[{cri}.cni]",
            f'  bin_dir = "{CNI_BIN_DIR}"',
            f'  conf_dir = "{CNI_CONF_DIR}"',
            "  max_conf_num = 1",
            "",
        ]
    )


def containerd_argv(binary: str, files: NodeFiles) -> list[str]:
    return [binary, "--config", str(files.containerd_config)]


def kubelet_config(files: NodeFiles, cgroup_root: str) -> dict[str, Any]:
    """The KubeletConfiguration: cgroup v1 through cgroupfs under the lane's own cgroup root,
    x509 client authentication (the API server's kubelet client), the kernel defaults
    protected (the lane sets them; the kubelet never writes them), image GC off (the lane's
    images are imported, never pulled), and room for the benchmark's 100 pods."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": f"unix://{files.containerd_socket}",
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(files.ca_crt)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDomain": "cluster.local",
        "clusterDNS": [CLUSTER_DNS],
        "resolvConf": str(files.resolv_conf),
        "podLogsDir": str(files.pod_logs),
        "failSwapOn": False,
        "protectKernelDefaults": True,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "maxPods": 250,
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100,
        "registerNode": True,
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "runtimeRequestTimeout": "2m",
    }


def kubelet_argv(binary: Path, files: NodeFiles) -> list[str]:
    return [
        str(binary),
        f"--config={files.kubelet_config}",
        f"--kubeconfig={files.kubeconfig_of('kubelet')}",
        f"--root-dir={files.kubelet_root}",
        f"--cert-dir={files.kubelet_root / 'pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        "--v=1",
    ]


def kube_proxy_config(files: NodeFiles) -> dict[str, Any]:
    """kube-proxy in nftables mode (the node's own namespace only), leaving every global
    conntrack setting of this machine's kernel alone."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clusterCIDR": CLUSTER_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        "clientConnection": {"kubeconfig": str(files.kubeconfig_of("kube-proxy"))},
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def kube_proxy_argv(binary: Path, files: NodeFiles) -> list[str]:
    return [str(binary), f"--config={files.kube_proxy_config}", "--v=1"]


def cluster_network() -> dict[str, Any]:
    """Every pod's eth0: Debian's bridge on cni0 (the node routes for it) + host-local, as
    one plugin config. (Given to Multus as a conflist file, its DEL of a sandbox whose ADD
    failed re-reads the file and re-encodes it without the plugins' own keys, and
    host-local then fails every retry with "no IP ranges specified": the kubelet never
    gets the sandbox down.)"""
    return {
        "cniVersion": "1.0.0",
        "name": CLUSTER_NETWORK,
        "type": "bridge",
        "bridge": CLUSTER_BRIDGE,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": POD_CIDR}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": f"{CNI_STATE_DIR}/networks",
        },
    }


def multus_conf(files: NodeFiles) -> dict[str, Any]:
    """Multus (thin plugin) as the node's CNI: the cluster network for eth0 (its first
    delegate), the networks a pod's `k8s.v1.cni.cncf.io/networks` names for net1, net2, ..."""
    return {
        "cniVersion": "1.0.0",
        "name": "multus-cni-network",
        "type": "multus",
        "kubeconfig": str(files.kubeconfig_of("multus")),
        "confDir": "/etc/cni/multus/net.d",
        "cniDir": f"{CNI_STATE_DIR}/multus",
        "binDir": CNI_BIN_DIR,
        "logFile": str(files.multus_log),
        "logLevel": "verbose",
        "delegates": [cluster_network()],
    }


# What the Multus identity may do, as Multus's own DaemonSet grants it: read pods and write
# their network-status annotation, read NetworkAttachmentDefinitions, record events.
MULTUS_RBAC: tuple[dict[str, Any], ...] = (
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "spidernet-node-multus"},
        "rules": [
            {"apiGroups": ["k8s.cni.cncf.io"], "resources": ["*"], "verbs": ["*"]},
            {
                "apiGroups": [""],
                "resources": ["pods", "pods/status"],
                "verbs": ["get", "list", "update", "patch", "watch"],
            },
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["*"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "spidernet-node-multus"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "spidernet-node-multus",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": "spidernet-node-multus",
            }
        ],
    },
)


def json_text(doc: Mapping[str, Any]) -> str:
    """A config file's text (JSON is YAML too, so the kube configs take it as well)."""
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
