"""Smoke tests of the k8s lane's cluster: the behaviours the kube store will rely on.

Each test works in a namespace (and CRD group) of its own; nothing is mocked.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from spidernet.testbed import spidercrds
from spidernet.testbed.kubecluster import Cluster

GROUP = "test.spidernet.io"


@pytest.fixture
def namespace(k8s_api: client.ApiClient) -> str:
    """A fresh namespace (left Terminating at the end: this cluster runs no namespace
    controller, and the whole cluster is thrown away with the session)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def _config_map(name: str, data: dict[str, str]) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)


def test_server_is_the_version_built(k8s_cluster: Cluster, k8s_api: client.ApiClient) -> None:
    info = client.VersionApi(k8s_api).get_code()
    assert info.git_version == k8s_cluster.versions.kubernetes
    assert k8s_cluster.kubeconfig.is_file()


def test_namespace_and_config_map_round_trip(k8s_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    status = core.read_namespace(namespace).status
    assert status is not None
    assert status.phase == "Active"
    core.create_namespaced_config_map(namespace, _config_map("pools", {"v4": "10.1.0.0/24"}))
    got = core.read_namespaced_config_map("pools", namespace)
    assert got.data == {"v4": "10.1.0.0/24"}
    assert got.metadata is not None
    assert got.metadata.namespace == namespace
    assert got.metadata.uid
    assert _resource_version(got)


def _resource_version(obj: client.V1ConfigMap) -> str:
    assert obj.metadata is not None
    assert obj.metadata.resource_version is not None
    return obj.metadata.resource_version


def _status(err: ApiException) -> dict[str, Any]:
    """The Status object the API server answered with."""
    body: dict[str, Any] = json.loads(err.body or "{}")
    return body


def test_stale_resource_version_is_a_conflict(k8s_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_config_map(namespace, _config_map("cm", {"n": "0"}))
    first = core.read_namespaced_config_map("cm", namespace)
    stale = core.read_namespaced_config_map("cm", namespace)
    first.data = {"n": "1"}
    updated = core.replace_namespaced_config_map("cm", namespace, first)
    assert _resource_version(updated) != _resource_version(stale)

    stale.data = {"n": "2"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cm", namespace, stale)
    assert err.value.status == 409
    assert _status(err.value)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("cm", namespace).data == {"n": "1"}


def _crd(plural: str) -> client.V1CustomResourceDefinition:
    """A namespaced CRD whose spec has a required string, an enum and a bounded integer."""
    props = client.V1JSONSchemaProps
    spec = props(
        type="object",
        required=["subnet"],
        properties={
            "subnet": props(type="string"),
            "family": props(type="string", enum=["IPv4", "IPv6"]),
            "size": props(type="integer", minimum=1),
        },
    )
    version = client.V1CustomResourceDefinitionVersion(
        name="v1",
        served=True,
        storage=True,
        schema=client.V1CustomResourceValidation(
            open_apiv3_schema=props(type="object", properties={"spec": spec})
        ),
    )
    return client.V1CustomResourceDefinition(
        api_version="apiextensions.k8s.io/v1",
        kind="CustomResourceDefinition",
        metadata=client.V1ObjectMeta(name=f"{plural}.{GROUP}"),
        spec=client.V1CustomResourceDefinitionSpec(
            group=GROUP,
            scope="Namespaced",
            names=client.V1CustomResourceDefinitionNames(
                plural=plural, singular=plural[:-1], kind="TestPool"
            ),
            versions=[version],
        ),
    )


def _wait_established(ext: client.ApiextensionsV1Api, name: str) -> None:
    spidercrds.wait_established(ext, name)


def test_crd_schema_accepts_valid_and_refuses_invalid(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    plural = f"pools{uuid.uuid4().hex[:6]}s"
    ext = client.ApiextensionsV1Api(k8s_api)
    ext.create_custom_resource_definition(_crd(plural))
    _wait_established(ext, f"{plural}.{GROUP}")
    custom = client.CustomObjectsApi(k8s_api)

    def create(name: str, spec: dict[str, Any]) -> object:
        body = {"apiVersion": f"{GROUP}/v1", "kind": "TestPool", "metadata": {"name": name}}
        return custom.create_namespaced_custom_object(
            GROUP, "v1", namespace, plural, {**body, "spec": spec}
        )

    made = create("good", {"subnet": "10.2.0.0/24", "family": "IPv4", "size": 254})
    assert isinstance(made, dict)
    assert made["metadata"]["uid"]
    got = custom.get_namespaced_custom_object(GROUP, "v1", namespace, plural, "good")
    assert isinstance(got, dict)
    assert got["spec"] == {"subnet": "10.2.0.0/24", "family": "IPv4", "size": 254}

    with pytest.raises(ApiException) as err:
        create("bad", {"subnet": "10.3.0.0/24", "family": "IPv5", "size": "big"})
    assert err.value.status == 422
    status = _status(err.value)
    assert status["reason"] == "Invalid"
    fields = {cause["field"] for cause in status["details"]["causes"]}
    assert fields == {"spec.family", "spec.size"}
    assert "IPv5" in status["message"]
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(GROUP, "v1", namespace, plural, "bad")
    assert missing.value.status == 404


def test_watch_sees_added(k8s_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    listed = core.list_namespaced_config_map(namespace)
    assert listed.metadata is not None
    since = listed.metadata.resource_version
    core.create_namespaced_config_map(namespace, _config_map("watched", {"k": "v"}))
    events = []
    w = watch.Watch()  # type: ignore[no-untyped-call]  # kubernetes.watch has no annotations
    # Watching from the list's resourceVersion replays what happened after it.
    for event in w.stream(  # type: ignore[no-untyped-call]  # (kubernetes.watch, as above)
        core.list_namespaced_config_map,
        namespace,
        resource_version=since,
        timeout_seconds=10,
    ):
        events.append((event["type"], event["object"].metadata.name))
        if event["object"].metadata.name == "watched":
            w.stop()  # type: ignore[no-untyped-call]  # (kubernetes.watch, as above)
    assert ("ADDED", "watched") in events
