"""deploy/chart/crds on a real kube-apiserver: the six CRDs install, take Spiderpool's documented
objects and the documents spidernet's model writes, refuse what the model refuses (422, naming
the field), default what the model defaults, serve the status subresource, the printer
columns and the short names.

The CRDs are installed once for this module (created, or replaced when present); every test
uses names of its own, so cluster-scoped objects never collide.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from spidernet.control import crds
from spidernet.control.model import printing
from spidernet.control.model.documents import load_documents, parse, to_document
from spidernet.control.model.resources import KINDS
from spidernet.testbed.spidercrds import (
    ENDPOINT_IP,
    ESTABLISHED_TIMEOUT_S,
    EXAMPLES,
    GROUP,
    POOL,
    RESOURCES,
    VERSION,
    Doc,
    Spider,
    as_dict,
    crd_file,
    doc,
    endpoint,
    model_fields,
    placed,
)

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
SHORT_NAMES = {
    "spiderippools": ["sp"],
    "spidersubnets": ["ss"],
    "spiderreservedips": ["sr"],
    "spiderendpoints": ["se"],
    "spidercoordinators": ["scc"],
    "spidermultusconfigs": ["smc"],
}
WITH_STATUS = {"SpiderIPPool", "SpiderSubnet", "SpiderCoordinator"}


# -- installation and discovery ----------------------------------------------------------------


def test_all_six_crds_are_established(spiderpool_crds: dict[str, dict[str, str]]) -> None:
    assert sorted(spiderpool_crds) == sorted(f"{p}.{GROUP}" for p, _ in RESOURCES.values())
    for name, conditions in spiderpool_crds.items():
        assert conditions["Established"] == "True", name
        assert conditions["NamesAccepted"] == "True", name


def test_discovery_serves_short_names_categories_and_subresources(spider: Spider) -> None:
    expected = {p for p, _ in RESOURCES.values()} | {
        f"{RESOURCES[k][0]}/status" for k in WITH_STATUS
    }
    # Discovery follows Established by a moment (the API server's discovery controller).
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    found: dict[str, Doc] = {}
    while set(found) != expected and time.monotonic() < deadline:
        code, listing = spider.raw(f"/apis/{GROUP}/{VERSION}")
        found = {r["name"]: r for r in listing.get("resources", [])} if code == 200 else {}
        time.sleep(0.1)
    assert set(found) == expected
    for kind, (plural, namespaced) in RESOURCES.items():
        resource = found[plural]
        assert resource["kind"] == kind
        assert resource["namespaced"] is namespaced
        assert resource["shortNames"] == SHORT_NAMES[plural]
        assert set(resource["categories"]) == {"spiderpool", "spidernet"}
        assert (f"{plural}/status" in found) is (kind in WITH_STATUS), plural


# -- accepted documents ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["as written", "as the model writes it"])
def test_spiderpool_documentation_examples_are_accepted(
    spider: Spider, suffix: str, form: str
) -> None:
    examples = load_documents((EXAMPLES / "spiderpool_examples.yaml").read_text())
    assert {d["kind"] for d in examples} == set(KINDS)
    for example in examples:
        written = example if form == "as written" else to_document(parse(example))
        sent = placed(written, suffix, spider.namespace)
        stored = spider.create(sent)
        # The stored object (with the server's defaults) means the same to the model.
        assert parse(stored) == parse(sent), sent["metadata"]["name"]
        assert spider.get(sent["kind"], sent["metadata"]["name"])["metadata"]["uid"]


def test_dual_stack_pools_subnet_and_reserved_ips(spider: Spider, suffix: str) -> None:
    affinity = {"matchLabels": {"app": "web"}}
    v4 = doc(
        "SpiderIPPool",
        f"web-v4-{suffix}",
        {
            "ipVersion": 4,
            "subnet": "172.20.0.0/16",
            "ips": ["172.20.10.1-172.20.10.100", "172.20.10.200"],
            "excludeIPs": ["172.20.10.50"],
            "gateway": "172.20.0.1",
            "routes": [{"dst": "10.96.0.0/12", "gw": "172.20.0.254"}],
            "podAffinity": affinity,
            "nodeName": ["worker-1"],
            "multusName": ["kube-system/macvlan-ens192"],
        },
    )
    v6 = doc(
        "SpiderIPPool",
        f"web-v6-{suffix}",
        {
            "ipVersion": 6,
            "subnet": "fd00:172:20::/64",
            "ips": ["fd00:172:20::10-fd00:172:20::ff"],
            "gateway": "fd00:172:20::1",
            "routes": [{"dst": "fd00:10:96::/112", "gw": "fd00:172:20::fe"}],
            "podAffinity": affinity,
        },
    )
    subnet = doc(
        "SpiderSubnet",
        f"subnet-v4-{suffix}",
        {
            "subnet": "172.20.0.0/16",
            "ips": ["172.20.10.1-172.20.10.254"],
            "gateway": "172.20.0.1",
            "routes": [{"dst": "10.96.0.0/12", "gw": "172.20.0.254"}],
        },
    )
    reserved = doc(
        "SpiderReservedIP", f"reserved-{suffix}", {"ipVersion": 4, "ips": ["172.20.10.99"]}
    )
    for sent in (v4, v6, subnet, reserved):
        assert model_fields(sent) == []
        stored = spider.create(sent)
        assert {k: stored["spec"][k] for k in sent["spec"]} == sent["spec"]
    assert spider.get("SpiderIPPool", f"web-v6-{suffix}")["spec"]["default"] is False


def test_coordinator_default_gets_every_default(spider: Spider, suffix: str) -> None:
    name = f"default-{suffix}"
    stored = spider.create(doc("SpiderCoordinator", name))  # no spec at all
    assert stored["spec"] == {
        "mode": "auto",
        "podCIDRType": "auto",
        "tunePodRoutes": True,
        "podDefaultRouteNIC": "",
        "hostRuleTable": 500,
        "podRPFilter": 0,
        "txQueueLen": 0,
        "vethLinkAddress": "",
        "vethMTU": 1500,
    }
    assert parse(stored) == parse(doc("SpiderCoordinator", name))
    tuned = spider.create(
        doc(
            "SpiderCoordinator",
            f"tuned-{suffix}",
            {
                "mode": "underlay",
                "podCIDRType": "calico",
                "hijackCIDR": ["169.254.0.0/16", "10.233.0.3"],
                "policyRoutes": [{"dst": "10.10.0.0/16", "gw": "172.18.0.1"}],
                "podMACPrefix": "0a:1b",
                "podRPFilter": -1,
                "hostRuleTable": 1000,
                "vethLinkAddress": "169.254.100.1",
                "vethMTU": 9000,
            },
        )
    )
    assert tuned["spec"]["hostRuleTable"] == 1000
    assert tuned["spec"]["tunePodRoutes"] is True
    assert model_fields(tuned) == []


def test_multus_config_macvlan_and_defaults(spider: Spider) -> None:
    macvlan = spider.create(
        doc(
            "SpiderMultusConfig",
            "macvlan-vlan100",
            {
                "cniType": "macvlan",
                "macvlan": {
                    "master": ["ens192"],
                    "vlanID": 100,
                    "ippools": {"ipv4": ["vlan100-v4"], "ipv6": ["vlan100-v6"]},
                },
                "coordinator": {"podDefaultRouteNIC": "net1"},
            },
        )
    )
    assert macvlan["spec"] == {
        "cniType": "macvlan",
        "macvlan": {
            "master": ["ens192"],
            "mtu": 0,
            "vlanID": 100,
            "ippools": {"ipv4": ["vlan100-v4"], "ipv6": ["vlan100-v6"]},
        },
        "enableCoordinator": True,
        "disableIPAM": False,
        # Unset coordinator fields stay unset: the SpiderCoordinator's values apply.
        "coordinator": {"podDefaultRouteNIC": "net1"},
    }
    bonded = spider.create(
        doc(
            "SpiderMultusConfig",
            "vlan-bond",
            {
                "cniType": "vlan",
                "vlan": {
                    "master": ["ens192", "ens224"],
                    "vlanID": 200,
                    "bond": {"name": "bond0", "mode": 1, "options": "primary=ens192"},
                },
            },
        )
    )
    assert bonded["spec"]["vlan"]["vlanMode"] == "manual"
    ib = spider.create(
        doc("SpiderMultusConfig", "ib", {"cniType": "ib-sriov", "ibsriov": {"resourceName": "r"}})
    )
    assert ib["spec"]["ibsriov"] == {
        "resourceName": "r",
        "linkState": "enable",
        "rdmaIsolation": True,
        "enableIbKubernetes": False,
    }
    # No spec: a custom network without a config.
    empty = spider.create(doc("SpiderMultusConfig", "empty"))
    assert empty["spec"] == {"cniType": "custom", "enableCoordinator": True, "disableIPAM": False}


def test_endpoint_keeps_its_status(spider: Spider) -> None:
    ips: list[Doc] = [
        {
            "interface": "eth0",
            "ipv4": "172.20.10.7/16",
            "ipv4Pool": "web-v4",
            "ipv4Gateway": "172.20.0.1",
            "ipv6": "fd00:172:20::17/64",
            "ipv6Pool": "web-v6",
            "routes": [{"dst": "10.96.0.0/12", "gw": "172.20.0.254"}],
        },
        {"interface": "net1", "ipv4": "10.6.0.9/16", "vlan": 100, "mac": "0a:1b:ac:14:0a:07"},
    ]
    sent = endpoint("web-7d9f-abcde", ips)
    stored = spider.create(sent)
    assert stored["status"]["current"]["ips"][0]["vlan"] == 0  # defaulted
    assert stored["status"]["current"]["ips"][1]["vlan"] == 100
    assert parse(stored) == parse(sent | {"metadata": stored["metadata"]})
    # No status subresource: the status is the object's content.
    code, _ = spider.raw(f"{spider.path('SpiderEndpoint')}/web-7d9f-abcde/status")
    assert code == 404


# -- updates, status, tables -------------------------------------------------------------------


def test_subnet_and_ip_version_cannot_change(spider: Spider, suffix: str) -> None:
    name = f"fixed-{suffix}"
    spider.create(doc("SpiderIPPool", name, POOL | {"ipVersion": 4}))
    changed = spider.patch("SpiderIPPool", name, {"spec": {"gateway": "10.30.0.1"}})
    assert changed["spec"]["gateway"] == "10.30.0.1"
    for spec, field in (
        ({"subnet": "10.30.0.0/24"}, "spec.subnet"),
        ({"ipVersion": 6, "subnet": "fd00::/64", "gateway": None, "ips": None}, "spec.ipVersion"),
    ):
        with pytest.raises(ApiException) as err:
            spider.patch("SpiderIPPool", name, {"spec": spec})
        assert err.value.status == 422
        assert f"{field}: Invalid value" in (err.value.body or "")
        assert "cannot change" in (err.value.body or "")
    reserved = f"reserved-{suffix}"
    spider.create(doc("SpiderReservedIP", reserved, {"ipVersion": 4, "ips": ["10.30.0.5"]}))
    with pytest.raises(ApiException) as err:
        spider.patch("SpiderReservedIP", reserved, {"spec": {"ipVersion": 6, "ips": ["fd00::5"]}})
    assert err.value.status == 422
    assert "spec.ipVersion" in (err.value.body or "")


def test_status_subresource(spider: Spider, suffix: str) -> None:
    name = f"counted-{suffix}"
    created = spider.create(doc("SpiderIPPool", name, POOL) | {"status": {"totalIPCount": 99}})
    assert "status" not in created  # a create ignores the status
    patched = spider.patch(
        "SpiderIPPool",
        name,
        {"status": {"totalIPCount": 11, "allocatedIPCount": 2}, "spec": {"default": True}},
        status=True,
    )
    assert patched["status"] == {"totalIPCount": 11, "allocatedIPCount": 2}
    assert patched["spec"]["default"] is False  # /status leaves the spec alone
    again = spider.patch(
        "SpiderIPPool", name, {"status": {"allocatedIPCount": 5}, "spec": {"default": True}}
    )
    assert again["status"] == {"totalIPCount": 11, "allocatedIPCount": 2}  # and vice versa
    assert again["spec"]["default"] is True
    with pytest.raises(ApiException) as err:
        spider.patch("SpiderIPPool", name, {"status": {"allocatedIPCount": -1}}, status=True)
    assert err.value.status == 422
    assert "status.allocatedIPCount" in (err.value.body or "")

    coordinator = f"synced-{suffix}"
    spider.create(doc("SpiderCoordinator", coordinator))
    synced = spider.patch(
        "SpiderCoordinator",
        coordinator,
        {"status": {"phase": "Synced", "overlayPodCIDR": ["10.233.64.0/18"]}},
        status=True,
    )
    assert synced["status"]["phase"] == "Synced"
    with pytest.raises(ApiException) as err:
        spider.patch("SpiderCoordinator", coordinator, {"status": {"phase": "Ready"}}, status=True)
    assert err.value.status == 422
    assert "status.phase" in (err.value.body or "")


def _table(spider: Spider, kind: str, name: str) -> tuple[list[str], list[Any]]:
    code, table = spider.raw(f"{spider.path(kind)}/{name}", accept=TABLE)
    assert code == 200
    assert table["kind"] == "Table"
    (row,) = table["rows"]
    return [c["name"] for c in table["columnDefinitions"]], row["cells"]


def test_printer_columns_are_served(spider: Spider, suffix: str) -> None:
    pool = doc(
        "SpiderIPPool",
        f"shown-{suffix}",
        POOL
        | {
            "default": True,
            "nodeName": ["worker-1", "worker-2"],
            "podAffinity": {"matchLabels": {"ipam.spidernet.io/app-namespace": "shop"}},
        },
    )
    spider.create(pool)
    spider.patch(
        "SpiderIPPool",
        f"shown-{suffix}",
        {"status": {"totalIPCount": 11, "allocatedIPCount": 3}},
        status=True,
    )
    headers, cells = _table(spider, "SpiderIPPool", f"shown-{suffix}")
    assert headers == [
        "Name",
        "VERSION",
        "SUBNET",
        "ALLOCATED-IP-COUNT",
        "TOTAL-IP-COUNT",
        "DEFAULT",
        "DISABLE",
        "NodeName",
        "MultusName",
        "APP-NAMESPACE",
        "AGE",
    ]
    # No ipVersion was given: without spidernet's controller the cell stays empty.
    assert cells[1:-1] == [
        None,
        "10.30.0.0/16",
        3,
        11,
        True,
        False,
        '["worker-1","worker-2"]',
        None,
        "shop",
    ]
    # The CLI's table of the same object has the same cells (but AGE).
    stored = spider.get("SpiderIPPool", f"shown-{suffix}")
    cli_headers, (cli_row,) = crds.printer().table("SpiderIPPool", [stored], wide=True)
    assert cli_headers[1:] == headers[1:-1]
    assert [printing.format_cell(c) for c in cells[:-1]] == cli_row

    spider.create(endpoint("web-1", [ENDPOINT_IP | {"ipv4Pool": "p4"}]))
    headers, cells = _table(spider, "SpiderEndpoint", "web-1")
    assert headers == ["Name", "INTERFACE", "IPV4POOL", "IPV4", "IPV6POOL", "IPV6", "NODE", "AGE"]
    assert cells[:-1] == ["web-1", "eth0", "p4", "10.30.0.10/16", None, None, "worker-1"]

    spider.create(doc("SpiderCoordinator", f"shown-{suffix}", {"podCIDRType": "calico"}))
    headers, cells = _table(spider, "SpiderCoordinator", f"shown-{suffix}")
    assert headers == ["Name", "MODE", "PODCIDRTYPE", "PHASE", "AGE"]
    assert cells[:-1] == [f"shown-{suffix}", "auto", "calico", None]

    spider.create(
        doc("SpiderMultusConfig", "shown", {"cniType": "sriov", "sriov": {"resourceName": "r"}})
    )
    headers, cells = _table(spider, "SpiderMultusConfig", "shown")
    assert headers == ["Name", "CNI-TYPE", "COORDINATOR", "DISABLE-IPAM", "AGE"]
    assert cells[:-1] == ["shown", "sriov", True, False]

    for kind, name in (("SpiderSubnet", f"s-{suffix}"), ("SpiderReservedIP", f"r-{suffix}")):
        body = POOL if kind == "SpiderSubnet" else {"ipVersion": 4, "ips": ["10.30.0.5"]}
        spider.create(doc(kind, name, body))
        headers, cells = _table(spider, kind, name)
        (version,) = as_dict(yaml.safe_load(crd_file(kind).read_text()))["spec"]["versions"]
        assert headers[1:] == [c["name"] for c in version["additionalPrinterColumns"]]
