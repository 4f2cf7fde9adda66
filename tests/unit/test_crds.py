"""deploy/chart/crds: six CustomResourceDefinitions that a kube-apiserver accepts, and that declare
what spidernet's model (control/model) reads, no more and no less.

No server here (tests/k8s/test_crds.py applies them to a real one). The field lists come from
the model's own tuples, the ones its decoder passes to `Fields`, so a field added to one side
only fails this test. The documents of the model's Spiderpool examples, as written and as the
model writes them back, are checked against the CRD schemas (without the CEL rules).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from spidernet.control import crds
from spidernet.control.model import labels, printing
from spidernet.control.model.decode import RETIRED, SPEC_FIELDS
from spidernet.control.model.decode_node import (
    COORDINATOR_FIELDS,
    CURRENT_FIELDS,
    DETAIL_FIELDS,
    ENDPOINT_STATUS_FIELDS,
)
from spidernet.control.model.documents import load_documents, parse, to_document
from spidernet.control.model.errors import ValidationError
from spidernet.control.model.fields import REQUIREMENT_FIELDS, ROUTE_FIELDS, SELECTOR_FIELDS
from spidernet.control.model.resources import (
    API_VERSION,
    COORDINATOR_MODES,
    KINDS,
    NAMESPACED_KINDS,
    POD_CIDR_TYPES,
    Coordinator,
    Endpoint,
    IPPool,
    ReservedIP,
    Subnet,
)

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "deploy" / "chart" / "crds"
EXAMPLES = ROOT / "tests" / "unit" / "control" / "model" / "data" / "spiderpool_examples.yaml"
GROUP, VERSION = API_VERSION.split("/")
MULTUS = "SpiderMultusConfig"  # not (yet) a kind of the model

# kind -> (plural, scope, short names, status subresource); Spiderpool's names.
EXPECTED = {
    IPPool.KIND: ("spiderippools", "Cluster", ["sp"], True),
    Subnet.KIND: ("spidersubnets", "Cluster", ["ss"], True),
    ReservedIP.KIND: ("spiderreservedips", "Cluster", ["sr"], False),
    # The status is a SpiderEndpoint's content, created in one request with the object.
    Endpoint.KIND: ("spiderendpoints", "Namespaced", ["se"], False),
    Coordinator.KIND: ("spidercoordinators", "Cluster", ["scc"], True),
    MULTUS: ("spidermultusconfigs", "Namespaced", ["smc"], False),
}
# Kinds whose printer columns are Spiderpool's, as `printing` (the CLI's `get`) shows them.
# Spiderpool declares none for SpiderCoordinator; its CRD here has its own (MODE, ...).
SPIDERPOOL_COLUMNS = (IPPool.KIND, Subnet.KIND, ReservedIP.KIND, Endpoint.KIND)

Schema = Mapping[str, Any]


def load_crds() -> dict[str, dict[str, Any]]:
    """kind -> the CRD document of its file, for Spiderpool's group (the Kubernetes store's
    internal CRD, internal.spidernet.io, is tested with the store: tests/k8s; the NAD CRD with the
    multus controller)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert len(docs) == 1, f"{path.name}: one CRD per file"
        crd = docs[0]
        assert isinstance(crd, dict)
        if crd["spec"]["group"] != GROUP:
            # The store's internal CRD (tests/k8s) and Multus' NAD CRD (tests/k8s/test_multus.py).
            assert path.name in (
                "internal.spidernet.io_spidernetobjects.yaml",
                "k8s.cni.cncf.io_network-attachment-definitions.yaml",
            )
            continue
        out[crd["spec"]["names"]["kind"]] = crd | {"_file": path.name}
    return out


CRD_DOCS = load_crds()


def root_schema(kind: str) -> dict[str, Any]:
    (version,) = CRD_DOCS[kind]["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def at(kind: str, *path: str) -> Schema:
    """The schema node at a path of property names; "[]" steps into array items."""
    node: Schema = root_schema(kind)
    for step in path:
        node = node["items"] if step == "[]" else node["properties"][step]
    return node


def props(node: Schema) -> set[str]:
    return set(node.get("properties", {}))


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node below (and including) `node`, with its path."""
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), Mapping):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


# -- the files ---------------------------------------------------------------------------------


def test_one_file_per_kind_named_after_the_crd() -> None:
    assert set(CRD_DOCS) == set(EXPECTED)
    assert set(KINDS) | {MULTUS} == set(EXPECTED)
    for kind, crd in CRD_DOCS.items():
        plural = EXPECTED[kind][0]
        assert crd["_file"] == f"{GROUP}_{plural}.yaml"
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["metadata"] == {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "spidernet"},
        }


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_group_version_names_scope(kind: str) -> None:
    plural, scope, short, status = EXPECTED[kind]
    spec = CRD_DOCS[kind]["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == scope
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": short,
        "categories": ["spiderpool", "spidernet"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert ("status" in version.get("subresources", {})) is status
    assert version.get("subresources", {}) in ({}, {"status": {}})


def test_names_and_scopes_agree_with_the_model() -> None:
    for kind in KINDS:
        plural, scope, short, _ = EXPECTED[kind]
        # The CLI's names for a kind (printing.CLI_NAMES) are kubectl's.
        assert {plural, kind.lower(), *short} <= set(printing.CLI_NAMES[kind])
        assert (scope == "Namespaced") is (kind in NAMESPACED_KINDS)


# -- structural schemas ------------------------------------------------------------------------

_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
# What a structural schema may not use (apiextensions' NewStructural and ValidateStructural).
_FORBIDDEN = {
    "$ref",
    "definitions",
    "dependencies",
    "id",
    "patternProperties",
    "additionalItems",
    "$schema",
}
_COMBINATORS = ("allOf", "anyOf", "oneOf", "not")


def structural_problems(root: Schema) -> list[str]:
    """Why `root` is not a structural schema (empty when it is)."""
    out = []
    if root.get("type") != "object":
        out.append("(root): type must be object")
    meta = root.get("properties", {}).get("metadata", {})
    if set(meta) - {"type"} or meta.get("type") != "object":
        out.append(".metadata: only `type: object` is allowed (no fields, no defaults)")
    if "default" in root:
        out.append("(root): no default at the root")
    for path, node in walk(root):
        where = path or "(root)"
        kind = node.get("type")
        if kind not in _TYPES:
            out.append(f"{where}: type {kind!r} is missing or unknown")
        out += [f"{where}: {key} is not structural" for key in _FORBIDDEN & set(node)]
        out += [f"{where}: {key} is not used here" for key in _COMBINATORS if key in node]
        if node.get("uniqueItems"):
            out.append(f"{where}: uniqueItems is not allowed; use x-kubernetes-list-type")
        if "properties" in node and "additionalProperties" in node:
            out.append(f"{where}: properties and additionalProperties are exclusive")
        if ("properties" in node or "additionalProperties" in node) and kind != "object":
            out.append(f"{where}: properties on a non-object")
        if kind == "array" and not isinstance(node.get("items"), Mapping):
            out.append(f"{where}: an array needs one items schema")
        if kind != "array" and "items" in node:
            out.append(f"{where}: items on a non-array")
        declared = node.get("properties", {})
        missing = [r for r in node.get("required", ()) if r not in declared]
        out += [f"{where}.{r}: required but not declared" for r in missing]
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node.get("x-kubernetes-list-map-keys", ()):
                if key not in item.get("required", ()) and "default" not in item["properties"][key]:
                    out.append(f"{where}: map key {key} must be required or defaulted")
        for rule in node.get("x-kubernetes-validations", ()):
            if not rule.get("rule") or set(rule) - {
                "rule",
                "message",
                "messageExpression",
                "fieldPath",
                "reason",
                "optionalOldSelf",
            }:
                out.append(f"{where}: malformed x-kubernetes-validations entry {rule}")
    return out


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_schema_is_structural(kind: str) -> None:
    assert structural_problems(root_schema(kind)) == []


def test_the_structural_check_finds_problems() -> None:
    bad = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
            "spec": {
                "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"},
                "required": ["b"],
            },
            "list": {"type": "array", "items": [{"type": "string"}], "uniqueItems": True},
        },
    }
    problems = structural_problems(bad)
    assert ".spec: type None is missing or unknown" in problems
    assert ".spec: properties and additionalProperties are exclusive" in problems
    assert ".spec.b: required but not declared" in problems
    assert ".list: an array needs one items schema" in problems
    assert ".list: uniqueItems is not allowed; use x-kubernetes-list-type" in problems
    assert ".metadata: only `type: object` is allowed (no fields, no defaults)" in problems


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_defaults_and_enums_are_valid_for_their_node(kind: str) -> None:
    checked = 0
    for path, node in walk(root_schema(kind)):
        values = list(node.get("enum", ()))
        if "default" in node:
            values.append(node["default"])
        for value in values:
            checked += 1
            if node["type"] == "object":
                # An object default is checked by the API server against the CEL rules too
                # (tests/k8s/test_crds.py).
                assert isinstance(value, dict), path
            else:
                jsonschema.Draft4Validator(node).validate(value)
    assert checked or kind == ReservedIP.KIND


# -- the fields: the model's, no more, no less -------------------------------------------------


def model_field_sets() -> list[Any]:
    """pytest params: (kind, schema path, the model's field tuple for it)."""
    out: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        (kind, ("spec",), fields) for kind, fields in SPEC_FIELDS.items()
    ]
    for kind in (IPPool.KIND, Subnet.KIND):
        out.append((kind, ("spec", "routes", "[]"), ROUTE_FIELDS))
    for selector in ("podAffinity", "namespaceAffinity", "nodeAffinity"):
        out.append((IPPool.KIND, ("spec", selector), SELECTOR_FIELDS))
        out.append((IPPool.KIND, ("spec", selector, "matchExpressions", "[]"), REQUIREMENT_FIELDS))
    out += [
        (Coordinator.KIND, ("spec", "policyRoutes", "[]"), ROUTE_FIELDS),
        (Endpoint.KIND, ("status",), ENDPOINT_STATUS_FIELDS),
        (Endpoint.KIND, ("status", "current"), CURRENT_FIELDS),
        (Endpoint.KIND, ("status", "current", "ips", "[]"), DETAIL_FIELDS),
        (Endpoint.KIND, ("status", "current", "ips", "[]", "routes", "[]"), ROUTE_FIELDS),
        # A SpiderMultusConfig's coordinator block is the SpiderCoordinator's spec.
        (MULTUS, ("spec", "coordinator"), COORDINATOR_FIELDS),
        (MULTUS, ("spec", "coordinator", "policyRoutes", "[]"), ROUTE_FIELDS),
    ]
    return [pytest.param(*case, id=f"{case[0]}:{'.'.join(case[1])}") for case in out]


@pytest.mark.parametrize(("kind", "path", "fields"), model_field_sets())
def test_crd_fields_are_the_models(
    kind: str, path: tuple[str, ...], fields: tuple[str, ...]
) -> None:
    assert props(at(kind, *path)) == set(fields)


def test_every_kind_of_the_model_is_compared() -> None:
    # SPEC_FIELDS covers every kind with a spec; the SpiderEndpoint's status is compared above.
    assert set(SPEC_FIELDS) | {Endpoint.KIND} == set(KINDS)
    assert props(root_schema(Endpoint.KIND)) == {"apiVersion", "kind", "metadata", "status"}
    # The day the model reads SpiderMultusConfig, compare its fields here too.
    assert MULTUS not in KINDS


def test_retired_fields_are_not_declared() -> None:
    for kind, retired in RETIRED.items():
        assert not props(at(kind, "spec")) & set(retired)


def test_enums_are_the_models() -> None:
    for kind, path in ((Coordinator.KIND, ("spec",)), (MULTUS, ("spec", "coordinator"))):
        assert at(kind, *path, "mode")["enum"] == list(COORDINATOR_MODES)
        assert at(kind, *path, "podCIDRType")["enum"] == list(POD_CIDR_TYPES)
    for selector in ("podAffinity", "namespaceAffinity", "nodeAffinity"):
        operator = at(IPPool.KIND, "spec", selector, "matchExpressions", "[]", "operator")
        assert operator["enum"] == list(labels.OPERATORS)


def _doc(kind: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "x"}}
    if spec is not None:
        doc["spec"] = spec
    return doc


def _defaults(node: Schema) -> dict[str, Any]:
    return {k: v["default"] for k, v in node["properties"].items() if "default" in v}


def test_coordinator_defaults_mean_what_absence_means_to_the_model() -> None:
    defaults = _defaults(at(Coordinator.KIND, "spec"))
    assert defaults["hostRuleTable"] == 500
    assert defaults["mode"] == "auto"
    # What the API server stores for an empty spec reads as the model's defaults.
    assert parse(_doc(Coordinator.KIND, defaults)) == parse(_doc(Coordinator.KIND, None))
    assert at(Coordinator.KIND, "spec")["default"] == {}
    # Every field the model writes for a default coordinator has the same CRD default.
    written = to_document(parse(_doc(Coordinator.KIND, None)))["spec"]
    assert {k: defaults[k] for k in written} == written
    # In a SpiderMultusConfig, unset coordinator fields fall through to the SpiderCoordinator.
    assert _defaults(at(MULTUS, "spec", "coordinator")) == {}


def test_pool_and_endpoint_defaults_mean_what_absence_means_to_the_model() -> None:
    defaults = _defaults(at(IPPool.KIND, "spec"))
    assert defaults == {"default": False, "disable": False}
    base = {"subnet": "10.6.0.0/16"}
    assert parse(_doc(IPPool.KIND, base | defaults)) == parse(_doc(IPPool.KIND, base))
    assert _defaults(at(Subnet.KIND, "spec")) == {}
    assert _defaults(at(ReservedIP.KIND, "spec")) == {}
    assert _defaults(at(Endpoint.KIND, "status", "current", "ips", "[]")) == {"vlan": 0}


# -- the model's documents fit the schemas -----------------------------------------------------


def _validator(kind: str) -> jsonschema.Draft4Validator:
    """The CRD schema as JSON Schema (x-kubernetes-* extensions and CEL rules are ignored)."""
    return jsonschema.Draft4Validator(root_schema(kind))


def _examples() -> list[dict[str, Any]]:
    return load_documents(EXAMPLES.read_text())


def test_spiderpool_examples_fit_the_schemas() -> None:
    docs = _examples()
    assert {d["kind"] for d in docs} == set(KINDS)
    for doc in docs:
        errors = [e.message for e in _validator(doc["kind"]).iter_errors(doc)]
        assert errors == [], doc["metadata"]["name"]


def test_what_the_model_writes_fits_the_schemas() -> None:
    for doc in _examples():
        canonical = to_document(parse(doc))
        errors = [e.message for e in _validator(doc["kind"]).iter_errors(canonical)]
        assert errors == [], doc["metadata"]["name"]


def _field(error: jsonschema.ValidationError) -> str:
    """A JSON Schema error's field in Kubernetes' notation (spec.ips[0], spec.subnet)."""
    out = ""
    for step in error.path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    if error.validator == "required":
        out += "." + re.sub(r"^'(.*)' is a required property$", r"\1", error.message)
    return out.lstrip(".")


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        (IPPool.KIND, {"subnet": "10.6.0.0/16", "ipVersion": 5}, "spec.ipVersion"),
        (IPPool.KIND, {"ips": ["10.6.0.1"]}, "spec.subnet"),
        (IPPool.KIND, {"subnet": "10.6.0.0/16", "ips": ["10.6.0.0/28"]}, "spec.ips[0]"),
        (IPPool.KIND, {"subnet": "10.6.0.0/16", "nodeName": ["Node_1"]}, "spec.nodeName[0]"),
        (Coordinator.KIND, {"mode": "bogus"}, "spec.mode"),
        (Coordinator.KIND, {"podMACPrefix": "0b:11"}, "spec.podMACPrefix"),
        (Coordinator.KIND, {"podMACPrefix": "0a1b"}, "spec.podMACPrefix"),
        (Coordinator.KIND, {"podRPFilter": 3}, "spec.podRPFilter"),
        (Coordinator.KIND, {"hostRuleTable": "500"}, "spec.hostRuleTable"),
        (Coordinator.KIND, {"txQueueLen": -1}, "spec.txQueueLen"),
        (Coordinator.KIND, {"vethMTU": 0}, "spec.vethMTU"),
        (Coordinator.KIND, {"podDefaultRouteNIC": "a/b"}, "spec.podDefaultRouteNIC"),
        (ReservedIP.KIND, {"ips": []}, "spec.ips"),
    ],
)
def test_schema_and_model_refuse_alike(kind: str, spec: dict[str, Any], field: str) -> None:
    doc = _doc(kind, spec)
    assert [_field(e) for e in _validator(kind).iter_errors(doc)] == [field]
    with pytest.raises(ValidationError) as refused:
        parse(doc)
    assert [e.field for e in getattr(refused.value, "errors", [refused.value])] == [field]


# -- printer columns ---------------------------------------------------------------------------

_STEP = re.compile(r"\.([A-Za-z0-9]+)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]")


def resolve(kind: str, json_path: str) -> Schema | None:
    """The schema node a printer column's JSONPath reaches (None for metadata, which has no
    schema); AssertionError when the path leaves the schema."""
    node: Schema = root_schema(kind)
    pos = 0
    while pos < len(json_path):
        m = _STEP.match(json_path, pos)
        assert m, f"{json_path}: cannot read at {pos}"
        pos = m.end()
        name, index, quoted = m.groups()
        if name == "metadata" and node is root_schema(kind):
            return None
        if index is not None:
            assert node["type"] == "array", json_path
            node = node["items"]
        elif quoted is not None:
            assert isinstance(node.get("additionalProperties"), Mapping), json_path
            node = node["additionalProperties"]
        else:
            assert name in node.get("properties", {}), f"{json_path}: no field {name}"
            node = node["properties"][name]
    return node


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_printer_columns_point_into_the_schema(kind: str) -> None:
    (version,) = CRD_DOCS[kind]["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert columns[-1] == {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for column in columns[:-1]:
        node = resolve(kind, column["jsonPath"])
        assert node is not None
        # An array column prints as JSON text, like a string.
        shown = "string" if node["type"] == "array" else node["type"]
        assert column["type"] == shown, column["name"]
        assert column.get("priority", 0) in (0, 10)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_printer_columns_are_the_clis(kind: str) -> None:
    (version,) = CRD_DOCS[kind]["spec"]["versions"]
    crd = [(c["name"], c.get("priority", 0) == 10) for c in version["additionalPrinterColumns"]]
    cli = crds.printer()
    # NAME first, as kubectl prints it; AGE only with the time now (the API server's side).
    assert ["NAME"] + [name for name, extra in crd if not extra] == cli.headers(kind, ages=True)
    assert ["NAME"] + [name for name, _ in crd] == cli.headers(kind, wide=True, ages=True)
    assert ["NAME"] + [name for name, _ in crd if name != "AGE"] == cli.headers(kind, wide=True)


def test_resolve_refuses_a_path_outside_the_schema() -> None:
    with pytest.raises(AssertionError, match="no field"):
        resolve(IPPool.KIND, ".spec.vlan")
