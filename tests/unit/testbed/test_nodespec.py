"""The node lane's node as data (spidernet.testbed.nodespec, nodepki, nodeargv,
nodeconfig): addresses that must agree with each other, certificates, configs and command lines."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

from spidernet.testbed.nodeargv import apiserver_argv
from spidernet.testbed.nodeconfig import (
    cluster_network,
    containerd_config,
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
    CLUSTER_CIDR,
    CNI_BIN_DIR,
    CNI_CONF_DIR,
    GATEWAY4,
    KUBERNETES_SERVICE_IP,
    NODE_IP,
    POD_CIDR,
    PRIVATE_PATHS,
    SEGMENT4,
    SERVICE_CIDR,
    SHARED_PATHS,
    NodeFiles,
)

FILES = NodeFiles(Path("/var/tmp/node-x"))


def test_addresses_agree() -> None:
    segment = ipaddress.ip_network(SEGMENT4)
    assert ipaddress.ip_address(NODE_IP) in segment
    assert ipaddress.ip_address(GATEWAY4) in segment
    # The API server's in-cluster address is the first of the service range, and pods'
    # eth0 addresses come from the node's share of the cluster CIDR.
    assert ipaddress.ip_address(KUBERNETES_SERVICE_IP) == ipaddress.ip_network(SERVICE_CIDR)[1]
    assert ipaddress.ip_network(POD_CIDR).subnet_of(ipaddress.ip_network(CLUSTER_CIDR))  # type: ignore[arg-type]


def test_the_api_server_certificate_names_what_clients_dial() -> None:
    (server,) = [c for c in CERTS if c.server]
    assert f"IP:{KUBERNETES_SERVICE_IP}" in server.sans
    assert f"IP:{NODE_IP}" in server.sans
    assert "DNS:kubernetes.default.svc" in server.sans
    cnf = openssl_cnf(CERTS)
    assert f"[ext_{server.name}]" in cnf
    assert "extendedKeyUsage = serverAuth" in cnf
    assert cnf.count("extendedKeyUsage = clientAuth") == len(CERTS) - 1


def test_the_kubelet_is_a_node_identity() -> None:
    (kubelet,) = [c for c in CERTS if c.name == "kubelet"]
    assert kubelet.subject == "/O=system:nodes/CN=system:node:node1"
    assert "--authorization-mode=Node,RBAC" in apiserver_argv(Path("/x"), FILES, 2379)


def test_pki_commands_sign_every_certificate_with_its_own_section() -> None:
    cmds = pki_commands(FILES, CERTS, list(range(len(CERTS))))
    signs = [c for c in cmds if c[:2] == ["openssl", "x509"]]
    assert len(signs) == len(CERTS)
    for cert, cmd in zip(CERTS, signs, strict=True):
        assert cmd[cmd.index("-extensions") + 1] == f"ext_{cert.name}"
        assert cmd[-1] == str(FILES.crt(cert.name))
    assert cmds[-1][-1] == str(FILES.sa_pub)


def test_every_kubeconfig_user_has_a_certificate() -> None:
    names = {c.name for c in CERTS}
    for user in KUBECONFIG_USERS:
        assert user in names
        doc = node_kubeconfig(FILES, user)
        assert doc["users"][0]["user"]["client-certificate"] == str(FILES.crt(user))
        assert doc["clusters"][0]["cluster"]["server"] == f"https://{NODE_IP}:6443"


def test_containerd_config_parses_and_uses_the_lane_paths() -> None:
    doc = tomllib.loads(containerd_config(FILES, "localhost/spidernet/pause:1"))
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "localhost/spidernet/pause:1"
    assert cri["cni"] == {"bin_dir": CNI_BIN_DIR, "conf_dir": CNI_CONF_DIR, "max_conf_num": 1}
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert doc["grpc"]["address"] == str(FILES.containerd_socket)
    # containerd's state and the CNI directories are on the lane's private mounts.
    assert any(doc["state"].startswith(p + "/") for p in PRIVATE_PATHS)
    assert CNI_BIN_DIR.startswith("/opt/")
    assert "/opt" in PRIVATE_PATHS
    assert "/run/netns" in SHARED_PATHS


def test_kubelet_config_never_writes_kernel_settings() -> None:
    conf = kubelet_config(FILES, "/spidernet-node-x")
    assert conf["protectKernelDefaults"] is True
    assert conf["cgroupDriver"] == "cgroupfs"
    assert conf["cgroupRoot"] == "/spidernet-node-x"
    assert conf["containerRuntimeEndpoint"] == f"unix://{FILES.containerd_socket}"
    assert conf["imageGCHighThresholdPercent"] == 100  # imported images are never pulled again


def test_multus_delegates_eth0_to_the_cluster_network() -> None:
    multus = multus_conf(FILES)
    (cluster,) = multus["delegates"]
    assert cluster == cluster_network()
    assert "plugins" not in cluster  # one plugin config, not a conflist (see cluster_network)
    assert multus["binDir"] == CNI_BIN_DIR
    assert cluster["ipam"]["ranges"] == [[{"subnet": POD_CIDR}]]
    assert cluster["ipMasq"] is False  # no iptables rules: nothing leaves the node's segment
