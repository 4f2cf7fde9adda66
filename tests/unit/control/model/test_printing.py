"""`kubectl get` columns (Spiderpool's printcolumn markers) and CLI kind names."""

from __future__ import annotations

import re
from typing import Any

import pytest

from spidernet.control.model.documents import load_documents, parse, to_document
from spidernet.control.model.printing import columns, format_cell, resolve_kind, table

API = "spiderpool.spidernet.io/v2beta1"


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
    assert [h for h, _ in columns("SpiderCoordinator", wide=True)] == ["NAME"]


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
