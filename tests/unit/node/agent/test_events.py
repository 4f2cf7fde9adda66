"""PodEvents: failed ADDs become Events off the caller's thread; what cannot be posted is
logged, never raised, and a full queue drops instead of blocking an answer."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from spidernet.cni.errors import Code
from spidernet.control.allocator.errors import AllocationError, Reason
from spidernet.control.store.base import Unavailable
from spidernet.node.agent import events
from spidernet.node.agent.events import PodEvents
from spidernet.node.ipam.conf import PodMeta
from spidernet.node.ipam.errors import AddressesHeld, Contended


def test_a_failure_worth_an_event_is_posted_and_others_are_not() -> None:
    posted: list[tuple[str, Mapping[str, Any]]] = []

    def post(namespace: str, event: Mapping[str, Any]) -> int:
        posted.append((namespace, event))
        return 1

    recorder = PodEvents(post, "node-a")
    recorder.allocation_failed("ns", "web", "u1", Code.IP_CONFLICT, "held", waiting=False)
    recorder.allocation_failed("ns", "web", "u1", Code.TRY_AGAIN_LATER, "busy", waiting=False)
    recorder.allocation_failed("", "", "", Code.NO_POOL, "no pod named", waiting=False)
    recorder.close()
    [(namespace, event)] = posted
    assert namespace == "ns"
    assert (event["reason"], event["message"], event["source"]["host"]) == (
        "IPConflict",
        "held",
        "node-a",
    )
    assert recorder.posted == 1


def test_an_api_server_that_refuses_is_logged_once_and_a_full_queue_drops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(events, "QUEUE", 2)
    gate = threading.Event()

    def post(namespace: str, event: Mapping[str, Any]) -> int:
        gate.wait(10)
        raise Unavailable(None, "the API server did not answer")

    recorder = PodEvents(post, "n")
    for i in range(6):
        recorder.allocation_failed("ns", f"p{i}", "", Code.NO_POOL, "x", waiting=False)
    assert recorder.dropped >= 3  # one in the thread's hands, two queued, the rest dropped
    gate.set()
    recorder.close()
    assert recorder.posted == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "spidernet.events"]
    assert len(lines) == 1
    assert "not posted" in lines[0]
    assert "did not answer" in lines[0]


def test_the_core_s_failure_hook_names_the_event_after_the_runtime_s_cni_error() -> None:
    posted: list[tuple[str, Mapping[str, Any]]] = []

    def post(namespace: str, event: Mapping[str, Any]) -> int:
        posted.append((namespace, event))
        return 1

    recorder = PodEvents(post, "node-a")
    pod = PodMeta(namespace="ns", name="web", uid="u1")
    recorder.add_failed(pod, AllocationError(Reason.EXHAUSTED, "full"), waiting=True)
    recorder.add_failed(pod, AddressesHeld("eth0", ["10.0.0.5 held"]), waiting=False)
    recorder.add_failed(pod, Contended("lost"), waiting=False)  # 11: not the pod's business
    recorder.close()
    assert [(ns, e["reason"], e["message"]) for ns, e in posted] == [
        ("ns", "AutoPoolNotReady", "full"),
        ("ns", "IPConflict", "no free address for eth0: 10.0.0.5 held"),
    ]
