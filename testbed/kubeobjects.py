"""What the k8s lane's tests read and make on the API server, written once: Pods that no
kubelet runs (with uid, labels, annotations, owner and node), and the IPClaims and
SpiderEndpoints the agents record, read back from the cluster itself."""

from __future__ import annotations

import ipaddress
import random
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.store.kube_names import INTERNAL, LABEL_KIND, LABEL_NAMESPACE, label_value

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"


def make_pod(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: tuple[str, str] | tuple[str, str, str] | None = None,
    owner_api: str = "apps/v1",
    node: str | None = None,
) -> str:
    """Create a core/v1 Pod (it never runs: no kubelet), bound to `node` when given; its uid.
    `owner`: (kind, name) of its `owner_api` controller, or (kind, name, uid) for a real one."""
    refs = None
    if owner is not None:
        uid = owner[2] if len(owner) == 3 else str(uuid.uuid4())
        refs = [
            client.V1OwnerReference(
                api_version=owner_api, kind=owner[0], name=owner[1], uid=uid, controller=True
            )
        ]
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, labels=labels, annotations=annotations, owner_references=refs
        ),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="app", image="registry.k8s.io/pause:3.10")],
            automount_service_account_token=False,
            node_name=node,
        ),
    )
    created = core.create_namespaced_pod(namespace, pod)
    assert created.metadata is not None
    assert created.metadata.uid
    return created.metadata.uid


def ipam_call(
    namespace: str, pod: str, uid: str, pool: str, container: str | None = None
) -> dict[str, Any]:
    """The JSON of `/v1/ipam/allocate` and `/v1/ipam/release`, as spidernet-ipam sends."""
    return {
        "containerID": container or f"ctr-{pod}",
        "ifName": "eth0",
        "netNamespace": f"/var/run/netns/{pod}",
        "network": "macvlan-underlay",
        "podNamespace": namespace,
        "podName": pod,
        "podUID": uid,
        "defaultIPv4IPPool": [pool],
    }


def wide_pool(custom: client.CustomObjectsApi, prefix: str) -> str:
    """Create a SpiderIPPool of 2000 addresses in a /21 of 100.64.0.0/10, which no test uses
    for anything else; its name."""
    net = ipaddress.IPv4Network(f"100.{random.randrange(64, 128)}.{8 * random.randrange(32)}.0/21")
    return small_pool(custom, prefix, 2000, net)


def small_pool(
    custom: client.CustomObjectsApi,
    prefix: str,
    size: int,
    net: ipaddress.IPv4Network | None = None,
) -> str:
    """Create a SpiderIPPool of `size` addresses from .10 of `net` (default: a random /24 of
    10.0.0.0/8); its name, `prefix` and a random suffix."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    if net is None:
        net = ipaddress.IPv4Network(f"10.{random.randrange(256)}.{random.randrange(256)}.0/24")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"ipVersion": 4, "subnet": str(net), "ips": [f"{net[10]}-{net[10 + size - 1]}"]},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", body)
    return name


def remove_pool(custom: client.CustomObjectsApi, name: str) -> None:
    """Delete the pool and, first, every claim on it (claims are cluster-scoped objects)."""
    for claim in claims(custom, name):
        custom.delete_cluster_custom_object(
            INTERNAL.group, INTERNAL.version, INTERNAL.plural, claim["metadata"]["name"]
        )
    custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", name)


def claims(custom: client.CustomObjectsApi, pool: str) -> list[dict[str, Any]]:
    """The IPClaim objects of `pool`, read from the API server itself."""
    selector = f"{LABEL_KIND}={label_value('IPClaim')},{LABEL_NAMESPACE}={label_value(pool)}"
    doc = custom.list_cluster_custom_object(
        INTERNAL.group, INTERNAL.version, INTERNAL.plural, label_selector=selector
    )
    assert isinstance(doc, dict)
    return [c for c in doc["items"] if c["spec"]["namespace"] == pool]


def endpoints(custom: client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    """The SpiderEndpoints of `namespace`, read from the API server itself."""
    doc = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "spiderendpoints")
    assert isinstance(doc, dict)
    items: list[dict[str, Any]] = doc["items"]
    return items


def endpoint(custom: client.CustomObjectsApi, namespace: str, pod: str) -> dict[str, Any] | None:
    """The pod's SpiderEndpoint, or None."""
    try:
        doc = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "spiderendpoints", pod)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    assert isinstance(doc, dict)
    return doc
