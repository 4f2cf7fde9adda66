"""diag's pure parts: which targets and lookups a pod gets, and which findings answers give
(the answers are made up here; the netns lane asks the real kernel)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import jsonschema
import pytest

from spidernet.node.coordinator.check import Drift
from spidernet.node.diag import plan
from spidernet.node.diag.analyze import KINDS, Answers, findings, ip_command
from spidernet.node.diag.model import Answer, LookupSpec, ProbeResult, Record, Side
from spidernet.node.diag.render import document
from spidernet.node.diag.run import PathResult, Report
from spidernet.node.netlink.records import (
    AF_INET,
    RT_SCOPE_LINK,
    Address,
    Link,
    Neighbour,
    Route,
    Rule,
    State,
)
from spidernet.node.plan.ops import AddRoute, AddRule, SetSysctl

ip = ipaddress.ip_address
net = ipaddress.ip_network
iface = ipaddress.ip_interface
SCHEMA = json.loads((Path(__file__).parents[4] / "docs" / "diag.schema.json").read_text())
POD_NS = "/run/netns/pod"

LINKS = (
    Link(1, "lo", "", "00:00:00:00:00:00", 65536, True),
    Link(2, "eth0", "macvlan", "0a:00:00:00:00:02", 1500, True),
    Link(3, "veth0", "veth", "0a:00:00:00:00:03", 1500, True, None, 9, 0),
    Link(4, "net1", "macvlan", "0a:00:00:00:00:04", 1500, True),
)
ADDRESSES = (
    Address(2, iface("192.0.2.10/24")),
    Address(4, iface("198.51.100.10/24")),
)
ROUTES = (
    Route(net("0.0.0.0/0"), gateway=ip("192.0.2.1"), oif=2),
    Route(net("192.0.2.0/24"), oif=2, scope=RT_SCOPE_LINK),
    Route(net("192.0.2.2/32"), oif=3, scope=RT_SCOPE_LINK),
    Route(net("10.96.0.0/12"), gateway=ip("192.0.2.2"), oif=3),
    Route(net("0.0.0.0/0"), table=101, gateway=ip("198.51.100.1"), oif=4),
    Route(net("198.51.100.0/24"), oif=4, scope=RT_SCOPE_LINK),
)
POD = Side("pod", POD_NS, State(LINKS, ADDRESSES, ROUTES, (), ()), {})
HOST = Side(
    "host",
    None,
    State(
        (
            Link(2, "eth0", "veth", "0a:00:00:00:01:02", 1500, True),
            Link(9, "vethabc", "veth", "0a:00:00:00:01:09", 1500, True),
        ),
        (Address(2, iface("192.0.2.2/24")),),
        (Route(net("192.0.2.10/32"), table=500, oif=9),),
        (Rule(AF_INET, 1000, 500),),
        (Neighbour(9, ip("192.0.2.10"), "0a:00:00:00:00:02"),),
    ),
    {"net.ipv4.ip_forward": "1"},
)
RECORD = Record(
    "t",
    "p",
    "ctr",
    POD_NS,
    {"eth0": (iface("192.0.2.10/24"),), "net1": (iface("198.51.100.10/24"),)},
    {"eth0": (ip("192.0.2.1"),), "net1": (ip("198.51.100.1"),)},
)


def test_nics_targets_and_lookups() -> None:
    assert plan.nics(POD) == ["eth0", "net1"]
    goals = plan.targets(POD, RECORD, [(ip("203.0.113.9"), 443)])
    assert [(t.name, str(t.address), t.nic, t.inbound) for t in goals] == [
        ("gateway of eth0", "192.0.2.1", "eth0", True),
        ("gateway of net1", "198.51.100.1", "net1", True),
        ("host", "192.0.2.2", "veth0", True),
        ("cluster 10.96.0.0/12", "10.96.0.1", "veth0", False),
        ("--to 203.0.113.9:443", "203.0.113.9", None, True),
    ]
    paths = plan.paths(POD, RECORD, goals)
    inbound = [(p.target.name, p.nic, str(p.local)) for p in paths if p.direction == "inbound"]
    assert inbound == [
        ("gateway of eth0", "eth0", "192.0.2.10"),
        ("gateway of net1", "net1", "198.51.100.10"),
        # Through veth0 the host reaches every pod address.
        ("host", "veth0", "192.0.2.10"),
        ("host", "veth0", "198.51.100.10"),
        ("--to 203.0.113.9:443", "eth0", "192.0.2.10"),
        ("--to 203.0.113.9:443", "net1", "198.51.100.10"),
    ]
    to = [p for p in paths if p.target.port == 443 and p.direction == "inbound"][1]
    assert to.request == LookupSpec("pod", ip("198.51.100.10"), ip("203.0.113.9"), "net1", 443)
    assert to.reply == LookupSpec("pod", ip("203.0.113.9"), ip("198.51.100.10"), "", 443)
    assert [str(s.dst) for s in plan.host_lookups(POD, RECORD)] == ["192.0.2.10", "198.51.100.10"]
    assert [(p.kind, p.nic, str(p.address), p.src) for p in plan.probes(POD, RECORD)] == [
        ("gateway", "eth0", "192.0.2.1", ip("192.0.2.10")),
        ("conflict", "eth0", "192.0.2.10", None),
        ("gateway", "net1", "198.51.100.1", ip("198.51.100.10")),
        ("conflict", "net1", "198.51.100.10", None),
    ]


def test_an_outbound_reply_is_looked_up_on_the_link_the_request_left_by() -> None:
    [path] = [p for p in plan.paths(POD, RECORD, plan.targets(POD, RECORD)) if p.reply is None][:1]
    answer = Answer(Route(net("192.0.2.1/32"), prefsrc=ip("192.0.2.10"), oif=2), dev="eth0")
    assert plan.outbound_reply(path, answer) == LookupSpec(
        "pod", ip("192.0.2.10"), path.target.address, "eth0"
    )
    assert plan.outbound_reply(path, Answer(error="ENETUNREACH")) is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("10.0.0.1", ("10.0.0.1", 0)),
        ("10.0.0.1:80", ("10.0.0.1", 80)),
        ("2001:db8::1", ("2001:db8::1", 0)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
    ],
)
def test_to_parses_an_address_and_a_port(text: str, want: tuple[str, int]) -> None:
    address, port = plan.parse_to(text)
    assert (str(address), port) == want


@pytest.mark.parametrize("text", ["10.0.0.1:99999", "name", "[2001:db8::1]x", "10.0.0.1:"])
def test_to_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):  # int(), ip_address() or our own words
        plan.parse_to(text)


def test_the_default_nic_is_the_configured_one_or_the_first() -> None:
    assert plan.default_nic(POD, "") == "eth0"
    assert plan.default_nic(POD, "net1") == "net1"
    assert plan.default_nic(POD, "net9") == "eth0"  # not in the pod: the first NIC


def _answers(
    pod: Side, replies: dict[str, str], host_dev: str = "vethabc"
) -> tuple[list[PathResult], Answers]:
    """Every lookup answered as healthy, except inbound replies given as target -> dev."""
    results = []
    lookups: dict[LookupSpec, Answer] = {}
    reply_specs = {}
    for p in plan.paths(pod, RECORD, plan.targets(pod, RECORD)):
        if p.direction == "outbound":
            dev = p.target.nic or "eth0"
            request = Answer(Route(net(f"{p.target.address}/32"), prefsrc=ip("192.0.2.10")), dev)
            reply_spec = plan.outbound_reply(p, request)
            reply = Answer(Route(net("192.0.2.10/32"), type=2), dev="lo")
        else:
            request = Answer(Route(net(f"{p.local}/32"), type=2), dev="lo")
            reply_spec = p.reply
            reply = Answer(Route(net(f"{p.target.address}/32")), replies.get(p.target.name, p.nic))
        lookups[p.request] = request
        assert reply_spec is not None
        lookups[reply_spec] = reply
        if p.direction == "outbound":
            reply_specs[p] = reply_spec
        results.append(PathResult(p, request, reply_spec, reply))
    host = {
        s: Answer(Route(net(f"{s.dst}/32"), oif=9), dev=host_dev)
        for s in plan.host_lookups(pod, RECORD)
    }
    probes = [
        ProbeResult(s, ("0a:00:00:00:00:01",) if s.kind == "gateway" else ())
        for s in plan.probes(pod, RECORD)
    ]
    return results, Answers(lookups, reply_specs, host, probes)


def test_healthy_answers_have_no_findings_and_the_document_holds_to_the_schema() -> None:
    results, answers = _answers(POD, {})
    found = findings(POD, HOST, RECORD, [r.path for r in results], answers, "eth0")
    assert found == []
    report = Report(
        POD_NS,
        RECORD,
        POD,
        HOST,
        tuple(results),
        tuple(answers.host.items()),
        tuple(answers.probes),
        "eth0",
        (),
        (),
    )
    doc = document(report)
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert doc["target"] == {"netns": POD_NS, "pod": "t/p", "containerID": "ctr"}
    assert doc["host"]["routes"] == [
        {
            "table": "500",
            "dst": "192.0.2.10/32",
            "family": 4,
            "gateway": None,
            "dev": "vethabc",
            "src": None,
            "metric": 0,
        }
    ]


def test_each_broken_answer_is_its_own_finding() -> None:
    results, answers = _answers(POD, {"gateway of net1": "eth0"}, host_dev="eth0")
    silent = [
        ProbeResult(p.spec, () if p.spec.kind == "gateway" else ("0a:00:00:00:00:99",))
        for p in answers.probes
    ]
    answers = Answers(answers.lookups, answers.replies, answers.host, silent)
    stray = Side(
        "pod",
        POD_NS,
        State(LINKS, (*ADDRESSES, Address(2, iface("192.0.2.99/24"))), ROUTES, (), ()),
        {},
    )
    found = findings(stray, HOST, RECORD, [r.path for r in results], answers, "net1")
    assert [f.kind for f in found] == [
        "asymmetric-reply",
        "no-host-route",
        "no-host-route",
        "gateway-silent",
        "gateway-silent",
        "address-conflict",
        "address-conflict",
        "ipam-mismatch",
        "default-route-nic",
    ]
    assert found[0].message == (
        "a request from 198.51.100.1 (gateway of net1) arriving on net1 for 198.51.100.10 "
        "is answered through eth0"
    )
    assert found[0].confirm == "ip -n pod route get 198.51.100.1 from 198.51.100.10"
    assert found[-1].message == "the IPv4 default route leaves by eth0, not net1"
    assert {f.kind for f in found} <= set(KINDS)


def test_confirm_commands_name_the_namespace_the_way_it_was_given() -> None:
    assert ip_command(POD, "route") == "ip -n pod route"
    assert ip_command(HOST, "route") == "ip route"
    other = Side("pod", "/proc/42/ns/net", POD.state)
    assert ip_command(other, "route") == "nsenter --net=/proc/42/ns/net ip route"


# A Multus pod: eth0 from the cluster network (a veth on the host's bridge cni0), net1 from
# macvlan + spidernet-ipam with the coordinator in overlay mode (no veth0).
OVERLAY_LINKS = (
    Link(1, "lo", "", "00:00:00:00:00:00", 65536, True),
    Link(2, "eth0", "veth", "0a:00:00:00:00:02", 1500, True, None, 7, 0),
    Link(3, "net1", "macvlan", "0a:00:00:00:00:03", 1500, True),
)
OVERLAY_POD = Side(
    "pod",
    POD_NS,
    State(
        OVERLAY_LINKS,
        (Address(2, iface("10.244.0.4/24")), Address(3, iface("192.0.2.110/24"))),
        (
            Route(net("0.0.0.0/0"), gateway=ip("10.244.0.1"), oif=2),
            Route(net("10.244.0.0/24"), oif=2, scope=RT_SCOPE_LINK, proto=2),
            Route(net("192.0.2.0/24"), oif=3, scope=RT_SCOPE_LINK, proto=2),
            Route(net("192.0.2.2/32"), oif=2, scope=RT_SCOPE_LINK),
            Route(net("192.0.2.2/32"), table=101, oif=2, scope=RT_SCOPE_LINK),
            Route(net("0.0.0.0/0"), table=101, gateway=ip("192.0.2.1"), oif=3),
        ),
        (),
        (),
    ),
    {},
)
OVERLAY_RECORD = Record(
    "t", "p", "ctr", POD_NS, {"net1": (iface("192.0.2.110/24"),)}, {"net1": (ip("192.0.2.1"),)}
)
OVERLAY_HOST = Side(
    "host",
    None,
    State(
        (
            Link(2, "eth0", "veth", "0a:00:00:00:01:02", 1500, True),
            Link(6, "cni0", "bridge", "0a:00:00:00:01:06", 1500, True),
            Link(7, "vethabc", "veth", "0a:00:00:00:01:07", 1500, True, 6),
        ),
        (Address(2, iface("192.0.2.2/24")), Address(6, iface("10.244.0.1/24"))),
        (),
        (),
        (),
    ),
    {},
)


def test_an_overlay_eth0_beside_recorded_nics_is_the_host_link() -> None:
    assert plan.host_link(POD, RECORD) == "veth0"
    assert plan.host_link(OVERLAY_POD, OVERLAY_RECORD) == "eth0"
    assert plan.host_link(OVERLAY_POD, None) is None  # nothing says eth0 is not ours
    everything = Record("t", "p", "ctr", POD_NS, {"eth0": (), "net1": ()}, {})
    assert plan.host_link(OVERLAY_POD, everything) is None  # eth0 is IPAM's: no overlay
    goals = plan.targets(OVERLAY_POD, OVERLAY_RECORD)
    # The host through eth0 (the coordinator's /32); eth0's own subnet (a kernel route)
    # is no cluster CIDR; each subnet's neighbour is its gateway, already a target.
    assert [(t.name, str(t.address), t.nic) for t in goals] == [
        ("gateway of eth0", "10.244.0.1", "eth0"),
        ("gateway of net1", "192.0.2.1", "net1"),
        ("host", "192.0.2.2", "eth0"),
    ]


def test_an_overlay_pod_has_no_finding_about_the_cni_that_is_not_ours() -> None:
    host = {
        # The host reaches net1's address by the overlay peer, eth0's through its bridge.
        LookupSpec("host", ip("192.0.2.110")): Answer(Route(net("192.0.2.110/32")), dev="vethabc"),
    }
    answers = Answers({}, {}, host, [])
    assert findings(OVERLAY_POD, OVERLAY_HOST, OVERLAY_RECORD, [], answers, "eth0") == []
    wrong = {LookupSpec("host", ip("192.0.2.110")): Answer(Route(net("0.0.0.0/0")), dev="eth0")}
    (found,) = findings(
        OVERLAY_POD, OVERLAY_HOST, OVERLAY_RECORD, [], Answers({}, {}, wrong, []), "eth0"
    )
    assert found.kind == "no-host-route"
    assert "not its veth vethabc" in found.message


# The pod's address removed and added back: the kernel dropped the routes that named it as
# their source, veth0's included. Only the coordinator's saved plan still knows them.
LOST = Side(
    "pod",
    POD_NS,
    State(LINKS, ADDRESSES, tuple(r for r in ROUTES if r.oif != 3), (), ()),
    {},
)
PLANNED = (net("192.0.2.2/32"), net("10.96.0.0/12"))


def test_a_vanished_route_does_not_remove_its_own_question() -> None:
    names = [t.name for t in plan.targets(LOST, RECORD)]
    assert "host" not in names
    assert "cluster 10.96.0.0/12" not in names
    goals = plan.targets(LOST, RECORD, planned=PLANNED)
    asked = [(t.name, str(t.address), t.nic, t.via_host_link) for t in goals]
    assert ("host", "192.0.2.2", "veth0", True) in asked
    assert ("cluster 10.96.0.0/12", "10.96.0.1", "veth0", True) in asked
    assert ("gateway of eth0", "192.0.2.1", "eth0", False) in asked


def test_a_request_for_the_host_link_that_leaves_elsewhere_or_nowhere_is_misrouted() -> None:
    paths = plan.paths(LOST, RECORD, plan.targets(LOST, RECORD, planned=PLANNED))
    lookups: dict[LookupSpec, Answer] = {}
    for p in paths:
        if p.direction == "outbound" and p.target.name == "host":
            lookups[p.request] = Answer(error="ENETUNREACH", message="Network is unreachable")
        elif p.direction == "outbound" and p.target.via_host_link:
            lookups[p.request] = Answer(Route(net("0.0.0.0/0")), dev="eth0")  # the default
    found = findings(LOST, None, RECORD, paths, Answers(lookups, {}, {}, []), "eth0")
    assert [(f.kind, f.message) for f in found] == [
        (
            "misrouted",
            "the pod's request to 192.0.2.2 (host) has no route: Network is unreachable",
        ),
        (
            "misrouted",
            "the pod's request to 10.96.0.1 (cluster 10.96.0.0/12) leaves by eth0, not veth0",
        ),
    ]
    assert found[1].confirm == "ip -n pod route get 10.96.0.1"


def test_each_difference_from_the_saved_plan_is_a_finding_with_its_command() -> None:
    route = AddRoute("pod", net("10.96.0.0/12"), "veth0", ip("192.0.2.2"))
    host_route = AddRoute("host", net("192.0.2.10/32"), "vethabc", table=500)
    rule = AddRule("pod", AF_INET, 1000, 101)
    sysctl = SetSysctl("pod", "net.ipv4.conf.all.rp_filter", "0", "1")
    drifts = [
        ("eth0", Drift(route, "route 10.96.0.0/12 via 192.0.2.2 dev veth0: is missing")),
        ("eth0", Drift(host_route, "route on the host: is missing")),
        ("net1", Drift(rule, "rule: is missing")),
        ("net1", Drift(sysctl, "sysctl net.ipv4.conf.all.rp_filter in the pod is 1, not 0")),
        ("net1", Drift(None, "the pod's nftables reply marking is missing")),
    ]
    found = findings(LOST, HOST, RECORD, [], Answers({}, {}, {}, []), "eth0", drifts)
    assert [(f.kind, f.confirm) for f in found] == [
        ("plan-drift", "ip -n pod -4 route show table 254"),
        ("plan-drift", "ip -4 route show table 500"),
        ("plan-drift", "ip -n pod -4 rule show"),
        ("plan-drift", "ip netns exec pod sysctl net.ipv4.conf.all.rp_filter"),
        ("plan-drift", "ip netns exec pod nft list ruleset"),
    ]
    assert found[0].message == (
        "the coordinator's ADD for eth0: route 10.96.0.0/12 via 192.0.2.2 dev veth0: is missing"
    )
