"""The node lane's node as data, its command lines: etcd, the control plane's components,
containerd, the kubelet and kube-proxy (the node itself: nodespec.py)."""

from __future__ import annotations

from pathlib import Path

from spidernet.testbed.kubespec import SERVICE_ACCOUNT_ISSUER
from spidernet.testbed.nodespec import (
    API_PORT,
    CLUSTER_CIDR,
    NODE_IP,
    NODE_NAME,
    SERVICE_CIDR,
    NodeFiles,
)


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


def _component_argv(binary: Path, kubeconfig_path: Path) -> list[str]:
    """What kube-controller-manager and kube-scheduler share: one identity for the API
    server and for checking their own callers, their ports on loopback, no leader election
    (one of each), no profiling."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig_path}",
        f"--authentication-kubeconfig={kubeconfig_path}",
        f"--authorization-kubeconfig={kubeconfig_path}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--profiling=false",
    ]


def controller_manager_argv(binary: Path, files: NodeFiles) -> list[str]:
    """kube-controller-manager with a service account per controller (as kubeadm runs it)."""
    return [
        *_component_argv(binary, files.kubeconfig_of("controller-manager")),
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={files.key('sa')}",
        f"--root-ca-file={files.ca_crt}",
        f"--cluster-cidr={CLUSTER_CIDR}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
    ]


def scheduler_argv(binary: Path, files: NodeFiles) -> list[str]:
    """kube-scheduler on the node's loopback."""
    return _component_argv(binary, files.kubeconfig_of("scheduler"))


def containerd_argv(binary: str, files: NodeFiles) -> list[str]:
    return [binary, "--config", str(files.containerd_config)]


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


def kube_proxy_argv(binary: Path, files: NodeFiles) -> list[str]:
    return [str(binary), f"--config={files.kube_proxy_config}", "--v=1"]


__all__ = [
    "apiserver_argv",
    "containerd_argv",
    "controller_manager_argv",
    "etcd_argv",
    "kube_proxy_argv",
    "kubelet_argv",
    "scheduler_argv",
]
