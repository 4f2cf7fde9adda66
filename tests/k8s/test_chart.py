"""deploy/chart with a real helm (built from its Go module, testbed/gotools.py) on the lab's real
kube-apiserver: linted, its values checked, rendered into deploy/'s manifests, installed,
upgraded with changed values and uninstalled.

This lane's API server runs no kubelet, so the Deployment and DaemonSet get no pods here (the
node lane installs the same chart with `helm install` and runs them, and upgrades it there);
what this shows is what helm and the API server do with the release's objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from spidernet.testbed import chart
from spidernet.testbed.gotools import ensure_helm
from spidernet.testbed.kubecluster import Cluster

NAMESPACE = "spidernet-system"
RELEASE = "spidernet"
GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
MADE_BY = "spidernet.io/made-by-chart"
IMAGE = "registry.example/spidernet:9.9.9"
VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example/spidernet", "tag": "9.9.9"},
    "monitoring": {"dashboard": True},
    "subnets": [
        {
            "name": "chart-subnet-v4",
            "spec": {"subnet": "10.250.0.0/16", "ips": ["10.250.1.1-10.250.1.200"]},
        }
    ],
    "ippools": [
        {
            "name": "chart-pool-v4",
            "spec": {
                "subnet": "10.250.0.0/16",
                "ips": ["10.250.1.10-10.250.1.20"],
                "gateway": "10.250.0.1",
            },
        }
    ],
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_helm()


def run(helm: Path, cluster: Cluster, *args: str, values: dict[str, Any] | None = None) -> str:
    done = chart.helm(helm, args, values=values, kubeconfig=cluster.kubeconfig)
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_the_manifests_in_deploy_are_what_the_chart_renders(helm: Path) -> None:
    files = chart.kustomize_files(chart.render(helm, chart.kustomize_values()))
    assert {"manifests/agent-daemonset.yaml", "monitoring/monitoring.yaml"} <= set(files)
    assert chart.stale(files) == [], "run `make manifests`"
    # The check can fail: one changed value is a stale file.
    other = chart.kustomize_files(
        chart.render(helm, {**chart.kustomize_values(), "logFormat": "json"})
    )
    assert chart.stale(other) == [
        "manifests/agent-daemonset.yaml",
        "manifests/controller-deployment.yaml",
    ]


def test_helm_lints_the_chart_and_its_schema_refuses_bad_values(helm: Path) -> None:
    lint = chart.helm(helm, ["lint", "--strict", str(chart.CHART)], values=VALUES)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for bad, field in (
        ({"logFormat": "yaml"}, "/logFormat"),
        ({"controller": {"webhookFailurePolicy": "Maybe"}}, "/controller/webhookFailurePolicy"),
        ({"ippools": [{"name": "Bad_Name", "spec": {}}]}, "/ippools/0/name"),
        ({"agent": {"detection": {"profile": "slow"}}}, "/agent/detection/profile"),
    ):
        done = chart.helm(helm, ["template", RELEASE, str(chart.CHART)], values=bad)
        assert done.returncode != 0, bad
        assert field in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def read(
    dyn: dynamic.DynamicClient, api_version: str, kind: str, name: str, ns: str | None = None
) -> dict[str, Any] | None:
    """The object as the API server holds it (camelCase keys), or None when there is none."""
    res = dyn.resources.get(api_version=api_version, kind=kind)
    try:
        got = res.get(name=name, namespace=ns if res.namespaced else None)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    doc: dict[str, Any] = got.to_dict()
    return doc


def released(dyn: dynamic.DynamicClient, docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(kind, name) of each of `docs` that exists in the cluster."""
    return [
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if read(
            dyn, d["apiVersion"], d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")
        )
    ]


def must(doc: dict[str, Any] | None) -> dict[str, Any]:
    assert doc is not None
    return doc


def command_of(workload: dict[str, Any]) -> list[str]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    command: list[str] = container["command"]
    return command


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture
def release(
    helm: Path, k8s_cluster: Cluster, core: client.CoreV1Api, store_crds: list[str]
) -> Iterator[list[dict[str, Any]]]:
    """The rendered documents of the release; whatever is left of it is removed afterwards
    (its webhook would refuse every Spider* write of the session)."""
    args = ["template", RELEASE, str(chart.CHART), "-n", NAMESPACE]
    docs = [d for d in yaml.safe_load_all(run(helm, k8s_cluster, *args, values=VALUES)) if d]
    try:
        yield docs
    finally:
        chart.helm(helm, ["uninstall", RELEASE, "-n", NAMESPACE], kubeconfig=k8s_cluster.kubeconfig)
        try:
            core.delete_namespace(NAMESPACE)
        except ApiException as e:
            if e.status != 404:
                raise


def agent_ds(dyn: dynamic.DynamicClient) -> dict[str, Any]:
    """The agent's DaemonSet, as the API server holds it."""
    return must(read(dyn, "apps/v1", "DaemonSet", "spidernet-agent", NAMESPACE))


def spider(dyn: dynamic.DynamicClient, kind: str, name: str) -> dict[str, Any]:
    """The Spiderpool object `kind` `name`, as the API server holds it."""
    return must(read(dyn, f"{GROUP}/{VERSION}", kind, name))


def check_the_rendered_kinds(release: list[dict[str, Any]]) -> None:
    """The release renders objects of these kinds, and of no other."""
    kinds = sorted({d["kind"] for d in release})
    assert kinds == sorted(
        {
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "SpiderCoordinator",
            "SpiderIPPool",
            "SpiderSubnet",
            "ValidatingWebhookConfiguration",
        }
    )


def install(
    helm: Path, k8s_cluster: Cluster, dyn: dynamic.DynamicClient, release: list[dict[str, Any]]
) -> dict[str, Any]:
    """`helm install` with VALUES: every rendered object is made, the agent runs the image
    and flags of the values, the release's own Spiderpool objects pass the webhook, which
    sees no other object of the chart. The agent's DaemonSet as installed."""
    run(
        helm,
        k8s_cluster,
        "install",
        RELEASE,
        str(chart.CHART),
        "-n",
        NAMESPACE,
        "--create-namespace",
        values=VALUES,
    )
    assert sorted(released(dyn, release)) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in release
    )
    ds = agent_ds(dyn)
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert flag(command_of(ds), "--log-format") == "text"
    assert "--ip-conflict-detection" not in command_of(ds)
    # The release's own Spiderpool objects, made past the webhook (no controller runs here).
    coordinator = spider(dyn, "SpiderCoordinator", "default")
    assert coordinator["spec"]["podCIDRType"] == "auto"
    assert coordinator["metadata"]["labels"][MADE_BY] == RELEASE
    pool = spider(dyn, "SpiderIPPool", "chart-pool-v4")
    assert pool["spec"]["ips"] == ["10.250.1.10-10.250.1.20"]
    hook = read(
        dyn,
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "spidernet-validate",
    )
    (webhook,) = must(hook)["webhooks"]
    assert webhook["clientConfig"]["service"]["namespace"] == NAMESPACE
    assert webhook["objectSelector"]["matchExpressions"] == [
        {"key": MADE_BY, "operator": "DoesNotExist"}
    ]
    return ds


def check_the_webhook_refuses_the_rest(custom: client.CustomObjectsApi) -> None:
    """Anything else the webhook does see is refused while no controller answers (Fail)."""
    other = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderIPPool",
        "metadata": {"name": "not-the-charts"},
        "spec": {"subnet": "10.251.0.0/16", "ips": ["10.251.0.10"]},
    }
    with pytest.raises(ApiException) as refused:
        custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", other)
    # (the API server could not call it: no endpoints for its Service)
    assert refused.value.status == 500
    message = json.loads(str(refused.value.body))["message"]
    assert 'failed calling webhook "validate.spiderpool.spidernet.io"' in message, message


def upgrade(
    helm: Path, k8s_cluster: Cluster, dyn: dynamic.DynamicClient, ds: dict[str, Any]
) -> None:
    """`helm upgrade --reuse-values` with changed values: the pods' templates change (a
    kubelet would roll them), the pool too. `ds` is the agent's DaemonSet before."""
    changed = {
        "logFormat": "json",
        "controller": {"replicas": 3, "gc": {"interval": 10}},
        "agent": {"detection": {"ipConflict": True, "profile": "rfc"}},
        "ippools": [
            {
                **VALUES["ippools"][0],
                "spec": {**VALUES["ippools"][0]["spec"], "ips": ["10.250.1.10-10.250.1.30"]},
            }
        ],
    }
    generation = ds["metadata"]["generation"]
    run(
        helm,
        k8s_cluster,
        "upgrade",
        RELEASE,
        str(chart.CHART),
        "-n",
        NAMESPACE,
        "--reuse-values",
        values=changed,
    )
    ds = agent_ds(dyn)
    assert ds["metadata"]["generation"] == generation + 1
    assert flag(command_of(ds), "--log-format") == "json"
    assert flag(command_of(ds), "--detection-profile") == "rfc"
    assert "--ip-conflict-detection" in command_of(ds)
    # --reuse-values kept the image of the install.
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    dep = must(read(dyn, "apps/v1", "Deployment", "spidernet-controller", NAMESPACE))
    assert dep["spec"]["replicas"] == 3
    assert flag(command_of(dep), "--gc-interval") == "10"
    pool = spider(dyn, "SpiderIPPool", "chart-pool-v4")
    assert pool["spec"]["ips"] == ["10.250.1.10-10.250.1.30"]


def test_install_upgrade_and_uninstall_on_the_api_server(
    helm: Path,
    k8s_cluster: Cluster,
    k8s_api: client.ApiClient,
    release: list[dict[str, Any]],
) -> None:
    dyn = dynamic.DynamicClient(k8s_api)  # type: ignore[no-untyped-call]  # (no annotations)
    custom = client.CustomObjectsApi(k8s_api)
    check_the_rendered_kinds(release)
    ds = install(helm, k8s_cluster, dyn, release)
    check_the_webhook_refuses_the_rest(custom)
    upgrade(helm, k8s_cluster, dyn, ds)

    # Uninstall: nothing of the release is left; the CRDs stay (helm never deletes them).
    run(helm, k8s_cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait")
    assert released(dyn, release) == []
    for crd in (f"spiderippools.{GROUP}", f"spidercoordinators.{GROUP}"):
        assert read(dyn, "apiextensions.k8s.io/v1", "CustomResourceDefinition", crd), crd
