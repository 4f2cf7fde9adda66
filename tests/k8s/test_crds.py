"""deploy/chart/crds on a real kube-apiserver: the six CRDs install, take Spiderpool's documented
objects and the documents spidernet's model writes, refuse what the model refuses (422, naming
the field), default what the model defaults, serve the status subresource, the printer
columns and the short names.

The CRDs are installed once for this module (created, or replaced when present); every test
uses names of its own, so cluster-scoped objects never collide.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control import crds
from spidernet.control.model import printing
from spidernet.control.model.documents import load_documents, parse, to_document
from spidernet.control.model.errors import ValidationError
from spidernet.control.model.resources import API_VERSION, KINDS

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "deploy" / "chart" / "crds"
EXAMPLES = ROOT / "tests" / "unit" / "control" / "model" / "data"
GROUP, VERSION = API_VERSION.split("/")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
ESTABLISHED_TIMEOUT_S = 30.0

# kind -> (plural, namespaced)
RESOURCES = {
    "SpiderIPPool": ("spiderippools", False),
    "SpiderSubnet": ("spidersubnets", False),
    "SpiderReservedIP": ("spiderreservedips", False),
    "SpiderEndpoint": ("spiderendpoints", True),
    "SpiderCoordinator": ("spidercoordinators", False),
    "SpiderMultusConfig": ("spidermultusconfigs", True),
}
SHORT_NAMES = {
    "spiderippools": ["sp"],
    "spidersubnets": ["ss"],
    "spiderreservedips": ["sr"],
    "spiderendpoints": ["se"],
    "spidercoordinators": ["scc"],
    "spidermultusconfigs": ["smc"],
}
WITH_STATUS = {"SpiderIPPool", "SpiderSubnet", "SpiderCoordinator"}

Doc = dict[str, Any]


def _dict(value: object) -> Doc:
    assert isinstance(value, dict)
    return value


def _crd_files() -> list[Doc]:
    """Spiderpool's six (not the Kubernetes store's internal CRD: test_kube_store.py)."""
    docs = [_dict(yaml.safe_load(p.read_text())) for p in sorted(CRDS.glob("*.yaml"))]
    return [d for d in docs if d["spec"]["group"] == GROUP]


def _wait_established(ext: client.ApiextensionsV1Api, name: str) -> dict[str, str]:
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    conditions: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = ext.read_custom_resource_definition(name).status
        found = status.conditions if status is not None else None
        conditions = {c.type: c.status for c in found or []}
        if conditions.get("Established") == "True":
            return conditions
        time.sleep(0.1)
    pytest.fail(f"CRD {name} not Established in {ESTABLISHED_TIMEOUT_S:.0f}s: {conditions}")


@pytest.fixture(scope="module")
def spiderpool_crds(k8s_api: client.ApiClient) -> dict[str, dict[str, str]]:
    """Install deploy/chart/crds; CRD name -> its conditions once Established."""
    ext = client.ApiextensionsV1Api(k8s_api)
    names = []
    for crd in _crd_files():
        name = crd["metadata"]["name"]
        body = client.V1CustomResourceDefinition.from_dict(crd)
        # The typed model must carry every schema extension of the file (CEL rules, list
        # types); sanitize_for_serialization has no annotations.
        assert body is not None
        assert k8s_api.sanitize_for_serialization(body) == crd  # type: ignore[no-untyped-call]
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as e:
            if e.status != 409:
                raise
            # Installed by an earlier module of this session: replace it with this file.
            current = ext.read_custom_resource_definition(name)
            assert current.metadata is not None
            assert body.metadata is not None
            body.metadata.resource_version = current.metadata.resource_version
            ext.replace_custom_resource_definition(name, body)
        names.append(name)
    return {name: _wait_established(ext, name) for name in names}


@pytest.fixture
def namespace(k8s_api: client.ApiClient) -> str:
    """A fresh namespace (left behind; the cluster goes with the session)."""
    name = f"crd-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(k8s_api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:6]


class Spider:
    """Create, read and patch Spiderpool objects, namespaced or not, by kind."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, doc: Doc, *, strict: bool = True) -> Doc:
        plural, namespaced = RESOURCES[doc["kind"]]
        validation = "Strict" if strict else None
        if namespaced:
            return _dict(
                self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, doc, field_validation=validation
                )
            )
        return _dict(
            self.custom.create_cluster_custom_object(
                GROUP, VERSION, plural, doc, field_validation=validation
            )
        )

    def get(self, kind: str, name: str) -> Doc:
        plural, namespaced = RESOURCES[kind]
        if namespaced:
            return _dict(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, name
                )
            )
        return _dict(self.custom.get_cluster_custom_object(GROUP, VERSION, plural, name))

    def patch(self, kind: str, name: str, body: Doc, *, status: bool = False) -> Doc:
        """A JSON merge patch of the object, or of its status subresource."""
        plural, namespaced = RESOURCES[kind]
        assert not namespaced
        call = (
            self.custom.patch_cluster_custom_object_status
            if status
            else self.custom.patch_cluster_custom_object
        )
        return _dict(
            call(GROUP, VERSION, plural, name, body, _content_type="application/merge-patch+json")
        )

    def refused(self, doc: Doc, code: int = 422, *, strict: bool = True) -> Doc:
        """The Status the API server answers a create with; fails if it is accepted."""
        with pytest.raises(ApiException) as err:
            self.create(doc, strict=strict)
        assert err.value.status == code, err.value.body
        status: Doc = json.loads(err.value.body or "{}")
        return status

    def raw(self, path: str, accept: str = "application/json") -> tuple[int, Doc]:
        """GET a path of the API server; (HTTP status, decoded body)."""
        method, url, headers, _, _ = self.api.param_serialize(
            "GET", path, header_params={"Accept": accept}
        )
        response = self.api.call_api(method, url, header_params=headers)
        payload: bytes = response.response.data  # (the urllib3 response)
        return response.status, _dict(json.loads(payload or b"{}"))

    def path(self, kind: str) -> str:
        plural, namespaced = RESOURCES[kind]
        where = f"namespaces/{self.namespace}/" if namespaced else ""
        return f"/apis/{GROUP}/{VERSION}/{where}{plural}"


@pytest.fixture
def spider(
    k8s_api: client.ApiClient, spiderpool_crds: dict[str, dict[str, str]], namespace: str
) -> Spider:
    return Spider(k8s_api, namespace)


def doc(kind: str, name: str, body: Doc | None = None, *, key: str = "spec") -> Doc:
    out: Doc = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}}
    if body is not None:
        out[key] = body
    return out


def model_fields(document: Doc) -> list[str]:
    """The fields spidernet's model refuses `document` for ([] when it accepts it)."""
    try:
        parse(document)
    except ValidationError as err:
        return [e.field for e in getattr(err, "errors", [err])]
    return []


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


def _placed(document: Doc, suffix: str, namespace: str) -> Doc:
    """A copy named apart from other tests' objects, namespaced objects in `namespace`."""
    out = _dict(json.loads(json.dumps(document)))
    out["metadata"]["name"] = f"{out['metadata']['name']}-{suffix}"
    if RESOURCES[out["kind"]][1]:
        out["metadata"]["namespace"] = namespace
    return out


@pytest.mark.parametrize("form", ["as written", "as the model writes it"])
def test_spiderpool_documentation_examples_are_accepted(
    spider: Spider, suffix: str, form: str
) -> None:
    examples = load_documents((EXAMPLES / "spiderpool_examples.yaml").read_text())
    assert {d["kind"] for d in examples} == set(KINDS)
    for example in examples:
        written = example if form == "as written" else to_document(parse(example))
        sent = _placed(written, suffix, spider.namespace)
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


def _endpoint(name: str, ips: list[Doc]) -> Doc:
    status = {
        "current": {"uid": str(uuid.uuid4()), "node": "worker-1", "ips": ips},
        "ownerControllerType": "Deployment",
        "ownerControllerName": "web",
    }
    return doc("SpiderEndpoint", name, status, key="status")


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
    sent = _endpoint("web-7d9f-abcde", ips)
    stored = spider.create(sent)
    assert stored["status"]["current"]["ips"][0]["vlan"] == 0  # defaulted
    assert stored["status"]["current"]["ips"][1]["vlan"] == 100
    assert parse(stored) == parse(sent | {"metadata": stored["metadata"]})
    # No status subresource: the status is the object's content.
    code, _ = spider.raw(f"{spider.path('SpiderEndpoint')}/web-7d9f-abcde/status")
    assert code == 404


# -- refused documents -------------------------------------------------------------------------

POOL = {"subnet": "10.30.0.0/16", "ips": ["10.30.0.10-10.30.0.20"]}
ENDPOINT_IP: Doc = {"interface": "eth0", "ipv4": "10.30.0.10/16"}

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
        return _endpoint(name, body["ips"])
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
        sent = _placed(example, suffix, spider.namespace)
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

    spider.create(_endpoint("web-1", [ENDPOINT_IP | {"ipv4Pool": "p4"}]))
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
        (version,) = _dict(yaml.safe_load(_crd_file(kind).read_text()))["spec"]["versions"]
        assert headers[1:] == [c["name"] for c in version["additionalPrinterColumns"]]


def _crd_file(kind: str) -> Path:
    return CRDS / f"{GROUP}_{RESOURCES[kind][0]}.yaml"
