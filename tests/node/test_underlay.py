"""A pod whose only network is the underlay reaches the cluster's services through CIDRs that
no NAD names: the controller found them (SpiderCoordinator `default`'s status, CIDR
discovery) and the agent gave them to the coordinator.

The pod's default network is a SpiderMultusConfig's macvlan (Multus's
`v1.multus-cni.io/default-network`), so eth0 is the macvlan and the coordinator runs in
underlay mode: a veth to the host for the node, the service CIDR and the pod CIDR. Neither
the SpiderMultusConfig nor its NAD names a CIDR. The pod then talks to the `kubernetes`
Service's ClusterIP, which only the node's kube-proxy (nftables) turns into the API server's
address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from spidernet.testbed import nodekube
from spidernet.testbed.node import RealNode
from spidernet.testbed.nodelane import Prepared
from spidernet.testbed.nodespec import KUBERNETES_SERVICE_IP, SERVICE_CIDR
from spidernet.testbed.waiting import wait_for

NS = "underlay-only"
NETWORK = "plain-underlay"
POOL = "underlay-v4"
POOL_RANGE = "192.0.2.160-192.0.2.169"
WAIT_S = 180.0


@pytest.fixture(scope="module")
def lone(spidernet: RealNode, lane: Prepared) -> Iterator[RealNode]:
    node = spidernet
    node.kubectl("create", "namespace", NS)
    nodekube.apply(node, nodekube.underlay_network(POOL, POOL_RANGE, NETWORK, NS))

    def nad() -> bool:
        args = ("get", "network-attachment-definitions", "-n", NS, NETWORK, "-o", "name")
        return node.kubectl(*args, check=False).returncode == 0

    wait_for("the NAD of the SpiderMultusConfig", nad, WAIT_S, 0.5)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "lone",
            "namespace": NS,
            "labels": {"app": "lone"},
            "annotations": {"v1.multus-cni.io/default-network": f"{NS}/{NETWORK}"},
        },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": lane.workload_image, "command": ["sleep", "36000"]}
            ],
        },
    }
    nodekube.apply(node, [pod])
    nodekube.wait_pods(node, NS, "app=lone", 1, WAIT_S)
    yield node
    node.kubectl("delete", "pod", "-n", NS, "lone", "--wait=true", timeout=300)
    wait_for(
        "the pod's SpiderEndpoint gone",
        lambda: not nodekube.items(node, "spiderendpoints", "-n", NS),
        WAIT_S,
        1.0,
    )
    node.kubectl("delete", "namespace", NS, "--wait=true", timeout=300)
    node.kubectl("delete", "spiderippool", POOL, "--wait=true")


def test_the_controller_found_the_service_cidr_and_no_nad_names_it(lone: RealNode) -> None:
    def status() -> dict[str, object]:
        found: dict[str, object] = nodekube.get(lone, "spidercoordinator", "default").get(
            "status", {}
        )
        return found

    wait_for(
        "the coordinator's serviceCIDR", lambda: bool(status().get("serviceCIDR")), WAIT_S, 0.5
    )
    assert status()["serviceCIDR"] == [SERVICE_CIDR]
    nad = nodekube.get(lone, "network-attachment-definitions", "-n", NS, NETWORK)
    text = nad["spec"]["config"]
    assert "serviceCIDR" not in text, text
    assert SERVICE_CIDR not in text, text


def test_an_underlay_only_pod_reaches_a_service_through_the_discovered_cidr(
    lone: RealNode,
) -> None:
    routes = nodekube.exec_in(lone, NS, "lone", "ip", "-4", "route", "show", "table", "all")
    service_routes = [line for line in routes.splitlines() if line.startswith(SERVICE_CIDR)]
    assert service_routes, routes
    assert all("dev veth0" in line for line in service_routes), service_routes
    # HTTP to the API server's TLS port through the ClusterIP: any HTTP answer (400) is
    # proof the connection got there and back; a missing route would time out. (busybox's
    # nc: its static wget crashes on Debian 12.)
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {KUBERNETES_SERVICE_IP} 443"
    done = lone.kubectl(
        "exec", "-n", NS, "lone", "--", "sh", "-c", request, check=False, timeout=60
    )
    said = done.stdout + done.stderr
    assert "400" in said, said
    status = json.loads(lone.kubectl("get", "pod", "-n", NS, "lone", "-o", "json").stdout)[
        "metadata"
    ]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
    (eth0,) = [n for n in json.loads(status) if n.get("interface") == "eth0"]
    assert eth0["ips"][0].startswith("192.0.2.16"), eth0
