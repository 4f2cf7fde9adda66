"""Workloads on the real node through the API: a SpiderMultusConfig's network on net1.

A SpiderIPPool and a SpiderMultusConfig (macvlan on the node's uplink, spidernet-ipam,
spidernet-coordinator) from which the controller writes the NetworkAttachmentDefinition; a
Deployment, a StatefulSet and a bare Pod name it in `k8s.v1.cni.cncf.io/networks`; a second
Deployment draws from a SpiderSubnet's auto pool. The kubelet starts them through Multus:
eth0 from the cluster network, net1 from spidernet. The tests run in file order over one
module-scoped set of workloads; the last one deletes everything and checks what is left.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from spidernet.node.netlink.client import netlink
from spidernet.testbed import nodekube
from spidernet.testbed.leaks import Footprint, diff, footprint
from spidernet.testbed.node import RealNode
from spidernet.testbed.nodelane import Prepared
from spidernet.testbed.nodespec import CLUSTER_CIDR, GATEWAY4, NODE_IP, NODE_NAME
from spidernet.testbed.waiting import wait_for

NS = "workloads"
NETWORK = "underlay"
POOL = "node-v4"
POOL_RANGE = ("192.0.2.100", "192.0.2.149")
SUBNET = "node-subnet"
SUBNET_RANGE = ("192.0.2.100", "192.0.2.199")
GROUP = "spiderpool.spidernet.io/v2beta1"
WAIT_S = 180.0
NETWORKS = "k8s.v1.cni.cncf.io/networks"
AGENT = "app.kubernetes.io/name=spidernet-agent"


def _workload(
    kind: str, name: str, replicas: int, image: str, annotations: dict[str, str]
) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": name}, "annotations": {NETWORKS: NETWORK, **annotations}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": image, "command": ["sleep", "36000"]},
            ],
        },
    }
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": template,
    }
    if kind == "StatefulSet":
        spec |= {"serviceName": name, "podManagementPolicy": "Parallel"}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def network_docs() -> list[dict[str, Any]]:
    """The pool, the subnet and the SpiderMultusConfig of the workloads' network."""
    return [
        {
            "apiVersion": GROUP,
            "kind": "SpiderSubnet",
            "metadata": {"name": SUBNET},
            "spec": {
                "subnet": "192.0.2.0/24",
                "ips": ["-".join(SUBNET_RANGE)],
                "gateway": GATEWAY4,
            },
        },
        *nodekube.underlay_network(POOL, "-".join(POOL_RANGE), NETWORK, NS),
    ]


def node_footprint() -> Footprint:
    """The node's own network namespace (this process's), as the leak checker reads it."""
    with netlink(None) as nl:
        return footprint(nl.state())


@pytest.fixture(scope="module")
def baseline(spidernet: RealNode) -> Footprint:
    return node_footprint()


@pytest.fixture(scope="module")
def workloads(spidernet: RealNode, lane: Prepared, baseline: Footprint) -> Iterator[RealNode]:
    node = spidernet
    node.kubectl("create", "namespace", NS)
    nodekube.apply(node, network_docs())
    wait_for("the NAD of the SpiderMultusConfig", lambda: _nad(node) is not None, WAIT_S, 0.5)
    image = lane.workload_image
    auto = {
        "ipam.spidernet.io/subnet": json.dumps({"ipv4": [SUBNET]}),
        "ipam.spidernet.io/ippool-ip-number": "+1",
    }
    nodekube.apply(
        node,
        [
            _workload("Deployment", "web", 2, image, {}),
            _workload("StatefulSet", "db", 2, image, {}),
            _workload("Deployment", "auto", 2, image, auto),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "solo",
                    "namespace": NS,
                    "annotations": {NETWORKS: NETWORK},
                    "labels": {"app": "solo"},
                },
                "spec": _workload("Pod", "solo", 1, image, {})["spec"]["template"]["spec"],
            },
        ],
    )
    for app, count in (("web", 2), ("db", 2), ("auto", 2), ("solo", 1)):
        nodekube.wait_pods(node, NS, f"app={app}", count, WAIT_S)
    yield node
    node.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


def _nad(node: RealNode) -> dict[str, Any] | None:
    found = node.kubectl(
        "get", "network-attachment-definitions", "-n", NS, NETWORK, "-o", "json", check=False
    )
    return json.loads(found.stdout) if found.returncode == 0 else None


def _net1(node: RealNode, pod: str) -> ipaddress.IPv4Interface:
    out = nodekube.exec_in(node, NS, pod, "ip", "-o", "-4", "addr", "show", "dev", "net1")
    return ipaddress.IPv4Interface(out.split()[3])


def _in_range(ip: ipaddress.IPv4Address, first: str, last: str) -> bool:
    return ipaddress.IPv4Address(first) <= ip <= ipaddress.IPv4Address(last)


def _endpoint(node: RealNode, pod: str) -> dict[str, Any]:
    return nodekube.get(node, "spiderendpoints", "-n", NS, pod)


def test_the_controller_wrote_the_nad_of_the_spidermultusconfig(workloads: RealNode) -> None:
    nad = _nad(workloads)
    assert nad is not None
    plugins = [p["type"] for p in json.loads(nad["spec"]["config"])["plugins"]]
    assert plugins == ["macvlan", "spidernet-coordinator"] or plugins[:1] == ["macvlan"], plugins
    assert "spidernet-coordinator" in plugins


def test_every_pod_has_eth0_from_the_cluster_and_net1_from_its_pool(workloads: RealNode) -> None:
    for pod in nodekube.pods(workloads, NS):
        name = pod["metadata"]["name"]
        status = {n["interface"]: n for n in nodekube.network_status(pod) if "interface" in n}
        assert set(status) >= {"eth0", "net1"}, (name, status)
        eth0 = ipaddress.ip_address(status["eth0"]["ips"][0])
        assert eth0 in ipaddress.ip_network(CLUSTER_CIDR), (name, eth0)
        net1 = _net1(workloads, name)
        assert [str(net1.ip)] == status["net1"]["ips"], (name, status["net1"])
        assert net1.network == ipaddress.ip_network("192.0.2.0/24")
        if pod["metadata"]["labels"]["app"] == "auto":
            assert _in_range(net1.ip, POOL_RANGE[1], SUBNET_RANGE[1]), (name, net1)
        else:
            assert _in_range(net1.ip, *POOL_RANGE), (name, net1)


def test_net1_reaches_the_gateway_and_the_pod_reaches_its_node(workloads: RealNode) -> None:
    for pod in nodekube.pods(workloads, NS):
        name = pod["metadata"]["name"]
        nodekube.exec_in(workloads, NS, name, "ping", "-c", "1", "-W", "3", "-I", "net1", GATEWAY4)
        nodekube.exec_in(workloads, NS, name, "ping", "-c", "1", "-W", "3", NODE_IP)


def test_spiderendpoints_match_the_pods(workloads: RealNode) -> None:
    for pod in nodekube.pods(workloads, NS):
        name = pod["metadata"]["name"]
        ep = _endpoint(workloads, name)
        current = ep["status"]["current"]
        assert current["uid"] == pod["metadata"]["uid"]
        assert current["node"] == NODE_NAME
        (nic,) = [n for n in current["ips"] if n["interface"] == "net1"]
        assert nic["ipv4"].split("/")[0] == str(_net1(workloads, name).ip)


def test_a_statefulset_pod_comes_back_with_its_address(workloads: RealNode) -> None:
    before = _net1(workloads, "db-0")
    uid = nodekube.get(workloads, "pod", "-n", NS, "db-0")["metadata"]["uid"]
    workloads.kubectl("delete", "pod", "-n", NS, "db-0", "--wait=true")

    def recreated() -> bool:
        found = [
            p for p in nodekube.pods(workloads, NS, "app=db") if p["metadata"]["name"] == "db-0"
        ]
        return bool(found) and found[0]["metadata"]["uid"] != uid and nodekube.running(found[0])

    wait_for("db-0 recreated", recreated, WAIT_S, 1.0)
    assert _net1(workloads, "db-0") == before


def test_the_auto_pool_follows_the_deployment_scale(workloads: RealNode) -> None:
    def pool_size() -> int:
        pools = nodekube.items(
            workloads, "spiderippools", "-l", f"ipam.spidernet.io/owner-spider-subnet={SUBNET}"
        )
        return sum(_count(p["spec"]["ips"]) for p in pools) if len(pools) == 1 else -1

    wait_for("the auto pool sized for 2 replicas (+1)", lambda: pool_size() == 3, WAIT_S, 0.5)
    workloads.kubectl("scale", "deployment", "-n", NS, "auto", "--replicas=4")
    nodekube.wait_pods(workloads, NS, "app=auto", 4, WAIT_S)
    wait_for("the auto pool sized for 4 replicas (+1)", lambda: pool_size() == 5, WAIT_S, 0.5)
    workloads.kubectl("scale", "deployment", "-n", NS, "auto", "--replicas=1")
    nodekube.wait_pods(workloads, NS, "app=auto", 1, WAIT_S)
    wait_for("the auto pool shrunk to 1 replica (+1)", lambda: pool_size() == 2, WAIT_S, 0.5)


def _count(ranges: list[str]) -> int:
    total = 0
    for r in ranges:
        first, _, last = r.partition("-")
        total += int(ipaddress.ip_address(last or first)) - int(ipaddress.ip_address(first)) + 1
    return total


def test_diag_in_the_agent_pod_calls_a_running_pod_healthy(workloads: RealNode) -> None:
    (agent,) = nodekube.pods(workloads, "kube-system", AGENT)
    done = workloads.kubectl(
        "exec",
        "-n",
        "kube-system",
        agent["metadata"]["name"],
        "--",
        "spidernet",
        "diag",
        f"{NS}/solo",
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_deleted_agent_comes_back_running_pods_keep_their_addresses_new_pods_start(
    workloads: RealNode, lane: Prepared
) -> None:
    node = workloads
    before = {
        p["metadata"]["name"]: _net1(node, p["metadata"]["name"]) for p in nodekube.pods(node, NS)
    }
    (agent,) = nodekube.pods(node, "kube-system", AGENT)
    node.kubectl("delete", "pod", "-n", "kube-system", agent["metadata"]["name"], "--wait=true")
    (back,) = nodekube.wait_pods(node, "kube-system", AGENT, 1, WAIT_S)
    assert back["metadata"]["uid"] != agent["metadata"]["uid"]
    assert {name: _net1(node, name) for name in before} == before
    late = _workload("Pod", "late", 1, lane.workload_image, {})["spec"]["template"]
    late["metadata"] |= {"name": "late", "namespace": NS}
    nodekube.apply(node, [{"apiVersion": "v1", "kind": "Pod", **late}])
    nodekube.wait_pods(node, NS, "app=late", 1, WAIT_S)
    assert _in_range(_net1(node, "late").ip, *POOL_RANGE)
    assert _net1(node, "late").ip not in {i.ip for i in before.values()}


def test_deleting_everything_frees_every_address_and_leaves_the_node_as_it_was(
    workloads: RealNode, baseline: Footprint
) -> None:
    node = workloads
    for kind in ("deployment", "statefulset", "pod"):
        node.kubectl("delete", kind, "-n", NS, "--all", "--wait=true", timeout=300)
    wait_for("no pod left", lambda: not nodekube.pods(node, NS), WAIT_S, 1.0)
    wait_for(
        "no SpiderEndpoint left",
        lambda: not nodekube.items(node, "spiderendpoints", "-n", NS),
        WAIT_S,
        1.0,
    )
    wait_for(
        "the pool counting no allocation",
        lambda: (
            nodekube.get(node, "spiderippool", POOL).get("status", {}).get("allocatedIPCount", 0)
            == 0
        ),
        WAIT_S,
        1.0,
    )
    claims = nodekube.items(node, "spidernetobjects.internal.spidernet.io")
    held = [
        c
        for c in claims
        if c["metadata"].get("labels", {}).get("internal.spidernet.io/kind") == "IPClaim"
    ]
    assert held == []
    assert diff(baseline, node_footprint()) == []
