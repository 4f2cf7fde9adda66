"""The Events the agent writes on pods whose allocation failed: reasons and documents."""

from __future__ import annotations

from datetime import UTC, datetime

from spidernet.cni.errors import Code
from spidernet.control.model import events

NOW = datetime(2026, 12, 7, 8, 0, 0, tzinfo=UTC)


def test_each_failure_a_pod_should_hear_of_has_its_reason() -> None:
    assert events.failure_reason(Code.NO_POOL) == "NoIPPool"
    assert events.failure_reason(Code.ADDRESSES_EXHAUSTED) == "IPPoolExhausted"
    assert events.failure_reason(Code.IP_CONFLICT) == "IPConflict"
    assert events.failure_reason(Code.GATEWAY_UNREACHABLE) == "GatewayUnreachable"
    assert events.failure_reason(Code.INVALID_NETWORK_CONFIG) == "InvalidIPAMConfig"
    assert events.failure_reason(Code.NO_POOL, waiting=True) == "AutoPoolNotReady"
    assert events.failure_reason(Code.ADDRESSES_EXHAUSTED, waiting=True) == "AutoPoolNotReady"
    # The agent's or the API server's trouble, not the pod's network: no Event.
    assert events.failure_reason(Code.TRY_AGAIN_LATER) is None
    assert events.failure_reason(Code.INTERNAL) is None


def test_an_event_names_its_pod_by_uid_and_has_one_name_per_pod_and_reason() -> None:
    doc = events.pod_event("ns", "web", "u1", "NoIPPool", "no pool", "node-a", NOW)
    assert doc["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "ns",
        "name": "web",
        "uid": "u1",
    }
    assert (doc["type"], doc["reason"], doc["message"], doc["count"]) == (
        "Warning",
        "NoIPPool",
        "no pool",
        1,
    )
    assert doc["source"] == {"component": "spidernet-agent", "host": "node-a"}
    assert doc["firstTimestamp"] == doc["lastTimestamp"] == "2026-12-07T08:00:00Z"
    same = events.pod_event("ns", "web", "u1", "NoIPPool", "other words", "node-b", NOW)
    assert same["metadata"] == doc["metadata"]
    other = events.pod_event("ns", "web", "u1", "IPConflict", "x", "node-a", NOW)
    recreated = events.pod_event("ns", "web", "u2", "NoIPPool", "x", "node-a", NOW)
    names = {d["metadata"]["name"] for d in (doc, other, recreated)}
    assert len(names) == 3
    assert all(n.startswith("web.") for n in names)
    # Without a uid (a runtime that did not pass K8S_POD_UID) the reference names the pod.
    assert (
        "uid" not in events.pod_event("ns", "web", "", "NoIPPool", "x", "n", NOW)["involvedObject"]
    )


def test_long_names_and_messages_stay_within_what_the_api_server_takes() -> None:
    doc = events.pod_event("ns", "p" * 253, "u", "NoIPPool", "m" * 5000, "n", NOW)
    assert len(doc["metadata"]["name"]) <= 253
    assert len(doc["message"]) == events.MAX_MESSAGE


def test_a_reclaim_is_a_normal_event_on_its_pool_in_the_default_namespace() -> None:
    doc = events.pool_event("pool-a", "IPReclaimed", "reclaimed 10.0.0.5 of pod ns/web", NOW)
    assert doc["metadata"]["namespace"] == "default"
    assert doc["involvedObject"] == {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "name": "pool-a",
    }
    assert (doc["type"], doc["source"]) == ("Normal", {"component": "spidernet-controller"})
    other = events.pool_event("pool-a", "IPReclaimed", "reclaimed 10.0.0.6 of pod ns/db", NOW)
    assert other["metadata"]["name"] != doc["metadata"]["name"]
