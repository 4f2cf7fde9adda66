"""spidernet installed on a real node as a user installs it: the chart with the image built here.

`helm install` of deploy/chart naming the local image (the conftest's `spidernet` fixture); the
kubelet runs the agent DaemonSet and the controller Deployment from it, the agent's
initContainer writes the CNI executables into the node's CNI bin dir, and the agent serves the
plugins' socket on the node. A `helm upgrade` with changed values rolls both.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from spidernet.control.client import Client
from spidernet.testbed import chart, nodekube
from spidernet.testbed.node import NodeCommandFailed, RealNode
from spidernet.testbed.nodelane import Prepared
from spidernet.testbed.nodespec import CNI_BIN_DIR, NODE_NAME

AGENT_SELECTOR = "app.kubernetes.io/name=spidernet-agent"
CONTROLLER_SELECTOR = "app.kubernetes.io/name=spidernet-controller"
PLUGINS = ("spidernet-ipam", "spidernet-coordinator", "spidernet-ifacer")


def test_agent_and_controller_run_from_the_image_built_here(
    spidernet: RealNode, lane: Prepared
) -> None:
    agents = nodekube.pods(spidernet, "kube-system", AGENT_SELECTOR)
    controllers = nodekube.pods(spidernet, "kube-system", CONTROLLER_SELECTOR)
    assert [p["spec"]["nodeName"] for p in agents] == [NODE_NAME]
    assert len(controllers) == 2
    for pod in agents + controllers:
        assert nodekube.running(pod), pod["status"]
        for status in pod["status"]["containerStatuses"]:
            assert status["image"] == lane.spidernet_image
            assert status["imageID"], status  # the image containerd holds, imported here
    # The agent's init container ran to completion before the agent started.
    (init,) = agents[0]["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0


def test_the_init_container_installed_the_cni_executables(spidernet: RealNode) -> None:
    for name in PLUGINS:
        path = Path(CNI_BIN_DIR) / name
        assert path.is_file(), path
        assert os.access(path, os.X_OK)
        assert path.read_bytes()[:4] == b"\x7fELF"  # the compiled forwarders of the image
        version = subprocess.run(
            [str(path)], env={"CNI_COMMAND": "VERSION"}, capture_output=True, text=True, check=False
        )
        assert version.returncode == 0, version.stderr
        assert "1.1.0" in json.loads(version.stdout)["supportedVersions"]


def test_the_agent_serves_the_plugins_socket_on_the_node(spidernet: RealNode) -> None:
    answer = Client("/run/spidernet/spidernet.sock").request("GET", "/v1/healthz")
    # The state directory is the DaemonSet's (diag finds the coordinator's plans there).
    assert answer == {"ok": True, "node": NODE_NAME, "stateDir": "/var/lib/spidernet"}
    # What the kubelet's probes ask: the metrics port's /healthz, which asks the socket.
    with urllib.request.urlopen("http://127.0.0.1:5711/healthz", timeout=10) as r:
        assert (r.status, r.read()) == (200, b"ok\n")
    # The agent's conflict watcher loads Debian's bcc (python3-bpfcc, not PyPI's "bcc").
    (agent,) = nodekube.pods(spidernet, "kube-system", AGENT_SELECTOR)
    where = nodekube.exec_in(
        spidernet,
        "kube-system",
        agent["metadata"]["name"],
        "python3",
        "-c",
        "import bcc; print(bcc.__file__)",
        container="agent",
    )
    assert where.startswith("/usr/lib/python3/dist-packages/bcc/"), where


def test_the_controller_leads_and_its_webhook_refuses_a_bad_pool(spidernet: RealNode) -> None:
    lease = nodekube.get(spidernet, "lease", "-n", "kube-system", "spidernet-controller")
    holder = lease["spec"].get("holderIdentity", "")
    names = {
        p["metadata"]["name"] for p in nodekube.pods(spidernet, "kube-system", CONTROLLER_SELECTOR)
    }
    assert any(holder.startswith(name) for name in names), (holder, names)
    bad = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": "outside-its-subnet"},
        "spec": {"subnet": "198.51.100.0/24", "ips": ["198.51.101.10"]},
    }
    with pytest.raises(NodeCommandFailed, match=r"(?s)denied the request.*198\.51\.101\.10"):
        nodekube.apply(spidernet, [bad])


def test_a_helm_upgrade_with_changed_values_rolls_agent_and_controller(
    spidernet: RealNode, lane: Prepared
) -> None:
    selectors = (AGENT_SELECTOR, CONTROLLER_SELECTOR)
    before = {
        p["metadata"]["uid"] for s in selectors for p in nodekube.pods(spidernet, "kube-system", s)
    }
    nodekube.helm(
        spidernet,
        lane.helm,
        "upgrade",
        chart.RELEASE,
        str(chart.CHART),
        "-n",
        "kube-system",
        "--reuse-values",
        values={"logFormat": "json"},
    )
    (agent,) = nodekube.wait_pods(spidernet, "kube-system", AGENT_SELECTOR, 1, 240)
    controllers = nodekube.wait_pods(spidernet, "kube-system", CONTROLLER_SELECTOR, 2, 240)
    for pod in (agent, *controllers):
        assert pod["metadata"]["uid"] not in before, pod["metadata"]["name"]
        command = pod["spec"]["containers"][0]["command"]
        assert command[command.index("--log-format") + 1] == "json", command
    (release,) = json.loads(
        nodekube.helm(spidernet, lane.helm, "list", "-n", "kube-system", "-o", "json")
    )
    assert (release["name"], release["revision"], release["status"]) == (
        chart.RELEASE,
        "2",
        "deployed",
    )

    # The controllers now log JSON lines (each says whether it leads, at start).
    def logged_json() -> bool:
        for pod in controllers:
            name = pod["metadata"]["name"]
            text = spidernet.kubectl("logs", "-n", "kube-system", name, check=False).stdout
            lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
            if not any(line["msg"].startswith(("leading", "standing by")) for line in lines):
                return False
        return True

    nodekube.waited(spidernet, "controllers logging JSON", logged_json, 60)


def test_helm_uninstall_leaves_only_the_crds_and_a_new_install_runs_again(
    spidernet: RealNode, lane: Prepared
) -> None:
    """Everything of the release goes, and so do the Lease and the webhook Secret that the
    controller made (owned by its Deployment, so the garbage collector takes them); the
    CRDs stay. Then the chart is installed again for the rest of the lane."""
    manifest = nodekube.helm(
        spidernet, lane.helm, "get", "manifest", chart.RELEASE, "-n", "kube-system"
    )
    objects = [
        (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", ""))
        for d in yaml.safe_load_all(manifest)
        if d
    ]
    assert len(objects) >= 15
    for kind, name in (("lease", "spidernet-controller"), ("secret", "spidernet-webhook-tls")):
        owners = nodekube.get(spidernet, kind, "-n", "kube-system", name)["metadata"][
            "ownerReferences"
        ]
        assert [(o["kind"], o["name"]) for o in owners] == [("Deployment", "spidernet-controller")]
    nodekube.helm(spidernet, lane.helm, "uninstall", chart.RELEASE, "-n", "kube-system", "--wait")

    def left() -> list[str]:
        found = []
        for kind, name, ns in [
            *objects,
            ("Lease", "spidernet-controller", "kube-system"),
            ("Secret", "spidernet-webhook-tls", "kube-system"),
        ]:
            args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
            out = spidernet.kubectl(*args, *(["-n", ns] if ns else [])).stdout.strip()
            if out:
                found.append(out)
        return found

    def gone() -> bool:
        return not left() and not nodekube.pods(spidernet, "kube-system", AGENT_SELECTOR)

    nodekube.waited(spidernet, "nothing of the release left", gone, 120)
    crds = spidernet.kubectl("get", "crd", "-o", "name").stdout.split()
    assert (
        "customresourcedefinition.apiextensions.k8s.io/spiderippools.spiderpool.spidernet.io"
        in crds
    )
    nodekube.install_spidernet(spidernet, lane.spidernet_image, lane.helm)
