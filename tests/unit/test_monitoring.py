"""The chart's monitoring (deploy/monitoring/ as rendered from deploy/chart): the dashboard asks
only for series the agent and the controller export (their real metric classes, exposed as
Prometheus text), and the scrape objects select what deploy/ runs, on the port it names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from spidernet.control.controller.metrics import ControllerMetrics
from spidernet.node.agent.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = ROOT / "deploy" / "chart" / "files" / "spidernet-dashboard.json"
MANIFESTS = ROOT / "deploy" / "manifests"
# A PromQL series name of ours, or a process metric the controller's collector exports.
SERIES = re.compile(r"\b(spidernet_[a-z0-9_]+|process_[a-z0-9_]+)\b")


def exported() -> set[str]:
    """Every sample name the two processes' /metrics can carry, read back from their text."""
    agent = Metrics(pool_stats=lambda: [("pool-a", 10, 3)])
    agent.allocation_failures.labels("exhausted").inc()
    agent.detections.labels("conflict").inc()
    agent.ip_conflicts.labels("eth0").inc()
    agent.cni_seconds.labels("spidernet-ipam", "ADD", "ok").observe(0.01)
    controller = ControllerMetrics()
    controller.reclaims.labels("pod gone").inc()
    controller.pass_seconds.labels("gc").observe(0.1)
    controller.pass_failures.labels("gc").inc()
    controller.reviewed("SpiderIPPool", True)
    names: set[str] = set()
    for text in (agent.expose(), controller.expose()):
        for family in text_string_to_metric_families(text.decode()):
            names |= {s.name for s in family.samples}
    return names


def dashboard_series() -> set[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    return {m for e in exprs for m in SERIES.findall(e)}


def test_every_series_the_dashboard_asks_for_is_exported() -> None:
    asked = dashboard_series()
    assert {n for n in asked if n.startswith("spidernet_controller")}
    assert {n for n in asked if n.startswith("spidernet_ipam")}
    missing = asked - exported()
    assert not missing, f"the dashboard asks for series nobody exports: {sorted(missing)}"


def test_a_misspelt_series_would_be_caught() -> None:
    assert "spidernet_ipam_allocation_counts" not in exported()  # counters end in _total
    assert "spidernet_ipam_allocation_counts_total" in exported()


def load(directory: Path) -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def container(workload: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    template = workload["spec"]["template"]
    (first,) = template["spec"]["containers"]
    return template["metadata"]["labels"], first


def test_the_scrape_objects_select_the_workloads_and_their_metrics_port() -> None:
    mine, deployed = load(MONITORING), load(MANIFESTS)
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {p.name for p in MONITORING.glob("*.yaml")} - {
        "kustomization.yaml"
    }
    # Controller: ServiceMonitor -> Service (by labels, port name) -> pods (selector, port).
    service = deployed["Service/spidernet-controller-metrics"]
    monitor = mine["ServiceMonitor/spidernet-controller"]
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    pod_labels, ctl = container(deployed["Deployment/spidernet-controller"])
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p["containerPort"] for p in ctl["ports"]}
    assert ports[port["targetPort"]] == port["port"]
    assert ctl["command"][ctl["command"].index("--metrics-address") + 1].endswith(
        f":{port['port']}"
    )
    # Agent: PodMonitor -> pods (labels, port name) on the address the agent serves.
    podmon = mine["PodMonitor/spidernet-agent"]
    pod_labels, agent = container(deployed["DaemonSet/spidernet-agent"])
    assert podmon["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = podmon["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in agent["ports"]}
    address = agent["command"][agent["command"].index("--metrics-address") + 1]
    assert address == f"0.0.0.0:{ports[endpoint['port']]}"
    # The dashboard ConfigMap holds the chart's file as it is.
    configmap = mine["ConfigMap/spidernet-grafana-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["spidernet-dashboard.json"]) == json.loads(
        DASHBOARD.read_text()
    )
