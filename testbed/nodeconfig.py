"""The node lane's node as data, its components' configs: containerd's, the kubelet's and
kube-proxy's, the CNI configs of the cluster network and Multus, and Multus's RBAC (the node
itself: nodespec.py)."""

from __future__ import annotations

from typing import Any

from spidernet.testbed.nodespec import (
    CLUSTER_BRIDGE,
    CLUSTER_CIDR,
    CLUSTER_DNS,
    CLUSTER_NETWORK,
    CNI_BIN_DIR,
    CNI_CONF_DIR,
    CNI_STATE_DIR,
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    NodeFiles,
)


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


__all__ = [
    "MULTUS_RBAC",
    "cluster_network",
    "containerd_config",
    "kube_proxy_config",
    "kubelet_config",
    "multus_conf",
]
