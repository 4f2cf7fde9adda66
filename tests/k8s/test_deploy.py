"""deploy/ on a real kube-apiserver: rendered by a real kustomize, linted by the API server,
and its RBAC exercised by real processes.

- `kustomize build deploy/` (kustomize built from the Go module proxy, testbed/gotools.py)
  gives exactly the objects the manifests declare, with the image set once.
- Every rendered object, and every example network, goes through a server-side apply with
  `dryRun=All` and `fieldValidation=Strict`: the API server's own schema validation of the
  DaemonSet, the Deployment, RBAC, the Service and the webhook configuration.
- The ServiceAccounts, roles and bindings are created for real; a `spidernet serve --kube`
  agent and a `spidernet controller` run with TokenRequest tokens of those ServiceAccounts
  and do their jobs; SubjectAccessReviews (and a real call answered 403) show what they may not.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from spidernet.cni.errors import Code
from spidernet.control.client import ServiceError
from spidernet.control.store.kube_names import INTERNAL
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.kubecluster import Cluster, free_port
from spidernet.testbed.kubedeploy import (
    LEASE,
    SYSTEM,
    WEBHOOK_SECRET,
    allocated_count,
    allowed,
    controller_argv,
    dry_apply,
    ident,
    kustomize_build,
    lease_holder,
    manifest_command,
    token_kubeconfig,
    webhook_healthz,
    without,
)
from spidernet.testbed.kubeobjects import claims, endpoint, ipam_call, make_pod
from spidernet.testbed.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
AGENT_SA, CONTROLLER_SA = "spidernet-agent", "spidernet-controller"
WAIT_S = 30.0
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize_build(ROOT / "deploy")


@pytest.fixture(scope="module")
def dyn(k8s_api: client.ApiClient) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(k8s_api)  # type: ignore[no-untyped-call]  # (no annotations)


def test_render_has_every_object_and_one_image(rendered: list[dict[str, Any]]) -> None:
    crds = {d["metadata"]["name"] for d in rendered if d["kind"] == "CustomResourceDefinition"}
    assert len(crds) == 8
    assert {(g, n) for g, n in (name.split(".", 1)[::-1] for name in crds)} >= {
        (GROUP, "spiderippools"),
        (INTERNAL.group, "spidernetobjects"),
        ("k8s.cni.cncf.io", "network-attachment-definitions"),
    }
    others = {ident(d) for d in rendered if d["kind"] != "CustomResourceDefinition"}
    assert others == {
        ("ServiceAccount", SYSTEM, AGENT_SA),
        ("ClusterRole", "", AGENT_SA),
        ("ClusterRoleBinding", "", AGENT_SA),
        ("DaemonSet", SYSTEM, "spidernet-agent"),
        ("ServiceAccount", SYSTEM, CONTROLLER_SA),
        ("ClusterRole", "", CONTROLLER_SA),
        ("ClusterRoleBinding", "", CONTROLLER_SA),
        ("Role", SYSTEM, CONTROLLER_SA),
        ("RoleBinding", SYSTEM, CONTROLLER_SA),
        ("Deployment", SYSTEM, "spidernet-controller"),
        ("Service", SYSTEM, "spidernet-controller"),
        ("Service", SYSTEM, "spidernet-controller-metrics"),
        ("PodDisruptionBudget", SYSTEM, "spidernet-controller"),
        ("ValidatingWebhookConfiguration", "", "spidernet-validate"),
    }
    images = {
        c["image"]
        for d in rendered
        if d["kind"] in ("DaemonSet", "Deployment")
        for c in [
            *d["spec"]["template"]["spec"].get("initContainers", []),
            *d["spec"]["template"]["spec"]["containers"],
        ]
    }
    assert images == {"ghcr.io/spidernet/spidernet:0.1.0"}
    for d in rendered:
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "spidernet", ident(d)


def test_every_rendered_object_passes_the_api_servers_validation(
    rendered: list[dict[str, Any]], dyn: dynamic.DynamicClient, store_crds: list[str]
) -> None:
    for doc in rendered:
        applied = dry_apply(dyn, doc)
        assert applied.kind == doc["kind"]
    webhook = next(d for d in rendered if d["kind"] == "ValidatingWebhookConfiguration")
    (hook,) = dry_apply(dyn, webhook).to_dict()["webhooks"]
    assert (hook["failurePolicy"], hook["sideEffects"]) == ("Fail", "None")
    assert hook["clientConfig"]["service"] == {
        "namespace": SYSTEM,
        "name": "spidernet-controller",
        "path": "/validate",
        "port": 443,
    }
    (rule,) = hook["rules"]
    assert rule["apiGroups"] == [GROUP]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}


def test_the_api_server_refuses_a_misspelt_or_invalid_manifest(
    rendered: list[dict[str, Any]], dyn: dynamic.DynamicClient
) -> None:
    """The lint above can fail: a field the schema does not know, or a value it does not
    allow, is an error naming the field."""
    ds = next(d for d in rendered if d["kind"] == "DaemonSet")
    misspelt = json.loads(json.dumps(ds))
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(ApiException) as caught:
        dry_apply(dyn, misspelt)
    # A server-side apply's typed patch cannot hold an undeclared field; the API server
    # answers 500 with the field's path.
    body = str(caught.value.body)
    assert "readinesProbe: field not declared in schema" in body, body
    invalid = json.loads(json.dumps(ds))
    invalid["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["type"] = "Folder"
    with pytest.raises(ApiException) as caught:
        dry_apply(dyn, invalid)
    assert caught.value.status == 422
    assert "spec.template.spec.volumes[0].hostPath.type" in str(caught.value.body)


def test_example_networks_are_accepted(
    dyn: dynamic.DynamicClient, namespace: str, store_crds: list[str]
) -> None:
    docs = kustomize_build(ROOT / "deploy" / "examples")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "NetworkAttachmentDefinition",
        "NetworkAttachmentDefinition",
        "NetworkAttachmentDefinition",
        "SpiderIPPool",
        "SpiderMultusConfig",
    ]
    for doc in docs:
        dry_apply(dyn, doc, namespace)


# -- RBAC, for real ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rbac(
    rendered: list[dict[str, Any]], dyn: dynamic.DynamicClient, store_crds: list[str]
) -> Iterator[None]:
    """The rendered ServiceAccounts, roles and bindings, created; deleted afterwards."""
    docs = [d for d in rendered if d["kind"] in RBAC_KINDS]
    made = []
    try:
        for doc in docs:
            res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            res.server_side_apply(
                body=doc,
                name=doc["metadata"]["name"],
                namespace=doc["metadata"].get("namespace"),
                field_manager="spidernet-test",
                force_conflicts=True,
            )
            made.append((res, doc))
        yield
    finally:
        for res, doc in reversed(made):
            res.delete(name=doc["metadata"]["name"], namespace=doc["metadata"].get("namespace"))


@pytest.fixture(scope="module")
def kubeconfigs(
    rbac: None,
    k8s_cluster: Cluster,
    k8s_api: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    core = client.CoreV1Api(k8s_api)
    directory = tmp_path_factory.mktemp("tokens")
    return {
        sa: token_kubeconfig(core, k8s_cluster, sa, directory) for sa in (AGENT_SA, CONTROLLER_SA)
    }


def test_what_the_service_accounts_may_not_do(
    rbac: None, k8s_api: client.ApiClient, namespace: str
) -> None:
    authz = client.AuthorizationV1Api(k8s_api)

    def agent(verb: str, resource: str, **kw: Any) -> bool:
        return allowed(authz, AGENT_SA, verb, resource, **kw)

    def ctl(verb: str, resource: str, **kw: Any) -> bool:
        return allowed(authz, CONTROLLER_SA, verb, resource, **kw)

    # The agent: reads pods, writes endpoints and claims; nothing else.
    assert agent("get", "pods", namespace=namespace)
    assert agent("create", "spiderendpoints", group=GROUP, namespace=namespace)
    assert agent("create", "spidernetobjects", group=INTERNAL.group)
    assert not agent("delete", "pods", namespace=namespace)
    assert not agent("update", "pods", namespace=namespace)
    assert not agent("create", "spiderippools", group=GROUP)
    assert not agent("update", "spiderippools", group=GROUP)
    assert not agent("update", "spiderippools", group=GROUP, subresource="status")
    assert not agent("delete", "spidersubnets", group=GROUP)
    assert not agent("get", "secrets", namespace=SYSTEM)
    assert not agent("update", "nodes")
    assert agent("get", "replicasets", group="apps", namespace=namespace)
    assert agent("create", "events", namespace=namespace)
    assert agent("patch", "events", namespace=namespace)
    assert not agent("delete", "events", namespace=namespace)
    assert not agent("list", "replicasets", group="apps", namespace=namespace)
    # The controller: its Lease and its Secret, deletes of leaked records; no pods, no other
    # Secret, no other webhook configuration.
    assert ctl("update", "leases", group="coordination.k8s.io", namespace=SYSTEM, name=LEASE)
    assert not ctl("update", "leases", group="coordination.k8s.io", namespace=SYSTEM, name="x")
    assert not ctl("update", "leases", group="coordination.k8s.io", namespace=namespace, name=LEASE)
    assert ctl("get", "secrets", namespace=SYSTEM, name="spidernet-webhook-tls")
    assert ctl("create", "secrets", namespace=SYSTEM)
    assert ctl("create", "events", namespace="default")
    assert not ctl("delete", "events", namespace="default")
    assert not ctl("get", "secrets", namespace=SYSTEM, name="other")
    assert not ctl("list", "secrets", namespace=SYSTEM)
    assert not ctl("get", "secrets", namespace=namespace, name="spidernet-webhook-tls")
    assert not ctl("create", "pods", namespace=namespace)
    assert not ctl("delete", "pods", namespace=namespace)
    assert ctl("update", "spiderippools", group=GROUP, subresource="status")
    assert not ctl("delete", "spidersubnets", group=GROUP)
    assert not ctl("update", "spiderreservedips", group=GROUP)
    assert not ctl("update", "deployments", group="apps", namespace=namespace)
    assert ctl("delete", "spidernetobjects", group=INTERNAL.group)
    assert not ctl("create", "spidernetobjects", group=INTERNAL.group)
    assert not ctl("create", "spiderendpoints", group=GROUP, namespace=namespace)
    vwc = "validatingwebhookconfigurations"
    adm = "admissionregistration.k8s.io"
    assert ctl("patch", vwc, group=adm, name="spidernet-validate")
    assert not ctl("patch", vwc, group=adm, name="other")
    assert not ctl("create", vwc, group=adm)


def make_pool(custom: client.CustomObjectsApi) -> str:
    name = f"pool-{uuid.uuid4().hex[:8]}"
    net = ipaddress.ip_network(f"10.{random.randrange(256)}.{random.randrange(256)}.0/24")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"ipVersion": 4, "subnet": str(net), "ips": [f"{net[10]}-{net[13]}"]},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", body)
    return name


def claimed(custom: client.CustomObjectsApi, pool: str) -> set[str]:
    """The addresses of `pool` that have an IPClaim."""
    return {c["spec"]["name"] for c in claims(custom, pool)}


@pytest.fixture
def pool(custom: client.CustomObjectsApi, store_crds: list[str]) -> Iterator[str]:
    name = make_pool(custom)
    yield name
    for claim in claims(custom, name):  # what a failed test left
        custom.delete_cluster_custom_object(
            INTERNAL.group, INTERNAL.version, INTERNAL.plural, claim["metadata"]["name"]
        )
    custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", name)


@pytest.fixture
def never_matching_webhook_configuration(
    rendered: list[dict[str, Any]], dyn: dynamic.DynamicClient
) -> Iterator[str]:
    """The rendered ValidatingWebhookConfiguration, created for real but with an objectSelector
    nothing matches (its Service does not exist here, and failurePolicy Fail would otherwise
    refuse every Spider* write of the session); deleted afterwards with its Secret."""
    (doc,) = [d for d in rendered if d["kind"] == "ValidatingWebhookConfiguration"]
    doc = json.loads(json.dumps(doc))
    for hook in doc["webhooks"]:
        hook["objectSelector"] = {"matchLabels": {"spidernet.test/never": "true"}}
    res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    res.create(body=doc)
    yield doc["metadata"]["name"]
    res.delete(name=doc["metadata"]["name"])
    secrets = dyn.resources.get(api_version="v1", kind="Secret")
    try:
        secrets.delete(name=WEBHOOK_SECRET, namespace=SYSTEM)
    except ApiException as e:
        if e.status != 404:
            raise


def test_agent_and_controller_work_with_their_service_accounts(
    rendered: list[dict[str, Any]],
    kubeconfigs: dict[str, Path],
    k8s_api: client.ApiClient,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pool: str,
    never_matching_webhook_configuration: str,
    dyn: dynamic.DynamicClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The DaemonSet's and the Deployment's own command lines, run with tokens of their
    ServiceAccounts (only host paths, loopback addresses and test timings differ)."""
    # The agent: in-cluster it finds the node in NODE_NAME (downward API) and the API server
    # through its ServiceAccount; here NODE_NAME and KUBECONFIG (a token kubeconfig) stand in.
    agent_argv = manifest_command(rendered, "DaemonSet", "agent")
    assert agent_argv[:2] == ["spidernet", "serve"]
    node = f"deploy-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("NODE_NAME", node)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfigs[AGENT_SA]))
    paths = ("--socket", "--state-dir", "--metrics-address")  # scratch_service sets its own
    with scratch_service(*without(agent_argv[2:], *paths)) as agent:
        leaked = agent_allocates_releases_and_reports(agent, core, custom, namespace, pool, node)
        check_agent_refused(kubeconfigs[AGENT_SA], namespace)
        agent_log = agent.log.read_text(errors="replace")
        assert "forbidden" not in agent_log.lower(), agent_log
    core.delete_namespaced_pod("leak", namespace, grace_period_seconds=0)
    assert claimed(custom, pool) == {leaked}

    # The controller, with its Lease, its webhook Secret and its webhook configuration.
    port, metrics_port = free_port(), free_port()
    identity = f"deploy-test-{uuid.uuid4().hex[:6]}"
    argv = controller_argv(rendered, kubeconfigs[CONTROLLER_SA], port, metrics_port, identity)
    log = tmp_path / "controller.log"
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NODE_NAME")}
    coord = client.CoordinationV1Api(k8s_api)
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    try:
        wait_for("the controller's Lease", lambda: lease_holder(coord) == identity)
        wait_for("the leaked address's reclaim", lambda: claimed(custom, pool) == set())
        assert endpoint(custom, namespace, "leak") is None
        wait_for("the pool's status", lambda: allocated_count(custom, pool) == 0)
        webhook_published_its_certificate(core, dyn, port, never_matching_webhook_configuration)
        text = log.read_text(errors="replace")
        reclaim_was_told(core, namespace, pool, leaked, text)
        metrics_say_it_leads_and_reclaimed(metrics_port)
        assert "forbidden" not in text.lower(), text
    finally:
        if proc.poll() is None:
            proc.terminate()
        assert proc.wait(timeout=20) == 0, log.read_text(errors="replace")
    # SIGTERM clears the holder, so a standby takes over at once.
    assert lease_holder(coord) in (None, "")
    coord.delete_namespaced_lease(LEASE, SYSTEM)


def agent_allocates_releases_and_reports(
    agent: ServiceProcess,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pool: str,
    node: str,
) -> str:
    """The agent, with its token only, allocates and releases for a pod, allocates for a pod
    whose address is never released (the address returned), and posts an Event on the pod of
    an ADD that fails."""
    uid = make_pod(core, namespace, "web", labels={"app": "web"})
    call = ipam_call(namespace, "web", uid, pool)
    answer = agent.client.request("POST", "/v1/ipam/allocate", call)
    (address,) = [ip["address"].split("/")[0] for ip in answer["ips"]]
    ep = endpoint(custom, namespace, "web")
    assert ep is not None
    assert ep["status"]["current"]["node"] == node
    assert claimed(custom, pool) == {address}
    agent.client.request("POST", "/v1/ipam/release", call)
    assert endpoint(custom, namespace, "web") is None
    assert claimed(custom, pool) == set()

    # A pod whose address is never released (deleted while nothing runs its CNI DEL).
    uid = make_pod(core, namespace, "leak", labels={"app": "leak"})
    answer = agent.client.request(
        "POST", "/v1/ipam/allocate", ipam_call(namespace, "leak", uid, pool)
    )
    (leaked,) = [str(ip["address"]).split("/")[0] for ip in answer["ips"]]
    # An ADD that fails is a Warning Event on its pod, posted with the agent's token;
    # the kubelet's retry raises its count instead of writing another.
    uid = make_pod(core, namespace, "nopool")
    bad = ipam_call(namespace, "nopool", uid, "no-such-pool")
    for _ in range(2):
        with pytest.raises(ServiceError) as refused:
            agent.client.request("POST", "/v1/ipam/allocate", bad)
    assert refused.value.code == Code.NO_POOL, refused.value.message

    def pod_events() -> list[client.CoreV1Event]:
        found = core.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}")
        return list(found.items)

    wait_for("the pod's Event, counted twice", lambda: [e.count for e in pod_events()] == [2])
    (event,) = pod_events()
    assert (event.type, event.reason) == ("Warning", "NoIPPool")
    assert event.message == refused.value.message
    assert event.source is not None
    assert (event.source.component, event.source.host) == ("spidernet-agent", node)
    return leaked


def webhook_published_its_certificate(
    core: client.CoreV1Api, dyn: dynamic.DynamicClient, port: int, configuration: str
) -> None:
    """The webhook made its Secret, published the CA, and serves with that certificate."""
    wait_for("the webhook's health", lambda: webhook_healthz(port, core) == 200)
    secret = core.read_namespaced_secret(WEBHOOK_SECRET, SYSTEM)
    assert secret.type == "kubernetes.io/tls"
    # Both base64 in the JSON: the caBundle is exactly the Secret's ca.crt.
    vwc = dyn.resources.get(
        api_version="admissionregistration.k8s.io/v1", kind="ValidatingWebhookConfiguration"
    ).get(name=configuration)
    bundles = [h["clientConfig"].get("caBundle") for h in vwc.to_dict()["webhooks"]]
    assert secret.data is not None
    assert bundles == [secret.data["ca.crt"]]


def reclaim_was_told(
    core: client.CoreV1Api, namespace: str, pool: str, leaked: str, text: str
) -> None:
    """The controller's log (`text`) says it reclaimed the leaked pod's endpoint, and an
    Event on the pool says so, posted with the controller's token."""
    assert f"reclaimed SpiderEndpoint '{namespace}/leak'" in text, text

    def on_pool() -> list[client.CoreV1Event]:
        selector = f"involvedObject.name={pool},reason=IPReclaimed"
        return list(core.list_namespaced_event("default", field_selector=selector).items)

    wait_for("the reclaim's Event on the pool", lambda: bool(on_pool()))
    assert [e.message for e in on_pool()] == [
        f"reclaimed {leaked} of pod {namespace}/leak: pod gone"
    ], text
    assert on_pool()[0].involved_object.kind == "SpiderIPPool"


def metrics_say_it_leads_and_reclaimed(metrics_port: int) -> None:
    """Its metrics: Prometheus text that says it leads and what it reclaimed, and why."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    (leader,) = families["spidernet_controller_leader"].samples
    assert leader.value == 1
    reclaims = {
        s.labels["reason"]: s.value
        for s in families["spidernet_controller_gc_reclaims"].samples
        if s.name.endswith("_total")
    }
    assert reclaims.get("pod gone", 0) >= 1, reclaims
    assert "process_resident_memory_bytes" in families
    assert "spidernet_controller_pass_seconds" in families


def check_agent_refused(kubeconfig: Path, namespace: str) -> None:
    """Real calls with the agent's token that RBAC answers 403: deleting a Pod, writing a
    SpiderIPPool's spec."""
    # kubernetes.config and ApiClient.close have no annotations.
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    try:
        with pytest.raises(ApiException) as caught:
            client.CoreV1Api(api).delete_namespaced_pod("leak", namespace)
        assert caught.value.status == 403
        with pytest.raises(ApiException) as caught:
            client.CustomObjectsApi(api).patch_cluster_custom_object(
                GROUP, VERSION, "spiderippools", "any", {"spec": {"vlan": 1}}
            )
        assert caught.value.status == 403
    finally:
        api.close()  # type: ignore[no-untyped-call]  # (as above)
