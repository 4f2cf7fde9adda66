"""deploy/chart/crds on a real kube-apiserver refuses what spidernet's model refuses: each
invalid object with 422 naming the field the model names, Spiderpool's documented mistakes,
and unknown or retired fields (400 with kubectl's fieldValidation=Strict).

The CRDs are installed once for this module (replaced: test_crds.py installed them first
when both run); every test uses names of its own, so cluster-scoped objects never collide.
"""

from __future__ import annotations

import json
import re

import pytest
from kubernetes.client.exceptions import ApiException

from spidernet.control.model.documents import load_documents
from spidernet.testbed.spidercrds import (
    ENDPOINT_IP,
    EXAMPLES,
    POOL,
    Doc,
    Spider,
    doc,
    endpoint,
    model_fields,
    placed,
)

# -- refused documents -------------------------------------------------------------------------

# (kind, body, field the API server names, words of its message, the model's field or None
# when the model does not read the kind; "" when it names the same field)
INVALID: list[tuple[str, Doc, str, str, str | None]] = [
    ("SpiderIPPool", POOL | {"ipVersion": 5}, "spec.ipVersion", "Unsupported value: 5", ""),
    ("SpiderIPPool", POOL | {"ipVersion": "4"}, "spec.ipVersion", "must be of type integer", ""),
    ("SpiderIPPool", {"ips": ["10.30.0.10"]}, "spec.subnet", "Required value", ""),
    ("SpiderIPPool", POOL | {"ipVersion": 6}, "spec.ipVersion", "disagrees", ""),
    ("SpiderIPPool", POOL | {"subnet": "10.30.0.1/16"}, "spec.subnet", "not a canonical", ""),
    ("SpiderIPPool", POOL | {"gateway": "10.31.0.1"}, "spec.gateway", "outside spec.subnet", ""),
    ("SpiderIPPool", POOL | {"ips": ["10.30.0.0/28"]}, "spec.ips[0]", "should match", ""),
    (
        "SpiderIPPool",
        POOL | {"routes": [{"dst": "0.0.0.0/0", "gw": "10.30.0.1"}]},
        "spec.routes[0].dst",
        "default route",
        "",
    ),
    ("SpiderIPPool", POOL | {"podAffinity": {}}, "spec.podAffinity", "empty selector", ""),
    (
        "SpiderIPPool",
        POOL | {"nodeAffinity": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        "spec.nodeAffinity.matchExpressions[0].values",
        "must be given when the operator is In",
        "",
    ),
    ("SpiderSubnet", {"gateway": "10.30.0.1"}, "spec.subnet", "Required value", ""),
    ("SpiderReservedIP", {"ips": []}, "spec.ips", "at least 1 items", ""),
    ("SpiderCoordinator", {"mode": "bogus"}, "spec.mode", 'Unsupported value: "bogus"', ""),
    ("SpiderCoordinator", {"podCIDRType": "flannel"}, "spec.podCIDRType", "Unsupported", ""),
    ("SpiderCoordinator", {"podMACPrefix": "0b:11"}, "spec.podMACPrefix", "should match", ""),
    ("SpiderCoordinator", {"podMACPrefix": "0a1b"}, "spec.podMACPrefix", "should match", ""),
    ("SpiderCoordinator", {"podRPFilter": 3}, "spec.podRPFilter", "less than or equal to 2", ""),
    ("SpiderCoordinator", {"hostRuleTable": "500"}, "spec.hostRuleTable", "type integer", ""),
    ("SpiderCoordinator", {"hostRuleTable": 254}, "spec.hostRuleTable", "the kernel owns", ""),
    ("SpiderCoordinator", {"txQueueLen": -1}, "spec.txQueueLen", "greater than or equal", ""),
    ("SpiderCoordinator", {"vethMTU": 0}, "spec.vethMTU", "greater than or equal to 1", ""),
    ("SpiderCoordinator", {"vethLinkAddress": "nope"}, "spec.vethLinkAddress", "not an IP", ""),
    ("SpiderCoordinator", {"hijackCIDR": ["10.0.0.0/33"]}, "spec.hijackCIDR[0]", "CIDR", ""),
    (
        "SpiderCoordinator",
        {"policyRoutes": [{"dst": "10.10.0.0/16", "gw": "fd00::1"}]},
        "spec.policyRoutes[0]",
        "same IP family",
        # The model names the list: the coordinator's check says "entry 0: ...".
        "spec.policyRoutes",
    ),
    (
        "SpiderMultusConfig",
        {"cniType": "macvlan", "macvlan": {"master": ["ens192"], "vlanID": 5000}},
        "spec.macvlan.vlanID",
        "less than or equal to 4094",
        None,
    ),
    ("SpiderMultusConfig", {"cniType": "bridge"}, "spec.cniType", "Unsupported value", None),
    (
        "SpiderMultusConfig",
        {"cniType": "ipvlan", "macvlan": {"master": ["ens192"]}},
        "spec.macvlan",
        "only allowed when cniType is macvlan",
        None,
    ),
    (
        "SpiderMultusConfig",
        {"cniType": "macvlan", "macvlan": {"master": ["ens192", "ens224"]}},
        "spec.macvlan.bond",
        "required with two or more masters",
        None,
    ),
    (
        "SpiderMultusConfig",
        {"cniType": "vlan", "vlan": {"master": ["ens192"]}},
        "spec.vlan.vlanID",
        "required when vlanMode is manual",
        None,
    ),
    (
        "SpiderMultusConfig",
        {
            "cniType": "sriov",
            "sriov": {"resourceName": "r", "minTxRateMbps": 9, "maxTxRateMbps": 1},
        },
        "spec.sriov.minTxRateMbps",
        "must not exceed maxTxRateMbps",
        None,
    ),
    (
        "SpiderMultusConfig",
        {"coordinator": {"podRPFilter": 3}},
        "spec.coordinator.podRPFilter",
        "less than or equal to 2",
        None,
    ),
    (
        "SpiderEndpoint",
        {"ips": [ENDPOINT_IP | {"vlan": 5000}]},
        "status.current.ips[0].vlan",
        "less than or equal to 4094",
        "",
    ),
    (
        "SpiderEndpoint",
        {"ips": [ENDPOINT_IP, ENDPOINT_IP | {"ipv4": "10.30.0.11/16"}]},
        "status.current.ips[1]",
        "Duplicate value",
        "status.current.ips[1].interface",
    ),
    (
        "SpiderEndpoint",
        {"ips": [ENDPOINT_IP | {"ipv4": "10.30.0.10"}]},
        "status.current.ips[0].ipv4",
        "prefix length",
        "",
    ),
    (
        "SpiderEndpoint",
        {"ips": [ENDPOINT_IP | {"mac": "0a:1b:ac:14:0a"}]},
        "status.current.ips[0].mac",
        "should match",
        "",
    ),
]


def _invalid_doc(kind: str, body: Doc, name: str) -> Doc:
    if kind == "SpiderEndpoint":
        return endpoint(name, body["ips"])
    return doc(kind, name, body)


@pytest.mark.parametrize(
    ("kind", "body", "field", "words", "model_field"),
    [pytest.param(*case, id=f"{case[0]}:{case[2]}:{case[3]}") for case in INVALID],
)
def test_invalid_objects_are_refused_naming_the_field(
    spider: Spider,
    suffix: str,
    kind: str,
    body: Doc,
    field: str,
    words: str,
    model_field: str | None,
) -> None:
    sent = _invalid_doc(kind, body, f"bad-{suffix}")
    status = spider.refused(sent)
    assert status["reason"] == "Invalid"
    causes = [(c.get("field"), c["message"]) for c in status["details"]["causes"]]
    assert any(f == field and words in m for f, m in causes), status["message"]
    assert f"{field}: " in status["message"]
    code, _ = spider.raw(f"{spider.path(kind)}/bad-{suffix}")
    assert code == 404
    if model_field is not None:
        assert (model_field or field) in model_fields(sent)


def test_spiderpool_documentation_mistakes_are_refused_like_the_model_does(
    spider: Spider, suffix: str
) -> None:
    """Spiderpool's documentation examples that Spiderpool itself refuses: the API server
    (with kubectl's fieldValidation=Strict) refuses each, for fields the model names too."""
    examples = load_documents((EXAMPLES / "spiderpool_invalid_examples.yaml").read_text())
    answers = set()
    for example in examples:
        sent = placed(example, suffix, spider.namespace)
        with pytest.raises(ApiException) as err:
            spider.create(sent)
        status: Doc = json.loads(err.value.body or "{}")
        answers.add(status["reason"])
        if status["reason"] == "BadRequest":  # strict decoding: unknown fields
            fields = set(re.findall(r'unknown field "([^"]+)"', status["message"]))
        else:
            fields = {c["field"] for c in status["details"]["causes"]}
        assert fields, status["message"]
        assert fields <= set(model_fields(sent)), status["message"]
    assert answers == {"BadRequest", "Invalid"}


def test_unknown_and_retired_fields(spider: Spider, suffix: str) -> None:
    # The VLAN left SpiderIPPool in Spiderpool v1.0; the model says so, the server drops it.
    sent = doc("SpiderIPPool", f"vlan-{suffix}", POOL | {"vlan": 100})
    status = spider.refused(sent, 400)  # kubectl's default, fieldValidation=Strict
    assert status["reason"] == "BadRequest"
    assert 'unknown field "spec.vlan"' in status["message"]
    assert model_fields(sent) == ["spec.vlan"]
    stored = spider.create(sent, strict=False)  # the server's default: warn, and prune
    assert "vlan" not in stored["spec"]
