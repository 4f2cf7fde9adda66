"""The admission decisions (control/controller/admission.py): AdmissionReview v1 in, verdict
and response out, for each reviewed kind and operation. tests/k8s/test_webhook.py runs them
behind a real API server."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from spidernet.control.controller import admission
from spidernet.control.controller.admission import Facts, Needs, Review, Verdict
from spidernet.control.model.resources import IPPool, Subnet

API = "spiderpool.spidernet.io/v2beta1"
Doc = dict[str, Any]


def pool_doc(name: str, subnet: str, ips: Sequence[str], **spec: Any) -> Doc:
    return {
        "apiVersion": API,
        "kind": "SpiderIPPool",
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "7"},
        "spec": {"ipVersion": 4, "subnet": subnet, "ips": list(ips), "default": False, **spec},
    }


def subnet_doc(name: str, subnet: str, ips: Sequence[str]) -> Doc:
    return {
        "apiVersion": API,
        "kind": "SpiderSubnet",
        "metadata": {"name": name},
        "spec": {"ipVersion": 4, "subnet": subnet, "ips": list(ips)},
    }


def smc_doc(spec: Mapping[str, Any], uid: str | None = "u1") -> Doc:
    meta: Doc = {"name": "net1", "namespace": "ns1"}
    if uid:
        meta["uid"] = uid
    return {"apiVersion": API, "kind": "SpiderMultusConfig", "metadata": meta, "spec": dict(spec)}


def request(
    op: str,
    new: Doc | None = None,
    old: Doc | None = None,
    *,
    group: str = "spiderpool.spidernet.io",
    sub_resource: str | None = None,
) -> Doc:
    doc = new or old or {}
    req: Doc = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": "v2beta1", "kind": doc.get("kind", "SpiderIPPool")},
        "resource": {"group": group, "version": "v2beta1", "resource": "spiderippools"},
        "name": doc.get("metadata", {}).get("name", ""),
        "operation": op,
        "userInfo": {"username": "admin"},
        "object": new,
        "oldObject": old,
        "dryRun": False,
    }
    ns = doc.get("metadata", {}).get("namespace")
    if ns:
        req["namespace"] = ns
    if sub_resource:
        req["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def pools(*docs: Doc) -> list[IPPool]:
    return admission.records(docs, IPPool)


def subnets(*docs: Doc) -> list[Subnet]:
    return admission.records(docs, Subnet)


def verdict(doc: Doc, facts: Facts | None = None) -> Verdict:
    return admission.decide(admission.read_review(doc), facts or Facts())


A = pool_doc("pool-a", "10.1.0.0/24", ["10.1.0.10-10.1.0.20"])


# -- reading the request ---------------------------------------------------------------------------


def test_read_review_takes_the_request_apart() -> None:
    review = admission.read_review(request("UPDATE", A, A, sub_resource="status"))
    assert review == Review(
        uid="705ab4f5-6393-11e8-b7cc-42010a800002",
        group="spiderpool.spidernet.io",
        kind="SpiderIPPool",
        operation="UPDATE",
        name="pool-a",
        sub_resource="status",
        obj=A,
        old=A,
    )


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "the body is not a JSON object"),
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}, "apiVersion/kind"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "request: missing"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}},
            "request.kind",
        ),
    ],
)
def test_read_review_refuses_what_is_not_a_review(doc: object, field: str) -> None:
    with pytest.raises(admission.BadReview, match=field):
        admission.read_review(doc)


def test_read_review_needs_the_uid() -> None:
    doc = request("CREATE", A)
    del doc["request"]["uid"]
    with pytest.raises(admission.BadReview, match=r"request\.uid"):
        admission.read_review(doc)


# -- the response ----------------------------------------------------------------------------------


def test_response_shape_allowed_and_denied() -> None:
    uid = "u-1"
    assert admission.response(uid, Verdict.allow()) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": True},
    }
    denied = admission.response(uid, Verdict.deny(409, "cannot delete"))
    assert denied["response"] == {
        "uid": uid,
        "allowed": False,
        "status": {
            "status": "Failure",
            "code": 409,
            "reason": "Conflict",
            "message": "cannot delete",
        },
    }
    assert admission.response(uid, Verdict.deny(422, "x"))["response"]["status"]["reason"] == (
        "Invalid"
    )


# -- what is never reviewed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        # The store's own objects (IPClaims), whatever they hold.
        request(
            "CREATE", {"kind": "SpidernetObject", "metadata": {}}, group="internal.spidernet.io"
        ),
        # Status writes (the controller's pool counts), even of a pool that would be refused.
        request(
            "UPDATE",
            pool_doc("pool-a", "10.1.0.0/24", ["10.9.0.1"]),
            A,
            sub_resource="status",
        ),
        # Endpoints: the agents' allocation path and the GC's deletes.
        request(
            "DELETE",
            old={"kind": "SpiderEndpoint", "metadata": {"name": "p", "namespace": "n"}},
        ),
        request("CONNECT", A),
    ],
)
def test_not_reviewed_is_allowed_without_reading_anything(doc: Doc) -> None:
    first = admission.triage(admission.read_review(doc))
    assert isinstance(first, Verdict)
    assert first.allowed


def test_an_update_that_keeps_spec_labels_and_annotations_is_allowed_at_once() -> None:
    # A pool admitted before the webhook existed may overlap another: the controller's no-op
    # PUT before its status write (and the store's undo) must still pass.
    new = copy.deepcopy(A)
    new["metadata"]["resourceVersion"] = "8"
    new["metadata"]["finalizers"] = ["x"]
    new["status"] = {"allocatedIPCount": 3}
    first = admission.triage(admission.read_review(request("UPDATE", new, A)))
    assert first == Verdict.allow("spec, labels and annotations unchanged")
    labelled = copy.deepcopy(A)
    labelled["metadata"]["labels"] = {"a": "b"}
    assert isinstance(
        admission.triage(admission.read_review(request("UPDATE", labelled, A))), Needs
    )


def test_an_object_being_deleted_may_drop_its_finalizers() -> None:
    new = copy.deepcopy(A)
    new["spec"]["ips"] = ["10.9.9.9"]  # would be refused otherwise
    new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert verdict(request("UPDATE", new, A)).allowed


# -- SpiderIPPool ----------------------------------------------------------------------------------


def test_pool_create_asks_for_pools_subnets_and_its_claims() -> None:
    assert admission.triage(admission.read_review(request("CREATE", A))) == Needs(
        pools=True, subnets=True, claims_of="pool-a"
    )
    assert admission.triage(admission.read_review(request("DELETE", old=A))) == Needs(
        claims_of="pool-a"
    )


def test_valid_pool_is_allowed() -> None:
    other = pool_doc("pool-b", "10.2.0.0/24", ["10.2.0.10"])
    assert verdict(request("CREATE", A), Facts(pools=pools(other))).allowed


def test_pool_breaking_a_rule_of_its_own_names_the_field() -> None:
    bad = pool_doc("pool-x", "10.1.0.0/24", ["10.2.0.5"])
    got = verdict(request("CREATE", bad))
    assert not got.allowed
    assert got.code == 422
    assert (
        got.message
        == "SpiderIPPool 'pool-x': spec.ips: 10.2.0.5 lies outside spec.subnet 10.1.0.0/24"
    )


def test_several_problems_are_listed_in_one_message() -> None:
    bad = pool_doc("pool-x", "10.1.0.0/24", ["10.2.0.5"], gateway="10.3.0.1")
    got = verdict(request("CREATE", bad))
    assert got.message.count("SpiderIPPool 'pool-x': ") == 2
    assert "spec.ips: " in got.message
    assert "spec.gateway: 10.3.0.1 lies outside spec.subnet" in got.message


def test_overlapping_pool_is_refused_naming_spec_subnet() -> None:
    wide = pool_doc("pool-w", "10.1.0.0/16", ["10.1.5.1"])
    got = verdict(request("CREATE", wide), Facts(pools=pools(A)))
    assert (got.allowed, got.code) == (False, 422)
    assert got.message.startswith(
        "SpiderIPPool 'pool-w': spec.subnet: 10.1.0.0/16 overlaps SpiderIPPool 'pool-a'"
    )


def test_pool_sharing_addresses_with_a_pool_of_the_same_subnet_is_refused() -> None:
    twin = pool_doc("pool-t", "10.1.0.0/24", ["10.1.0.20-10.1.0.30"])
    got = verdict(request("CREATE", twin), Facts(pools=pools(A)))
    assert (got.allowed, got.code) == (False, 422)
    assert got.message.startswith(
        "SpiderIPPool 'pool-t': spec.ips: 10.1.0.20 already belong to SpiderIPPool 'pool-a'"
    )


def test_the_pool_itself_in_the_listing_is_not_an_overlap() -> None:
    new = copy.deepcopy(A)
    new["spec"]["ips"] = ["10.1.0.10-10.1.0.30"]
    assert verdict(request("UPDATE", new, A), Facts(pools=pools(A))).allowed


def test_pool_subnet_is_immutable() -> None:
    new = pool_doc("pool-a", "10.1.0.0/23", ["10.1.0.10"])
    got = verdict(request("UPDATE", new, A), Facts(pools=pools(A)))
    assert (got.allowed, got.code) == (False, 422)
    assert (
        "SpiderIPPool 'pool-a': spec.subnet: cannot change from 10.1.0.0/24 to 10.1.0.0/23"
        in got.message
    )


def test_shrinking_a_pool_under_allocated_addresses_is_a_conflict() -> None:
    new = copy.deepcopy(A)
    new["spec"]["ips"] = ["10.1.0.10-10.1.0.12"]
    facts = Facts(pools=pools(A), claimed=["10.1.0.15", "10.1.0.11"])
    got = verdict(request("UPDATE", new, A), facts)
    assert (got.allowed, got.code) == (False, 409)
    assert got.message.startswith("SpiderIPPool 'pool-a': spec.ips: cannot remove 10.1.0.15")
    keep = copy.deepcopy(A)
    keep["spec"]["ips"] = ["10.1.0.10-10.1.0.15"]
    assert verdict(request("UPDATE", keep, A), facts).allowed


def test_pool_inside_a_subnet_must_take_its_addresses_from_it() -> None:
    sub = subnet_doc("sub-1", "10.1.0.0/24", ["10.1.0.10-10.1.0.15"])
    got = verdict(request("CREATE", A), Facts(subnets=subnets(sub)))
    assert (got.allowed, got.code) == (False, 422)
    assert "SpiderIPPool 'pool-a': spec.ips: " in got.message
    assert "SpiderSubnet 'sub-1'" in got.message


def test_pool_with_allocated_addresses_cannot_be_deleted() -> None:
    got = verdict(request("DELETE", old=A), Facts(claimed=["10.1.0.10", "10.1.0.11"]))
    assert (got.allowed, got.code) == (False, 409)
    assert (
        got.message
        == "cannot delete SpiderIPPool 'pool-a' with 2 allocated IPs; release them first"
    )
    assert verdict(request("DELETE", old=A), Facts()).allowed


# -- SpiderSubnet ----------------------------------------------------------------------------------


def test_subnet_overlapping_another_is_refused() -> None:
    one = subnet_doc("sub-1", "10.1.0.0/16", ["10.1.0.1"])
    two = subnet_doc("sub-2", "10.1.2.0/24", ["10.1.2.1"])
    got = verdict(request("CREATE", two), Facts(subnets=subnets(one)))
    assert (got.allowed, got.code) == (False, 422)
    assert got.message.startswith(
        "SpiderSubnet 'sub-2': spec.subnet: 10.1.2.0/24 overlaps SpiderSubnet 'sub-1'"
    )
    assert verdict(request("CREATE", two), Facts(subnets=subnets(two))).allowed  # itself


def test_subnet_must_contain_the_pools_of_its_cidr() -> None:
    sub = subnet_doc("sub-1", "10.1.0.0/24", ["10.1.0.10-10.1.0.15"])
    got = verdict(request("CREATE", sub), Facts(pools=pools(A)))
    assert "SpiderSubnet 'sub-1': spec.ips: SpiderIPPool 'pool-a' owns" in got.message


def test_subnet_holding_pools_cannot_be_deleted() -> None:
    sub = subnet_doc("sub-1", "10.1.0.0/24", ["10.1.0.1-10.1.0.200"])
    got = verdict(request("DELETE", old=sub), Facts(pools=pools(A)))
    assert (got.allowed, got.code) == (False, 409)
    assert "cannot delete SpiderSubnet 'sub-1': SpiderIPPool 'pool-a'" in got.message
    assert verdict(request("DELETE", old=sub), Facts()).allowed


# -- SpiderReservedIP and SpiderCoordinator --------------------------------------------------------


def reserved_doc(version: int, ips: Sequence[str]) -> Doc:
    return {
        "apiVersion": API,
        "kind": "SpiderReservedIP",
        "metadata": {"name": "r1"},
        "spec": {"ipVersion": version, "ips": list(ips)},
    }


def test_reserved_ip_family_is_immutable_and_ips_are_checked() -> None:
    old = reserved_doc(4, ["10.1.0.5"])
    assert verdict(request("CREATE", old)).allowed
    got = verdict(request("UPDATE", reserved_doc(6, ["fd00::5"]), old))
    assert (got.allowed, got.code) == (False, 422)
    assert "SpiderReservedIP 'r1': spec.ipVersion: cannot change from 4 to 6" in got.message
    bad = verdict(request("CREATE", reserved_doc(4, ["fd00::5"])))
    assert not bad.allowed
    assert bad.message.startswith("SpiderReservedIP 'r1': spec.ips")
    assert verdict(request("DELETE", old=old)).allowed


def test_coordinator_rules() -> None:
    doc = {
        "apiVersion": API,
        "kind": "SpiderCoordinator",
        "metadata": {"name": "default"},
        "spec": {"podMACPrefix": "0b:00", "hostRuleTable": 254},
    }
    got = verdict(request("CREATE", doc))
    assert (got.allowed, got.code) == (False, 422)
    assert "SpiderCoordinator 'default': spec.podMACPrefix: '0b:00' is not unicast" in got.message
    assert "SpiderCoordinator 'default': spec.hostRuleTable: 254" in got.message
    doc["spec"] = {"podMACPrefix": "0a:00"}
    assert verdict(request("CREATE", doc)).allowed


# -- SpiderMultusConfig ----------------------------------------------------------------------------


def test_multus_config_rendering_errors_name_the_field() -> None:
    bad = smc_doc(
        {"cniType": "macvlan", "macvlan": {"master": ["eth0"]}, "chainCNIJsonData": ["{nope"]}
    )
    got = verdict(request("CREATE", bad))
    assert (got.allowed, got.code) == (False, 422)
    assert got.message.startswith(
        "SpiderMultusConfig 'ns1/net1': spec.chainCNIJsonData[0]: is not valid JSON"
    )


def test_multus_config_valid_before_it_has_a_uid() -> None:
    good = smc_doc({"cniType": "macvlan", "macvlan": {"master": ["eth0"]}}, uid=None)
    assert verdict(request("CREATE", good)).allowed
    assert verdict(request("DELETE", old=smc_doc({"cniType": "bogus"}))).allowed
