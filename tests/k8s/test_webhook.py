"""`spidernet controller`'s validating admission webhook behind a real kube-apiserver.

Two real controller processes start at the same time with the same (missing) TLS Secret, each
with the webhook on a loopback port; a ValidatingWebhookConfiguration made here (no caBundle:
the controllers fill it) sends the API server's reviews to the first one. Everything is then
checked through the API server: what it refuses (with the model's message naming the field)
and what it accepts, a pool whose address a real agent allocated, both certificates, SIGTERM.
The configuration is deleted at the end, on failure too: it would refuse every other test's
pools while no controller answers.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.store.kube_names import INTERNAL
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.kubecluster import Cluster, free_port
from spidernet.testbed.kubeobjects import claims, ipam_call, make_pod
from spidernet.testbed.waiting import wait_for

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
WAIT_S = 30.0
SECRET = "spidernet-webhook-tls"
RESOURCES = [
    "spiderippools",
    "spidersubnets",
    "spiderreservedips",
    "spidercoordinators",
    "spidermultusconfigs",
]
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Controller:
    """A `spidernet controller` child process with the webhook on `port`."""

    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def serving(self) -> bool:
        assert self.proc.poll() is None, self.text()
        return "webhook: serving https" in self.text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
            raise


def start_controller(
    cluster: Cluster, namespace: str, config: str, log: Path, port: int
) -> Controller:
    argv = [
        *(sys.executable, "-m", "spidernet", "controller"),
        *("--kubeconfig", str(cluster.kubeconfig)),
        *("--gc-interval", "1", "--lease-namespace", namespace, "--lease-name", "wh"),
        *("--webhook-address", f"127.0.0.1:{port}", "--webhook-ip", "127.0.0.1"),
        *("--webhook-dns", "spidernet-controller.kube-system.svc"),
        *("--webhook-secret", f"{namespace}/{SECRET}", "--webhook-configuration", config),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return Controller(proc, log, port)


def serving_certificate(port: int, ca_pem: bytes) -> bytes:
    """The DER certificate served on 127.0.0.1:`port`, verified against `ca_pem`."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def pool_body(name: str, subnet: str, ips: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"ipVersion": 4, "subnet": subnet, "ips": ips},
    }


def refusal(call: Callable[[], object]) -> ApiException:
    with pytest.raises(ApiException) as info:
        call()
    return info.value


@pytest.fixture
def agent(k8s_cluster: Cluster, store_crds: list[str]) -> Iterator[ServiceProcess]:
    args = ("--kube", "--kubeconfig", str(k8s_cluster.kubeconfig), "--node", "wh-node")
    with scratch_service(*args) as proc:
        yield proc


@pytest.fixture
def pools(custom: client.CustomObjectsApi) -> Iterator[list[str]]:
    """Names of pools to remove afterwards (their claims first), webhook or not."""
    names: list[str] = []
    yield names
    for name in names:
        for claim in claims(custom, name):
            custom.delete_cluster_custom_object(
                INTERNAL.group, INTERNAL.version, INTERNAL.plural, claim["metadata"]["name"]
            )
        try:
            custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", name)
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture
def webhook_configuration(k8s_api: client.ApiClient) -> Iterator[Callable[[int], str]]:
    """Make the ValidatingWebhookConfiguration sending reviews to 127.0.0.1:`port`; it is
    deleted afterwards, whatever happened."""
    adm = client.AdmissionregistrationV1Api(k8s_api)
    name = f"spidernet-validate-{uuid.uuid4().hex[:8]}"
    made: list[str] = []

    def make(port: int) -> str:
        rule = client.V1RuleWithOperations(
            api_groups=[GROUP],
            api_versions=[VERSION],
            operations=["CREATE", "UPDATE", "DELETE"],
            resources=RESOURCES,
            scope="*",
        )
        hook = client.V1ValidatingWebhook(
            name="validate.spidernet.io",
            client_config=client.AdmissionregistrationV1WebhookClientConfig(
                url=f"https://127.0.0.1:{port}/validate"
            ),
            rules=[rule],
            failure_policy="Fail",
            side_effects="None",
            admission_review_versions=["v1"],
            timeout_seconds=10,
        )
        body = client.V1ValidatingWebhookConfiguration(
            metadata=client.V1ObjectMeta(name=name), webhooks=[hook]
        )
        adm.create_validating_webhook_configuration(body)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for made_name in made:
            adm.delete_validating_webhook_configuration(made_name)


def check_one_secret_serves_both(
    a: Controller,
    b: Controller,
    core: client.CoreV1Api,
    adm: client.AdmissionregistrationV1Api,
    namespace: str,
    config: str,
) -> None:
    """Both controllers serve the webhook; one of them created the Secret, both serve its
    certificate, and its CA is the configuration's caBundle."""
    for ctl in (a, b):
        wait_for(f"the webhook on :{ctl.port}", ctl.serving)
    created = [c for c in (a, b) if "created Secret" in c.text()]
    assert len(created) == 1, (a.text(), b.text())

    secret = core.read_namespaced_secret(SECRET, namespace)
    assert secret.type == "kubernetes.io/tls"
    assert secret.data is not None
    ca = base64.b64decode(secret.data["ca.crt"])
    assert serving_certificate(a.port, ca) == serving_certificate(b.port, ca)
    raw: Any = adm.read_validating_webhook_configuration(config, _preload_content=False)
    conf = json.loads(raw.data)  # the raw JSON: caBundle as the API server stores it
    assert base64.b64decode(conf["webhooks"][0]["clientConfig"]["caBundle"]) == ca


def check_pools_refused_and_accepted(
    custom: client.CustomObjectsApi, pools: list[str]
) -> tuple[Net, str]:
    """Once the API server calls the webhook: a pool whose IPs lie outside its subnet is
    refused, a valid one accepted, one overlapping it refused. The valid pool's subnet and
    name."""
    # From 198.18.0.0/15 (RFC 2544's benchmarking block), which no other test of this lane
    # uses: the API server is shared, and a pool another test left in 172.16.0.0/12 would
    # overlap this one's /16 supernet and turn the expected acceptance into a refusal.
    net = ipaddress.ip_network(f"198.{random.randrange(18, 20)}.{random.randrange(256)}.0/24")
    good, wide, outside = (f"wh-{uuid.uuid4().hex[:8]}" for _ in range(3))
    pools.extend([good, wide, outside])
    create = custom.create_cluster_custom_object

    def refused_by_webhook() -> bool:
        try:
            create(GROUP, VERSION, "spiderippools", pool_body(outside, str(net), ["10.0.0.1"]))
        except ApiException as e:
            return "admission webhook" in (e.body or "")
        custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", outside)
        return False

    wait_for("the API server to call the webhook", refused_by_webhook)

    # A pool whose IPs lie outside its subnet (the CRD schema does not see it).
    e = refusal(
        lambda: create(GROUP, VERSION, "spiderippools", pool_body(outside, str(net), ["10.0.0.1"]))
    )
    assert e.status == 422
    assert f"SpiderIPPool '{outside}': spec.ips: 10.0.0.1 lies outside spec.subnet {net}" in (
        e.body or ""
    )

    # A valid pool is accepted.
    create(GROUP, VERSION, "spiderippools", pool_body(good, str(net), [f"{net[10]}-{net[20]}"]))

    # An overlapping one is refused, the message naming the field and the other pool.
    supernet = net.supernet(new_prefix=16)
    e = refusal(
        lambda: create(
            GROUP, VERSION, "spiderippools", pool_body(wide, str(supernet), [str(supernet[5])])
        )
    )
    assert e.status == 422
    assert f"SpiderIPPool '{wide}': spec.subnet: {supernet} overlaps SpiderIPPool '{good}'" in (
        e.body or ""
    )
    return net, good


def check_an_allocated_address_keeps_its_pool(
    agent: ServiceProcess,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    net: Net,
    good: str,
) -> None:
    """An address a real agent allocates keeps the pool `good` (of `net`) from being deleted,
    or shrunk away; the controller's status writes pass; released, the pool goes."""
    pod = core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="web-0"),
            spec=client.V1PodSpec(
                containers=[client.V1Container(name="app", image="registry.k8s.io/pause:3.10")],
                automount_service_account_token=False,
            ),
        ),
    )
    assert pod.metadata is not None
    call = {
        "containerID": "ctr-web-0",
        "ifName": "eth0",
        "netNamespace": "/var/run/netns/web-0",
        "network": "macvlan-underlay",
        "podNamespace": namespace,
        "podName": "web-0",
        "podUID": pod.metadata.uid,
        "defaultIPv4IPPool": [good],
    }
    answer = agent.client.request("POST", "/v1/ipam/allocate", call)
    address = str(answer["ips"][0]["address"]).split("/", maxsplit=1)[0]
    assert [c["spec"]["name"] for c in claims(custom, good)] == [address]

    e = refusal(lambda: custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", good))
    assert e.status == 409
    assert f"cannot delete SpiderIPPool '{good}' with 1 allocated IPs" in (e.body or "")
    assert custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", good)

    spare = str(net[30]) if address != str(net[30]) else str(net[31])
    e = refusal(
        lambda: custom.patch_cluster_custom_object(
            GROUP, VERSION, "spiderippools", good, {"spec": {"ips": [spare]}}
        )
    )
    assert e.status == 409
    assert f"SpiderIPPool '{good}': spec.ips: cannot remove {address}" in (e.body or "")

    # The controller's own status writes pass (a no-op main-resource PUT, then /status).
    def counted() -> bool:
        doc = custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", good)
        return isinstance(doc, dict) and doc.get("status", {}).get("allocatedIPCount") == 1

    wait_for("allocatedIPCount 1 written by the controller", counted)

    agent.client.request("POST", "/v1/ipam/release", call)
    assert claims(custom, good) == []
    custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", good)


def check_a_bad_multus_config_is_refused(
    custom: client.CustomObjectsApi, namespace: str, a: Controller
) -> None:
    """An invalid SpiderMultusConfig is refused, naming the field; controller `a` says it
    denied it."""
    smc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderMultusConfig",
        "metadata": {"name": "bad-json", "namespace": namespace},
        "spec": {
            "cniType": "macvlan",
            "macvlan": {"master": ["eth0"]},
            "chainCNIJsonData": ["{not json"],
        },
    }
    e = refusal(
        lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "spidermultusconfigs", smc
        )
    )
    assert e.status == 422
    assert (
        f"SpiderMultusConfig '{namespace}/bad-json': "
        "spec.chainCNIJsonData[0]: is not valid JSON" in (e.body or "")
    )
    assert "denied CREATE SpiderMultusConfig" in a.text()


def test_webhook_refuses_what_the_rules_refuse_through_the_api_server(
    k8s_cluster: Cluster,
    k8s_api: client.ApiClient,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    agent: ServiceProcess,
    pools: list[str],
    webhook_configuration: Callable[[int], str],
    tmp_path: Path,
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    started = time.monotonic()
    # The configuration exists first (no caBundle): a controller sets it at start.
    port_a, port_b = free_port(), free_port()
    config = webhook_configuration(port_a)
    adm = client.AdmissionregistrationV1Api(k8s_api)
    # Two controllers at once, the Secret missing: one creates it, the other reads the winner's.
    a = start_controller(k8s_cluster, namespace, config, tmp_path / "a.log", port_a)
    b = start_controller(k8s_cluster, namespace, config, tmp_path / "b.log", port_b)
    try:
        check_one_secret_serves_both(a, b, core, adm, namespace, config)
        net, good = check_pools_refused_and_accepted(custom, pools)
        check_an_allocated_address_keeps_its_pool(agent, core, custom, namespace, net, good)
        check_a_bad_multus_config_is_refused(custom, namespace, a)
    finally:
        codes = [ctl.stop() for ctl in (a, b)]
    assert codes == [0, 0], (a.text(), b.text())
    for ctl in (a, b):
        # Nothing listens any more, and the ports can be bound again.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", ctl.port), timeout=2).close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", ctl.port))
    record_testsuite_property("webhook_test_seconds", f"{time.monotonic() - started:.1f}")


def test_with_the_webhook_down_pools_are_refused_by_name_and_allocations_go_on(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    agent: ServiceProcess,
    pools: list[str],
    webhook_configuration: Callable[[int], str],
) -> None:
    net = ipaddress.ip_network(f"198.{random.randrange(18, 20)}.{random.randrange(256)}.0/24")
    live, refused = (f"wh-{uuid.uuid4().hex[:8]}" for _ in range(2))
    pools.extend([live, refused])
    create = custom.create_cluster_custom_object
    create(GROUP, VERSION, "spiderippools", pool_body(live, str(net), [f"{net[10]}-{net[20]}"]))
    # The configuration as deploy/ registers it (failurePolicy Fail), and nothing serving it:
    # every controller replica is down.
    webhook_configuration(free_port())

    def pool_refused() -> bool:
        try:
            create(GROUP, VERSION, "spiderippools", pool_body(refused, str(net), [str(net[30])]))
        except ApiException as e:
            message = json.loads(e.body or "{}").get("message", "")
            return 'failed calling webhook "validate.spidernet.io"' in message
        custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", refused)
        return False

    wait_for("the API server to call the dead webhook", pool_refused)
    # The agents' writes (SpiderEndpoints, IPClaims) are not reviewed: pods still start.
    uid = make_pod(core, namespace, "down-0")
    call = ipam_call(namespace, "down-0", uid, live)
    answer = agent.client.request("POST", "/v1/ipam/allocate", call)
    address = str(answer["ips"][0]["address"]).split("/", maxsplit=1)[0]
    assert [c["spec"]["name"] for c in claims(custom, live)] == [address]
    agent.client.request("POST", "/v1/ipam/release", call)
    assert claims(custom, live) == []
