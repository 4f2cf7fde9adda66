"""The Kubernetes store's pure parts, without a server: object names, label values, the
documents it sends and reads back, and commit's check before writing. The store against a
real API server is tests/k8s/test_kube_store.py and the shared contract suite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import urllib3.exceptions as u
from kubernetes.client.exceptions import ApiException

from spidernet.control.store import kube, kube_api, kube_names
from spidernet.control.store.base import (
    CLAIM,
    AlreadyExists,
    Conflict,
    Create,
    Delete,
    Invalid,
    Key,
    NotFound,
    ReadOnly,
    Stored,
    Unavailable,
    Update,
)

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def test_object_names_are_dns_safe_readable_and_distinct() -> None:
    keys = [
        Key(CLAIM, "pool-a", "10.0.0.5"),
        Key(CLAIM, "pool-a", "10-0-0-5"),  # slugs alike
        Key(CLAIM, "pool.a", "10.0.0.5"),
        Key(CLAIM, "pool-a", "fd00::5"),
        Key("Pod", "", "a" * 300),
        Key("Pod", "", "A" * 300),
        Key("_", "", "_"),
        Key("Pod", "default", "web-0"),
        Key("Pod", "default-web", "0"),
    ]
    names = [kube_names.object_name(k) for k in keys]
    assert len(set(names)) == len(names)
    for name in names:
        assert len(name) <= 253
        assert DNS_SUBDOMAIN.fullmatch(name), name
    assert names[0].startswith("ipclaim-pool-a-10-0-0-5-")
    assert kube_names.object_name(keys[0]) == names[0]  # stable


def test_label_values_are_valid_and_kept_when_possible() -> None:
    assert kube_names.label_value("IPClaim") == "IPClaim"
    assert kube_names.label_value("") == ""
    for text in ("x" * 64, "pool:a", "-a", "a b", "p" * 253):
        value = kube_names.label_value(text)
        assert value != text
        assert len(value) <= 63
        assert LABEL_VALUE.fullmatch(value)
    assert kube_names.label_value("x" * 64) != kube_names.label_value("x" * 65)


def test_internal_documents_round_trip() -> None:
    key = Key(CLAIM, "pool-a", "10.0.0.5")
    body = {"pod": "default/web-0", "n": [1, {"x": None}]}
    doc = kube_names.encode_object(key, kube_names.INTERNAL, kube_names.object_name(key), body)
    assert doc["metadata"]["labels"] == {
        kube_names.LABEL_KIND: CLAIM,
        kube_names.LABEL_NAMESPACE: "pool-a",
    }
    doc["metadata"]["resourceVersion"] = "42"
    assert kube_names.decode_object(kube_names.INTERNAL, doc) == Stored(key, body, "42")


def test_spider_documents_take_their_name_from_the_key() -> None:
    res = kube_names.SPIDER_KINDS["SpiderEndpoint"]
    key = Key("SpiderEndpoint", "ns", "web-0")
    doc = kube_names.encode_object(
        key, res, "web-0", {"status": {"x": 1}, "metadata": {"uid": "u"}}
    )
    assert doc == {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderEndpoint",
        "metadata": {"name": "web-0", "namespace": "ns"},
        "status": {"x": 1},
    }
    with pytest.raises(Invalid, match=r"metadata\.name"):
        kube_names.encode_object(key, res, "web-0", {"metadata": {"name": "web-1"}})
    with pytest.raises(Invalid, match="kind"):
        kube_names.encode_object(key, res, "web-0", {"kind": "SpiderIPPool"})
    read = doc | {"metadata": doc["metadata"] | {"resourceVersion": "7", "uid": "u", "x": "y"}}
    stored = kube_names.decode_object(res, read)
    assert stored.key == key
    assert stored.version == "7"
    assert stored.body["metadata"] == {"name": "web-0", "namespace": "ns", "x": "y"}


def test_keys_must_fit_the_kinds_scope() -> None:
    with pytest.raises(ValueError, match="namespaced"):
        kube_names.place(Key("SpiderEndpoint", "", "web-0"))
    with pytest.raises(ValueError, match="cluster-scoped"):
        kube_names.place(Key("SpiderIPPool", "ns", "pool-a"))
    assert kube_names.place(Key("SpiderIPPool", "", "pool-a"))[1:] == (None, "pool-a")


A, B = Key(CLAIM, "p", "10.0.0.1"), Key(CLAIM, "p", "10.0.0.2")


def _stored(key: Key, version: str) -> Stored:
    return Stored(key, {}, version)


def test_commit_check_finds_the_first_failing_write() -> None:
    present = {A: _stored(A, "5"), B: None}
    kube_names.check_writes([Update(A, {}, "5"), Create(B, {}), Delete(B), Create(B, {})], present)
    with pytest.raises(AlreadyExists) as taken:
        kube_names.check_writes([Create(B, {}), Create(A, {})], present)
    assert taken.value.key == A
    with pytest.raises(NotFound) as missing:
        kube_names.check_writes([Create(B, {}), Delete(B), Delete(B)], present)
    assert missing.value.key == B
    with pytest.raises(Conflict) as stale:
        kube_names.check_writes([Delete(A, "4")], present)
    assert type(stale.value) is Conflict
    # An updated object's new version is not known in advance: it matches no expectation.
    with pytest.raises(Conflict):
        kube_names.check_writes([Update(A, {}, "5"), Update(A, {}, "5")], present)


def test_the_clusters_own_kinds_are_read_as_they_are_and_never_written() -> None:
    item = {  # a list item: no kind, no apiVersion
        "metadata": {
            "name": "web-0",
            "namespace": "prod",
            "uid": "5e0c",
            "resourceVersion": "42",
            "labels": {"app": "web"},
            "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": True}],
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"nodeName": "node-a"},
    }
    stored = kube_names.decode_as("Pod", kube_names.INTERNAL, item)
    assert stored.key == Key("Pod", "prod", "web-0")
    assert stored.version == "42"
    assert stored.body["apiVersion"] == "v1"
    assert stored.body["kind"] == "Pod"
    meta = stored.body["metadata"]
    assert (meta["uid"], meta["labels"]) == ("5e0c", {"app": "web"})
    assert meta["ownerReferences"][0]["kind"] == "StatefulSet"
    assert "managedFields" not in meta
    assert "resourceVersion" not in meta
    assert kube_names.namespaced_of("Pod") is True
    assert kube_names.namespaced_of("Node") is False
    assert kube_names.namespaced_of(CLAIM) is None
    for kind in ("Pod", "Namespace", "Node", "StatefulSet"):
        with pytest.raises(ReadOnly, match="read-only"):
            kube_names.ensure_writable(Key(kind, "", "x"))
    kube_names.ensure_writable(Key(CLAIM, "p", "10.0.0.1"))


def test_connect_without_any_configuration_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(Unavailable, match="no kubeconfig"):
        kube.KubeStore.connect()
    with pytest.raises(Unavailable, match="failed to load kubeconfig"):
        kube.KubeStore.connect(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("status", "reason", "applied_maybe"),
    [
        (500, "InternalError", True),  # e.g. etcd timed out after the write was proposed
        (504, "Timeout", True),
        (0, "SSLError", True),  # the connection broke mid-answer
        (429, "TooManyRequests", False),
        (403, "Forbidden", False),
        (401, "Unauthorized", False),
    ],
)
def test_unavailable_says_whether_a_write_may_have_been_applied(
    status: int, reason: str, applied_maybe: bool
) -> None:
    error = kube_api.translate(ApiException(status=status, reason=reason), None, "create")
    assert isinstance(error, Unavailable)
    assert isinstance(error, kube_api.NotApplied) is not applied_maybe


def test_only_a_connection_never_made_is_known_not_sent() -> None:
    refused = u.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    timeout = u.ReadTimeoutError(None, "/x", "read timed out")  # type: ignore[arg-type]
    assert kube_api.never_connected(u.MaxRetryError(None, "/x", refused))  # type: ignore[arg-type]
    assert kube_api.never_connected(refused)
    assert not kube_api.never_connected(u.MaxRetryError(None, "/x", timeout))  # type: ignore[arg-type]
    assert not kube_api.never_connected(u.ProtocolError("Connection aborted"))
