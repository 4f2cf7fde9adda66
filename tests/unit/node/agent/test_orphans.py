"""The embedded GC's judgement (node/agent/orphans.py), pure: which endpoints are
live, gone within the grace, orphans, or not judged, and what the collector remembers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spidernet.control.allocator.request import PodFacts
from spidernet.control.store.base import Stored
from spidernet.node.agent import endpoints as ep
from spidernet.node.agent import orphans

LIVE_ID = "4:4026532001"
GONE_ID = "4:4026532002"


def endpoint(name: str, netns_id: str, *, node: str = "n1", version: str = "1") -> Stored:
    pod = PodFacts(namespace="default", name=name, uid=f"uid-{name}", node=node)
    entries = [{"interface": "eth0", "ipv4": "10.0.0.5/24", "ipv4Pool": "p", "ipv6": ""}]
    doc = ep.build(
        pod,
        f"ctr-{name}",
        entries,
        {"eth0": "net"},
        ["eth0"],
        netns=f"/run/netns/{name}",
        netns_id=netns_id,
    )
    return Stored(ep.key_of("default", name), doc, version)


def never_stateful(doc: Mapping[str, Any]) -> bool:
    return False


def judge(c: orphans.Collector, items: list[Stored], now: float, **kw: Any) -> dict[str, Any]:
    verdicts = c.judge(
        items, node="n1", live=frozenset({LIVE_ID}), now=now, stateful=never_stateful, **kw
    )
    return {v.key.name: v for v in verdicts}


def test_a_namespace_gone_for_the_grace_makes_an_orphan() -> None:
    c = orphans.Collector(grace_s=120)
    items = [endpoint("alive", LIVE_ID), endpoint("dead", GONE_ID)]
    first = judge(c, items, 1000.0)
    assert first["alive"].state == orphans.LIVE
    assert (
        first["alive"].reason
        == f"network namespace {LIVE_ID} (/run/netns/alive) is held on this host"
    )
    assert first["dead"].state == orphans.GONE
    assert first["dead"].reason.endswith("for 0 s; released after 120 s")
    assert first["dead"].addresses == ("10.0.0.5/24",)
    # Still within the grace 119 s later; an orphan at 120 s, counted from the first sighting.
    assert judge(c, items, 1119.0)["dead"].state == orphans.GONE
    later = judge(c, items, 1120.0)["dead"]
    assert later.state == orphans.ORPHAN
    assert later.reason == (
        f"network namespace {GONE_ID} (/run/netns/dead) is held by no process, mount or "
        "descriptor on this host, for 120 s (grace 120 s): released"
    )


def test_a_namespace_that_comes_back_starts_the_grace_again() -> None:
    c = orphans.Collector(grace_s=10)
    dead = endpoint("flaky", GONE_ID)
    judge(c, [dead], 0.0)
    assert dead.key in c.gone_since
    # Seen live (the scan raced a runtime, or the identity was reused): forgotten.
    revived = endpoint("flaky", LIVE_ID, version="2")
    assert judge(c, [revived], 5.0)["flaky"].state == orphans.LIVE
    assert c.gone_since == {}
    assert judge(c, [dead], 11.0)["flaky"].state == orphans.GONE


def test_what_is_not_judged() -> None:
    c = orphans.Collector(grace_s=0)
    items = [
        endpoint("old-record", ""),  # written before identities were recorded
        endpoint("elsewhere", GONE_ID, node="n2"),  # another node's
        endpoint("sts-0", GONE_ID),
    ]
    verdicts = c.judge(
        items,
        node="n1",
        live=frozenset(),
        now=0.0,
        stateful=lambda doc: ep.container_of(doc) == "ctr-sts-0",
    )
    by_name = {v.key.name: v for v in verdicts}
    assert set(by_name) == {"old-record", "sts-0"}
    assert by_name["old-record"].state == orphans.KEPT
    assert by_name["old-record"].reason == "no network namespace identity recorded: not judged"
    assert by_name["sts-0"].state == orphans.KEPT
    assert "StatefulSet" in by_name["sts-0"].reason


def test_a_grace_given_for_one_pass_and_the_memory_of_releases() -> None:
    c = orphans.Collector(grace_s=600)
    dead = endpoint("dead", GONE_ID)
    verdict = judge(c, [dead], 50.0, grace_s=0)["dead"]
    assert verdict.state == orphans.ORPHAN
    c.remember(1_700_000_000.0, verdict)
    assert c.gone_since == {}
    assert list(c.released) == [(1_700_000_000.0, verdict)]
    # Gone from the listing: nothing is remembered about it any more but the release.
    assert judge(c, [], 60.0) == {}
    assert verdict.to_dict() == {
        "endpoint": "default/dead",
        "container": "ctr-dead",
        "netns": "/run/netns/dead",
        "netnsID": GONE_ID,
        "addresses": ["10.0.0.5/24"],
        "state": "orphan",
        "reason": verdict.reason,
    }
