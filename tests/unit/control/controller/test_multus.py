"""SpiderMultusConfig -> NetworkAttachmentDefinition: the pure renderer and the reconciler
against an in-memory API (tests/k8s/test_multus.py runs it on a real API server)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest

from spidernet.cni.config import parse_conflist
from spidernet.control.controller.multus import (
    MultusConfigError,
    reconcile_multus,
    render_config,
    render_nad,
)
from spidernet.control.store.base import Conflict
from spidernet.netconf.coordinator.config import parse_coordinator
from spidernet.netconf.ifacer.config import parse_ifacer
from spidernet.node.ipam.conf import parse_ipam

Doc = dict[str, Any]


def smc(
    spec: Mapping[str, Any],
    name: str = "net1",
    annotations: Mapping[str, str] | None = None,
    uid: str = "uid-1",
) -> Doc:
    meta: Doc = {"name": name, "namespace": "ns1", "uid": uid}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderMultusConfig",
        "metadata": meta,
        "spec": dict(spec),
    }


def plugins(doc: Doc) -> list[Doc]:
    conf = json.loads(render_nad(doc)["spec"]["config"])
    out: list[Doc] = conf["plugins"]
    return out


MACVLAN = {"cniType": "macvlan", "macvlan": {"master": ["eth0"], "ippools": {"ipv4": ["v4"]}}}


def test_macvlan_single_master() -> None:
    nad = render_nad(smc(MACVLAN))
    assert nad["apiVersion"] == "k8s.cni.cncf.io/v1"
    assert nad["kind"] == "NetworkAttachmentDefinition"
    assert nad["metadata"]["name"] == "net1"
    assert nad["metadata"]["namespace"] == "ns1"
    assert nad["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderMultusConfig",
            "name": "net1",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    conf = json.loads(nad["spec"]["config"])
    assert conf == {
        "cniVersion": "0.3.1",
        "name": "net1",
        "plugins": [
            {
                "type": "macvlan",
                "master": "eth0",
                "mode": "bridge",
                "ipam": {"type": "spidernet-ipam", "default_ipv4_ippool": ["v4"]},
            },
            {"type": "spidernet-coordinator", "mode": "auto"},
        ],
    }


def test_macvlan_bond_and_vlan_puts_ifacer_first() -> None:
    spec = {
        "cniType": "macvlan",
        "macvlan": {
            "master": ["eth0", "eth1"],
            "vlanID": 100,
            "mtu": 1400,
            "bond": {"name": "bond0", "mode": 1, "options": "miimon=100"},
            "ippools": {"ipv4": ["v4"], "ipv6": ["v6"]},
        },
        "coordinator": {"mode": "underlay", "podDefaultRouteNIC": "net1", "txQueueLen": 1000},
    }
    ifacer, main, coordinator = plugins(smc(spec))
    assert ifacer == {
        "type": "spidernet-ifacer",
        "interfaces": ["eth0", "eth1"],
        "vlanID": 100,
        "bond": {"name": "bond0", "mode": 1, "options": "miimon=100"},
    }
    assert parse_ifacer(ifacer).master == main["master"] == "bond0.100"
    assert main["mtu"] == 1400
    ipam = parse_ipam(main["ipam"])
    assert ipam.default_ipv4_ippool == ("v4",)
    assert ipam.default_ipv6_ippool == ("v6",)
    assert coordinator == {
        "type": "spidernet-coordinator",
        "mode": "underlay",
        "podDefaultRouteNic": "net1",
        "txQueueLen": 1000,
    }
    assert parse_coordinator(coordinator).pod_default_route_nic == "net1"


def test_single_master_with_vlan_makes_the_vlan_link() -> None:
    spec = {"cniType": "macvlan", "macvlan": {"master": ["eth0"], "vlanID": 7}}
    ifacer, main, _ = plugins(smc(spec))
    assert ifacer == {"type": "spidernet-ifacer", "interfaces": ["eth0"], "vlanID": 7}
    assert main["master"] == "eth0.7"


def test_rendered_chain_parses_with_our_cni_config_parser() -> None:
    spec = {
        "cniType": "macvlan",
        "macvlan": {"master": ["eth0", "eth1"], "vlanID": 5, "bond": {"name": "b0", "mode": 4}},
    }
    conflist = parse_conflist(render_config(smc(spec)).encode())
    assert conflist.cni_version == "0.3.1"
    assert conflist.name == "net1"
    types = [p["type"] for p in conflist.plugins]
    assert types == ["spidernet-ifacer", "macvlan", "spidernet-coordinator"]


def test_ipvlan_has_no_mode() -> None:
    spec = {"cniType": "ipvlan", "ipvlan": {"master": ["eth0"]}}
    (main, _) = plugins(smc(spec))
    assert main == {"type": "ipvlan", "master": "eth0", "ipam": {"type": "spidernet-ipam"}}


def test_coordinator_off_and_ipam_disabled() -> None:
    spec = {**MACVLAN, "enableCoordinator": False, "disableIPAM": True}
    assert plugins(smc(spec)) == [{"type": "macvlan", "master": "eth0", "mode": "bridge"}]


def test_chain_plugins_go_before_the_coordinator() -> None:
    spec = {**MACVLAN, "chainCNIJsonData": ['{"type": "tuning", "sysctl": {"a": "1"}}']}
    types = [p["type"] for p in plugins(smc(spec))]
    assert types == ["macvlan", "tuning", "spidernet-coordinator"]


def test_custom_is_passed_as_is() -> None:
    custom = '{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "bridge"}]}'
    nad = render_nad(smc({"cniType": "custom", "customCNI": custom}))
    assert nad["spec"]["config"] == custom


def test_annotations_name_the_nad_version_and_network() -> None:
    annotations = {
        "multus.spidernet.io/cr-name": "other",
        "multus.spidernet.io/cni-version": "1.0.0",
        "cni.spidernet.io/cniconfig-name": "netname",
    }
    nad = render_nad(smc(MACVLAN, annotations=annotations))
    assert nad["metadata"]["name"] == "other"
    assert nad["metadata"]["annotations"] == annotations
    conf = json.loads(nad["spec"]["config"])
    assert (conf["cniVersion"], conf["name"]) == ("1.0.0", "netname")


def test_cr_name_alone_names_the_network_too() -> None:
    nad = render_nad(smc(MACVLAN, annotations={"multus.spidernet.io/cr-name": "other"}))
    assert json.loads(nad["spec"]["config"])["name"] == "other"


def test_sriov_follows_spiderpool() -> None:
    spec = {
        "cniType": "sriov",
        "sriov": {"resourceName": "intel/sriov", "vlanID": 3, "mtu": 9000, "rdmaIsolation": True},
    }
    nad = render_nad(smc(spec))
    assert nad["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/resourceName": "intel/sriov"}
    types = [p["type"] for p in json.loads(nad["spec"]["config"])["plugins"]]
    assert types == ["sriov", "rdma", "spidernet-coordinator", "tuning"]


def test_ovs_and_vlan() -> None:
    ovs = {"cniType": "ovs", "ovs": {"bridge": "br1", "deviceID": "0000:01:00.1"}}
    nad = render_nad(smc(ovs))
    assert nad["metadata"]["annotations"] == {
        "k8s.v1.cni.cncf.io/resourceName": "ovs-cni.network.kubevirt.io/br1"
    }
    vlan = {"cniType": "vlan", "vlan": {"master": ["eth0"], "vlanID": 9}}
    assert plugins(smc(vlan))[0] == {
        "type": "vlan",
        "master": "eth0",
        "vlanId": 9,
        "ipam": {"type": "spidernet-ipam"},
    }


@pytest.mark.parametrize("cni_type", ["macvlan", "sriov"])
def test_match_master_subnet_reaches_the_ipam_config(cni_type: str) -> None:
    sub: Doc = {"ippools": {"ipv4": ["rail0", "rail1"], "matchMasterSubnet": True}}
    if cni_type == "macvlan":
        sub["master"] = ["rail0"]
    conf = json.loads(render_nad(smc({"cniType": cni_type, cni_type: sub}))["spec"]["config"])
    assert conf["plugins"][0]["ipam"] == {
        "type": "spidernet-ipam",
        "default_ipv4_ippool": ["rail0", "rail1"],
        "match_master_subnet": True,
    }


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({**MACVLAN, "chainCNIJsonData": ["{not json"]}, "spec.chainCNIJsonData[0]"),
        ({**MACVLAN, "chainCNIJsonData": ['{"a": 1}']}, "spec.chainCNIJsonData[0]"),
        ({"cniType": "custom", "customCNI": "nope"}, "spec.customCNI"),
        ({"cniType": "custom"}, "spec.customCNI"),
        ({"cniType": "macvlan", "macvlan": {"master": ["a", "b"]}}, "spec.macvlan.bond"),
        ({"cniType": "macvlan"}, "spec.macvlan"),
        ({**MACVLAN, "ipvlan": {"master": ["eth0"]}}, "spec.ipvlan"),
        (
            {
                "cniType": "macvlan",
                "macvlan": {
                    "master": ["a", "b"],
                    "bond": {"name": "b", "mode": 1, "options": "x=1"},
                },
            },
            "spec.macvlan",
        ),
        (
            {"cniType": "macvlan", "macvlan": {"master": ["eth0123456789"], "vlanID": 4000}},
            "spec.macvlan",
        ),
        ({**MACVLAN, "coordinator": {"podMACPrefix": "zz"}}, "spec.coordinator"),
        (
            {"cniType": "ovs", "ovs": {"bridge": "br1", "ippools": {"matchMasterSubnet": True}}},
            "spec.ovs.ippools.matchMasterSubnet",
        ),
        (
            {"cniType": "sriov", "sriov": {"ippools": {"matchMasterSubnet": "yes"}}},
            "spec.sriov.ippools.matchMasterSubnet",
        ),
    ],
)
def test_errors_name_the_field(spec: Doc, field: str) -> None:
    with pytest.raises(MultusConfigError) as info:
        render_nad(smc(spec))
    assert info.value.field == field


def test_a_bad_cni_version_annotation_is_named() -> None:
    with pytest.raises(MultusConfigError, match=r"cni-version.*0\.2\.0"):
        render_nad(smc(MACVLAN, annotations={"multus.spidernet.io/cni-version": "0.2.0"}))


# -- the reconciler, on an in-memory API ----------------------------------------------------------


class FakeApi:
    def __init__(self) -> None:
        self.smcs: list[Doc] = []
        self.nads: dict[tuple[str, str], Doc] = {}
        self.version = 0

    def list_multus_configs(self) -> list[Doc]:
        return copy.deepcopy(self.smcs)

    def list_nads(self) -> list[Doc]:
        return copy.deepcopy(list(self.nads.values()))

    def _put(self, doc: Mapping[str, Any]) -> None:
        self.version += 1
        body = copy.deepcopy(dict(doc))
        body["metadata"]["resourceVersion"] = str(self.version)
        body["metadata"].setdefault("uid", f"nad-{self.version}")
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self.nads[key] = body

    def create_nad(self, doc: Mapping[str, Any]) -> None:
        self._put(doc)

    def replace_nad(self, doc: Mapping[str, Any]) -> None:
        key = (doc["metadata"]["namespace"], doc["metadata"]["name"])
        current = self.nads[key]["metadata"]
        if doc["metadata"]["resourceVersion"] != current["resourceVersion"]:
            raise Conflict(None, "stale")
        self._put({**doc, "metadata": {**doc["metadata"], "uid": current["uid"]}})

    def delete_nad(self, namespace: str, name: str, uid: str) -> None:
        assert self.nads[(namespace, name)]["metadata"]["uid"] == uid
        del self.nads[(namespace, name)]


def test_reconcile_creates_updates_and_deletes() -> None:
    api = FakeApi()
    api.smcs.append(smc(MACVLAN))
    assert reconcile_multus(api) == ["created NetworkAttachmentDefinition ns1/net1"]
    assert reconcile_multus(api) == []
    assert api.nads["ns1", "net1"]["spec"] == render_nad(api.smcs[0])["spec"]
    api.smcs[0]["spec"]["enableCoordinator"] = False
    assert reconcile_multus(api) == ["updated NetworkAttachmentDefinition ns1/net1"]
    assert "coordinator" not in api.nads["ns1", "net1"]["spec"]["config"]
    api.smcs.clear()
    assert reconcile_multus(api) == ["deleted NetworkAttachmentDefinition ns1/net1"]
    assert api.nads == {}


def test_reconcile_leaves_a_foreign_nad_alone() -> None:
    api = FakeApi()
    foreign = {"metadata": {"namespace": "ns1", "name": "net1"}, "spec": {"config": "{}"}}
    api.create_nad(foreign)
    other = {"metadata": {"namespace": "ns1", "name": "mine"}, "spec": {"config": "{}"}}
    api.create_nad(other)
    api.smcs.append(smc(MACVLAN))
    (line,) = reconcile_multus(api)
    assert line.startswith("conflict SpiderMultusConfig ns1/net1")
    assert api.nads["ns1", "net1"]["spec"]["config"] == "{}"
    assert ("ns1", "mine") in api.nads


def test_reconcile_takes_over_from_a_gone_owner_and_renames() -> None:
    api = FakeApi()
    api.smcs.append(smc(MACVLAN, uid="old"))
    reconcile_multus(api)
    api.smcs[0] = smc(MACVLAN, uid="new")  # deleted and re-created between two passes
    assert reconcile_multus(api) == ["updated NetworkAttachmentDefinition ns1/net1"]
    owner = api.nads["ns1", "net1"]["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "new"
    api.smcs[0] = smc(MACVLAN, uid="new", annotations={"multus.spidernet.io/cr-name": "n2"})
    assert reconcile_multus(api) == [
        "created NetworkAttachmentDefinition ns1/n2",
        "deleted NetworkAttachmentDefinition ns1/net1",
    ]


def test_reconcile_reports_an_invalid_smc_and_keeps_its_nad() -> None:
    api = FakeApi()
    api.smcs.append(smc(MACVLAN))
    reconcile_multus(api)
    api.smcs[0]["spec"]["chainCNIJsonData"] = ["{"]
    (line,) = reconcile_multus(api)
    assert line.startswith("invalid SpiderMultusConfig ns1/net1: spec.chainCNIJsonData[0]")
    assert ("ns1", "net1") in api.nads
