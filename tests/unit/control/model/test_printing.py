"""`kubectl get` columns (Spiderpool's printcolumn markers) and CLI kind names."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from spidernet.control.crds import printer
from spidernet.control.model.documents import load_documents, parse, to_document
from spidernet.control.model.printing import (
    Printer,
    format_age,
    format_cell,
    human_duration,
    parse_json_path,
    resolve_kind,
    widths,
)

API = "spiderpool.spidernet.io/v2beta1"
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def table(kind: str, docs: list[Any], wide: bool = False, **kw: Any) -> Any:
    return printer().table(kind, docs, wide, **kw)


def columns(kind: str, wide: bool = False) -> list[tuple[str, object]]:
    return [(c.header, c) for c in printer().columns(kind, wide)]


def pool_doc() -> dict[str, Any]:
    (doc,) = load_documents(f"""
apiVersion: {API}
kind: SpiderIPPool
metadata: {{name: auto4-web-eth0-1a2b3}}
spec:
  subnet: 10.6.0.0/16
  ips: [10.6.168.101-10.6.168.110]
  nodeName: [node1, node2]
  multusName: [kube-system/macvlan]
  podAffinity:
    matchLabels: {{ipam.spidernet.io/app-namespace: apps}}
""")
    out = to_document(parse(doc))
    # The service adds the status the way Spiderpool's controller and agent keep it.
    out["status"] = {"allocatedIPCount": 2, "totalIPCount": 10}
    return out


def test_ippool_columns_match_spiderpool() -> None:
    headers, rows = table("SpiderIPPool", [pool_doc()])
    assert headers == [
        "NAME",
        "VERSION",
        "SUBNET",
        "ALLOCATED-IP-COUNT",
        "TOTAL-IP-COUNT",
        "DEFAULT",
    ]
    assert rows == [["auto4-web-eth0-1a2b3", "4", "10.6.0.0/16", "2", "10", "false"]]


def test_ippool_wide_columns() -> None:
    headers, rows = table("SpiderIPPool", [pool_doc()], wide=True)
    assert headers[6:] == ["DISABLE", "NodeName", "MultusName", "APP-NAMESPACE"]
    # Lists print as JSON, as the API server's table convertor does for string columns.
    assert rows[0][6:] == ["false", '["node1","node2"]', '["kube-system/macvlan"]', "apps"]


def test_missing_values_print_empty() -> None:
    doc = pool_doc()
    del doc["status"]
    headers, rows = table("SpiderIPPool", [doc])
    assert rows[0][headers.index("ALLOCATED-IP-COUNT")] == ""
    assert table("SpiderIPPool", [{}])[1] == [["", "", "", "", "", ""]]


def test_subnet_and_reserved_columns() -> None:
    assert [h for h, _ in columns("SpiderSubnet", wide=True)] == [
        "NAME",
        "VERSION",
        "SUBNET",
        "ALLOCATED-IP-COUNT",
        "TOTAL-IP-COUNT",
    ]
    assert [h for h, _ in columns("SpiderReservedIP")] == ["NAME", "VERSION"]
    assert [h for h, _ in columns("SpiderCoordinator", wide=True)] == [
        "NAME",
        "MODE",
        "PODCIDRTYPE",
        "PHASE",
    ]


def test_endpoint_columns_show_the_first_interface() -> None:
    doc = {
        "metadata": {"name": "web-0", "namespace": "apps"},
        "status": {
            "current": {
                "node": "node-1",
                "ips": [
                    {
                        "interface": "eth0",
                        "ipv4": "10.6.0.5/16",
                        "ipv4Pool": "v4",
                        "ipv6": "fd00::5/64",
                        "ipv6Pool": "v6",
                    },
                    {"interface": "net1", "ipv4": "10.7.0.5/16"},
                ],
            }
        },
    }
    headers, rows = table("SpiderEndpoint", [doc], namespaces=True)
    assert headers == [
        "NAMESPACE",
        "NAME",
        "INTERFACE",
        "IPV4POOL",
        "IPV4",
        "IPV6POOL",
        "IPV6",
        "NODE",
    ]
    assert rows == [["apps", "web-0", "eth0", "v4", "10.6.0.5/16", "v6", "fd00::5/64", "node-1"]]
    doc["status"]["current"]["ips"] = []  # type: ignore[index]
    assert table("SpiderEndpoint", [doc])[1] == [["web-0", "", "", "", "", "", "node-1"]]


def test_unknown_kind_has_no_columns() -> None:
    with pytest.raises(ValueError, match="unknown kind 'Pod'"):
        columns("Pod", wide=False)


def test_ages_and_namespaces_with_the_time_now() -> None:
    doc = {
        "metadata": {
            "name": "net1",
            "namespace": "apps",
            "creationTimestamp": "2026-05-01T08:40:00Z",
        },
        "spec": {"cniType": "macvlan", "enableCoordinator": True, "disableIPAM": False},
    }
    undated = {"metadata": {"name": "net2", "namespace": "apps"}, "spec": {"cniType": "custom"}}
    assert table("SpiderMultusConfig", [doc, undated], True, namespaces=True, now=NOW) == (
        ["NAMESPACE", "NAME", "CNI-TYPE", "COORDINATOR", "DISABLE-IPAM", "AGE"],
        [
            ["apps", "net1", "macvlan", "true", "false", "3h20m"],
            ["apps", "net2", "custom", "", "", "<unknown>"],
        ],
    )
    # A cluster-scoped kind gets no NAMESPACE column, even across namespaces.
    assert table("SpiderReservedIP", [{"metadata": {"name": "r"}}], namespaces=True, now=NOW)[
        0
    ] == ["NAME", "VERSION", "AGE"]


def test_columns_come_from_the_crd_documents() -> None:
    crd = {
        "spec": {
            "group": "example.io",
            "scope": "Namespaced",
            "names": {"kind": "Thing", "plural": "things"},
            "versions": [
                {
                    "served": True,
                    "additionalPrinterColumns": [
                        {"name": "K", "type": "string", "jsonPath": ".spec.m['a\\.b/c']"},
                        {"name": "X", "type": "integer", "jsonPath": ".s.l[1]", "priority": 1},
                    ],
                }
            ],
        }
    }
    doc = {"metadata": {"name": "t"}, "spec": {"m": {"a.b/c": "v"}}, "s": {"l": [1, 2]}}
    assert Printer([crd]).table("Thing", [doc], wide=True) == (
        ["NAME", "K", "X"],
        [["t", "v", "2"]],
    )
    assert Printer([crd]).table("Thing", [doc]) == (["NAME", "K"], [["t", "v"]])


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        (".spec.ipVersion", ("spec", "ipVersion")),
        ("{.status.current.ips[0].ipv4}", ("status", "current", "ips", 0, "ipv4")),
        (".spec.m['ipam\\.spidernet\\.io/app']", ("spec", "m", "ipam.spidernet.io/app")),
    ],
)
def test_parse_json_path(text: str, steps: tuple[object, ...]) -> None:
    assert parse_json_path(text) == steps


@pytest.mark.parametrize("text", ["", ".a[*]", ".a[?(@.b)]", "spec"])
def test_parse_json_path_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="JSONPath"):
        parse_json_path(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (740 * 86400, "2y10d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_human_duration_is_kubectls(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize("stamp", [None, "", "yesterday", "2026-05-01T08:00:00"])
def test_age_of_a_missing_or_unreadable_time(stamp: object) -> None:
    assert format_age(stamp, NOW) == "<unknown>"


def test_widths_are_the_longest_cells() -> None:
    assert widths(["NAME", "AGE"], [["a-long-name", "5m"], ["b", "10d"]]) == [11, 3]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (4, "4"),
        ("x", "x"),
        ([1, "a"], '[1,"a"]'),
        ({"a": 1}, '{"a":1}'),
    ],
)
def test_format_cell(value: object, text: str) -> None:
    assert format_cell(value) == text


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("pools", "SpiderIPPool"),
        ("ippools", "SpiderIPPool"),
        ("ippool", "SpiderIPPool"),
        ("sp", "SpiderIPPool"),
        ("SpiderIPPool", "SpiderIPPool"),
        ("spiderippools.spiderpool.spidernet.io", "SpiderIPPool"),
        ("subnets", "SpiderSubnet"),
        ("ss", "SpiderSubnet"),
        ("reservedips", "SpiderReservedIP"),
        ("sr", "SpiderReservedIP"),
        ("endpoints", "SpiderEndpoint"),
        ("SE", "SpiderEndpoint"),
        ("coordinators", "SpiderCoordinator"),
        ("scc", "SpiderCoordinator"),
        ("smc", "SpiderMultusConfig"),
        ("spidermultusconfigs", "SpiderMultusConfig"),
    ],
)
def test_resolve_kind(name: str, kind: str) -> None:
    assert resolve_kind(name) == kind


def test_resolve_kind_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown resource type 'pods'") as info:
        resolve_kind("pods")
    listed = set(re.findall(r"[a-z]+", str(info.value).split("use one of:")[1]))
    assert {
        "pools",
        "ippools",
        "ippool",
        "sp",
        "subnets",
        "ss",
        "reservedips",
        "sr",
        "endpoints",
        "se",
        "coordinators",
        "scc",
    } <= listed
