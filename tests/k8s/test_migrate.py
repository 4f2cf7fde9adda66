"""`spidernet migrate` on the real API server: a cluster Spiderpool ran, its records written as
Spiderpool writes them (a SpiderIPPool whose status.allocatedIPs is a JSON string, SpiderEndpoints
with Spiderpool's finalizer), switched to spidernet. After the switch no address Spiderpool gave
out goes to a new pod, running pods keep theirs, and the GC frees those of pods that are gone.
On the same records, the on-call tools: `spidernet ip who`, `ip release` (refused for a running
pod) and `gc --dry-run`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from spidernet.cni.errors import Code
from spidernet.control.client import ServiceError
from spidernet.node.lab.service import scratch_service
from spidernet.testbed.kubecluster import Cluster
from spidernet.testbed.kubeobjects import claims, endpoint, ipam_call, make_pod, remove_pool

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
FINALIZER = "spiderpool.spidernet.io"
WAIT_S = 30.0


@pytest.fixture
def spiderpool_pool(custom: client.CustomObjectsApi, store_crds: list[str]) -> Iterator[str]:
    """A SpiderIPPool of eight addresses, .10 to .17 of a /24 of 198.18.0.0/15 (kept for
    benchmarks, used by no other test), as Spiderpool leaves it: its finalizer on."""
    name = f"sp-{uuid.uuid4().hex[:8]}"
    third = random.randrange(256)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderIPPool",
        "metadata": {"name": name, "finalizers": [FINALIZER]},
        "spec": {
            "ipVersion": 4,
            "subnet": f"198.18.{third}.0/24",
            "ips": [f"198.18.{third}.10-198.18.{third}.17"],
        },
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", body)
    yield name
    custom.patch_cluster_custom_object(
        GROUP, VERSION, "spiderippools", name, {"metadata": {"finalizers": None}}
    )
    remove_pool(custom, name)


def spiderpool_endpoint(
    custom: client.CustomObjectsApi, namespace: str, pod: str, uid: str, ip: str, pool: str
) -> None:
    """A SpiderEndpoint as Spiderpool's agent writes one: the finalizer, an owner reference to
    the pod, the allocation in its status."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderEndpoint",
        "metadata": {
            "name": pod,
            "namespace": namespace,
            "finalizers": [FINALIZER],
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid, "controller": True}
            ],
        },
        "status": {
            "current": {
                "uid": uid,
                "node": "node-1",
                "ips": [
                    {"interface": "net1", "ipv4": f"{ip}/24", "ipv4Pool": pool, "vlan": 0,
                     "cleanGateway": False}
                ],
            },
            "ownerControllerType": "Pod",
            "ownerControllerName": pod,
        },
    }  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "spiderendpoints", body)


def migrate(kubeconfig: Path, pool: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return spidernet(kubeconfig, "migrate", "--pool", pool, *extra)


def spidernet(kubeconfig: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spidernet", *argv, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def claimed(custom: client.CustomObjectsApi, pool: str) -> dict[str, str]:
    return {c["spec"]["name"]: c["spec"]["body"]["pod"] for c in claims(custom, pool)}


def spiderpool_world(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str, pool: str
) -> tuple[dict[int, str], dict[str, str]]:
    """Spiderpool's world: pod a runs (.10 in the pool's record and its endpoint), pod b is
    gone (.11, the pool's record only), pod c runs (.12, its endpoint only), pod d is gone
    (.13, its endpoint left behind with the finalizer). The pool's addresses by their last
    byte, and address -> the pod that holds it."""
    doc = custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", pool)
    assert isinstance(doc, dict)
    net = doc["spec"]["ips"][0].split("-")[0].rsplit(".", 1)[0]
    ip = {n: f"{net}.{n}" for n in range(10, 18)}
    uid_a = make_pod(core, namespace, "a")
    uid_c = make_pod(core, namespace, "c")
    record = {
        ip[10]: {"pod": f"{namespace}/a", "podUid": uid_a},
        ip[11]: {"pod": f"{namespace}/b", "podUid": str(uuid.uuid4())},
    }
    doc["status"] = {"allocatedIPs": json.dumps(record), "allocatedIPCount": 2}
    custom.replace_cluster_custom_object_status(GROUP, VERSION, "spiderippools", pool, doc)
    spiderpool_endpoint(custom, namespace, "a", uid_a, ip[10], pool)
    spiderpool_endpoint(custom, namespace, "c", uid_c, ip[12], pool)
    spiderpool_endpoint(custom, namespace, "d", str(uuid.uuid4()), ip[13], pool)
    held = {ip[10]: f"{namespace}/a", ip[11]: f"{namespace}/b", ip[12]: f"{namespace}/c",
            ip[13]: f"{namespace}/d"}  # fmt: skip
    return ip, held


def migrate_the_pool(
    kubeconfig: Path,
    custom: client.CustomObjectsApi,
    namespace: str,
    pool: str,
    held: dict[str, str],
) -> None:
    """`spidernet migrate`: --dry-run says what it would adopt and changes nothing; then it
    adopts every held address and takes Spiderpool's finalizers off; again, it adopts
    nothing."""
    shown = migrate(kubeconfig, pool, "--dry-run", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    plan = json.loads(shown.stdout)
    assert {a["address"]: a["pod"] for a in plan["adopt"]} == held
    assert f"SpiderIPPool {pool}" in plan["finalizersToRemove"]
    assert claimed(custom, pool) == {}

    done = migrate(kubeconfig, pool)
    assert done.returncode == 0, done.stderr
    assert claimed(custom, pool) == held
    gone_ep = endpoint(custom, namespace, "d")
    assert gone_ep is not None
    assert FINALIZER not in (gone_ep["metadata"].get("finalizers") or [])
    again = migrate(kubeconfig, pool, "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["adopt"] == []


def new_pods_get_the_free_addresses(
    kubeconfig: Path, core: client.CoreV1Api, namespace: str, pool: str, ip: dict[int, str]
) -> dict[str, str]:
    """spidernet's agent: the four free addresses go to new pods, then the pool is exhausted.
    New pod -> its address."""
    with scratch_service("--kube", "--kubeconfig", str(kubeconfig), "--node", "node-1") as agent:
        answered: dict[str, str] = {}
        for n in range(4):
            pod = f"new{n}"
            uid = make_pod(core, namespace, pod)
            answer = agent.client.request(
                "POST", "/v1/ipam/allocate", ipam_call(namespace, pod, uid, pool)
            )
            answered[pod] = answer["ips"][0]["address"].split("/")[0]
        assert set(answered.values()) == {ip[n] for n in range(14, 18)}
        uid = make_pod(core, namespace, "new4")
        with pytest.raises(ServiceError) as caught:
            agent.client.request(
                "POST", "/v1/ipam/allocate", ipam_call(namespace, "new4", uid, pool)
            )
        assert caught.value.code == Code.ADDRESSES_EXHAUSTED
    return answered


def on_call_tools(
    kubeconfig: Path,
    custom: client.CustomObjectsApi,
    namespace: str,
    pool: str,
    ip: dict[int, str],
) -> None:
    """On call: who holds what, what the GC would reclaim, and a release by hand."""
    shown = spidernet(kubeconfig, "ip", "who", ip[10], "-o", "json")
    assert shown.returncode == 0, shown.stderr
    (row,) = json.loads(shown.stdout)
    assert (row["pool"], row["pod"], row["podState"]) == (pool, f"{namespace}/a", "running")
    assert row["listedBy"] == [f"{namespace}/a"]
    refused = spidernet(kubeconfig, "ip", "release", ip[10])
    assert refused.returncode == 1
    assert "still runs" in refused.stderr
    assert "Traceback" not in refused.stderr
    preview = spidernet(kubeconfig, "gc", "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert f"SpiderEndpoint {namespace}/d of pod {namespace}/d ({pool}/{ip[13]}): pod gone" in (
        preview.stdout
    )
    assert f"IPClaim {pool}/{ip[11]} of pod {namespace}/b" in preview.stdout
    assert claimed(custom, pool)[ip[13]] == f"{namespace}/d"  # the preview changed nothing
    gone = spidernet(kubeconfig, "ip", "who", ip[11])
    assert f"pod {namespace}/b (gone)" in gone.stdout, gone.stdout
    released = spidernet(kubeconfig, "ip", "release", ip[11])
    assert released.returncode == 0, released.stderr
    assert ip[11] not in claimed(custom, pool)
    nobody = spidernet(kubeconfig, "ip", "who", ip[11])
    assert nobody.returncode == 1
    assert "no pool holds it" in nobody.stdout


def the_gc_frees_what_gone_pods_held(
    kubeconfig: Path,
    custom: client.CustomObjectsApi,
    namespace: str,
    pool: str,
    ip: dict[int, str],
    answered: dict[str, str],
    tmp_path: Path,
) -> None:
    """The controller's GC frees what pod d held; a and c keep theirs (and the new pods
    theirs)."""
    log = tmp_path / "controller.log"
    with log.open("wb") as out:
        ctl = subprocess.Popen(
            [sys.executable, "-m", "spidernet", "controller",
             "--kubeconfig", str(kubeconfig), "--gc-interval", "1",
             "--gc-margin", "0", "--orphan-grace", "1", "--lease-namespace", namespace,
             "--lease-name", "migrate", "--lease-duration", "3", "--identity", "one"],
            stdout=out, stderr=out,
        )  # fmt: skip
    try:
        want = {ip[10]: f"{namespace}/a", ip[12]: f"{namespace}/c"} | {
            a: f"{namespace}/{p}" for p, a in answered.items()
        }
        deadline = time.monotonic() + WAIT_S
        while claimed(custom, pool) != want or endpoint(custom, namespace, "d") is not None:
            assert time.monotonic() < deadline, (claimed(custom, pool), log.read_text())
            time.sleep(0.5)
        assert endpoint(custom, namespace, "a") is not None
    finally:
        ctl.terminate()
        ctl.wait(timeout=15)


def test_after_migrate_no_address_spiderpool_gave_out_goes_to_a_new_pod(
    k8s_cluster: Cluster,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    spiderpool_pool: str,
    tmp_path: Path,
) -> None:
    pool = spiderpool_pool
    kubeconfig = k8s_cluster.kubeconfig
    ip, held = spiderpool_world(core, custom, namespace, pool)
    migrate_the_pool(kubeconfig, custom, namespace, pool, held)
    answered = new_pods_get_the_free_addresses(kubeconfig, core, namespace, pool, ip)
    on_call_tools(kubeconfig, custom, namespace, pool, ip)
    the_gc_frees_what_gone_pods_held(kubeconfig, custom, namespace, pool, ip, answered, tmp_path)
