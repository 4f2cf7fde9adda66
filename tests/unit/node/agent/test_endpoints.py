"""SpiderEndpoint documents: rebuilding one keeps what the conflict watch recorded and the
sandbox's namespace; a new sandbox starts clean."""

from __future__ import annotations

import json

from spidernet.control.allocator.request import PodFacts
from spidernet.node.agent import endpoints as ep

POD = PodFacts(namespace="t", name="p", uid="u1", node="n1")
ENTRY = {"interface": "eth0", "ipv4": "10.1.0.10/24", "ipv4Pool": "v4", "vlan": 0}


def test_a_rebuilt_document_keeps_recorded_conflicts_and_the_netns() -> None:
    first = ep.build(POD, "ctr", [ENTRY], {"eth0": "net"}, ["eth0"], netns="/run/netns/x")
    assert ep.netns_of(first) == "/run/netns/x"
    recorded = json.dumps([{"address": "10.1.0.10", "mac": "02:00:00:00:00:09"}])
    first["metadata"]["annotations"][ep.ANNO_CONFLICTS] = recorded
    again = ep.build(
        POD, "ctr", [ENTRY], {"eth0": "net"}, ["eth0"], netns="/run/netns/x", previous=first
    )
    assert again["metadata"]["annotations"][ep.ANNO_CONFLICTS] == recorded
    assert again == first  # nothing else changed: no store write is needed
    fresh = ep.build(POD, "ctr2", [ENTRY], {"eth0": "net"}, ["eth0"])
    assert ep.ANNO_CONFLICTS not in fresh["metadata"]["annotations"]
    assert ep.netns_of(fresh) == ""


def test_recorded_conflicts_and_entry_addresses_are_read_back() -> None:
    doc = ep.build(POD, "ctr", [{**ENTRY, "ipv6": "fd01::10/64"}], {}, ["eth0"])
    assert ep.conflicts_of(doc) == []
    entry = {"address": "10.1.0.10", "mac": "02:00:00:00:00:09", "link": "eth0"}
    doc["metadata"]["annotations"][ep.ANNO_CONFLICTS] = json.dumps([entry])
    assert ep.conflicts_of(doc) == [entry]
    doc["metadata"]["annotations"][ep.ANNO_CONFLICTS] = "not json"
    assert ep.conflicts_of(doc) == []
    [only] = ep.entries_of(doc)
    assert [str(a) for a in ep.interfaces_of(only)] == ["10.1.0.10/24", "fd01::10/64"]
