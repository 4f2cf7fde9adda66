"""Admission decisions for spiderpool.spidernet.io objects (Spiderpool's validating webhooks).

Pure: an AdmissionReview v1 request (the JSON the API server POSTs) and the objects that exist
now in, an AdmissionReview response out. The rules are the model's (`control.model.rules`
through `parse`, `control.model.validate` across resources) and the multus renderer's
(`render_nad`), the same ones the embedded service applies (`node.agent.resources`), so a
refusal reads the same in both modes: `SpiderIPPool 'pool-a': spec.ips: ...`.

`triage` answers at once what needs no state (a status write, an unchanged spec, an object
being deleted, a kind that is not reviewed) and otherwise says which objects the decision
needs (`Needs`); the caller reads those and calls `decide`. Codes: 422 (Invalid) for an object
that breaks a rule, 409 (Conflict) where the state refuses it (a pool with allocated addresses
deleted or shrunk under them, a subnet that still holds pools deleted).

Never reviewed, so the product's own writes are never blocked: the store's internal objects
(`internal.spidernet.io`: IPClaims, ...), SpiderEndpoints (written by agents on the allocation
path and deleted by the GC), any `/status` write (the controller's pool counts), and updates
that leave `spec`, labels and annotations as they were (a no-op PUT before a status write,
finalizer edits, the store's undo putting back what it read).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from spidernet.control.controller.multus import SMC_KIND, MultusConfigError, render_nad
from spidernet.control.errors import ControlError
from spidernet.control.model import validate
from spidernet.control.model.documents import parse
from spidernet.control.model.errors import ValidationError, ValidationErrors
from spidernet.control.model.resources import Coordinator, IPPool, ReservedIP, Resource, Subnet

API_VERSION = "admission.k8s.io/v1"
GROUP = "spiderpool.spidernet.io"
OPERATIONS = ("CREATE", "UPDATE", "DELETE")
# The kinds a ValidatingWebhookConfiguration should send (deploy/README.md, docs/webhook.md).
REVIEWED_KINDS = (IPPool.KIND, Subnet.KIND, ReservedIP.KIND, Coordinator.KIND, SMC_KIND)
REVIEWED_RESOURCES = (
    "spiderippools",
    "spidersubnets",
    "spiderreservedips",
    "spidercoordinators",
    "spidermultusconfigs",
)

INVALID, CONFLICT, UNAVAILABLE = 422, 409, 503
_REASONS = {INVALID: "Invalid", CONFLICT: "Conflict", UNAVAILABLE: "ServiceUnavailable"}
# A placeholder owner uid while rendering a SpiderMultusConfig that has none yet.
_NO_UID = "00000000-0000-0000-0000-000000000000"

Doc = Mapping[str, Any]
_R = TypeVar("_R", IPPool, Subnet)


class BadReview(ControlError, ValueError):
    """A body that is not an AdmissionReview v1 request; the message names the field."""


@dataclass(frozen=True)
class Review:
    """The parts of an AdmissionReview request the decisions read."""

    uid: str
    group: str
    kind: str
    operation: str
    name: str
    namespace: str = ""
    sub_resource: str = ""
    obj: Doc | None = None  # `object` (None on DELETE)
    old: Doc | None = None  # `oldObject` (None on CREATE)


@dataclass(frozen=True)
class Needs:
    """What `decide` needs read: every pool, every subnet, the claims of one pool."""

    pools: bool = False
    subnets: bool = False
    claims_of: str | None = None


@dataclass(frozen=True)
class Facts:
    """The cluster's objects as `Needs` asked: pools and subnets (parsed; objects that do not
    parse are left out, they cannot be compared) and the addresses claimed from `claims_of`."""

    pools: Sequence[IPPool] = ()
    subnets: Sequence[Subnet] = ()
    claimed: Sequence[str] = ()


@dataclass(frozen=True)
class Verdict:
    """Allowed, or refused with an HTTP-like code and a message naming the field."""

    allowed: bool
    code: int = 200
    message: str = ""
    why: str = ""  # for the log: why it was allowed without review

    @classmethod
    def allow(cls, why: str = "") -> Verdict:
        return cls(True, why=why)

    @classmethod
    def deny(cls, code: int, message: str) -> Verdict:
        return cls(False, code, message)


def _string(doc: Doc, key: str, where: str, required: bool = True) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise BadReview(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _object(doc: Doc, key: str) -> Doc | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadReview(f"request.{key}: expected an object, got {type(value).__name__}")
    return value


def read_review(doc: object) -> Review:
    """The request of an AdmissionReview v1 document; raises BadReview."""
    if not isinstance(doc, Mapping):
        raise BadReview("the body is not a JSON object")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "AdmissionReview":
        raise BadReview(
            f"apiVersion/kind: expected {API_VERSION} AdmissionReview, got "
            f"{doc.get('apiVersion')!r} {doc.get('kind')!r}"
        )
    req = doc.get("request")
    if not isinstance(req, Mapping):
        raise BadReview("request: missing")
    gvk = req.get("kind")
    if not isinstance(gvk, Mapping):
        raise BadReview("request.kind: expected {group, version, kind}")
    return Review(
        uid=_string(req, "uid", "request"),
        group=_string(gvk, "group", "request.kind", required=False),
        kind=_string(gvk, "kind", "request.kind"),
        operation=_string(req, "operation", "request"),
        name=_string(req, "name", "request", required=False),
        namespace=_string(req, "namespace", "request", required=False),
        sub_resource=_string(req, "subResource", "request", required=False),
        obj=_object(req, "object"),
        old=_object(req, "oldObject"),
    )


def _unchanged(new: Doc, old: Doc) -> bool:
    """Whether an update leaves what the rules read (spec, labels, annotations) as it was."""
    new_meta, old_meta = new.get("metadata") or {}, old.get("metadata") or {}
    return (
        new.get("spec") == old.get("spec")
        and (new_meta.get("labels") or {}) == (old_meta.get("labels") or {})
        and (new_meta.get("annotations") or {}) == (old_meta.get("annotations") or {})
    )


def triage(review: Review) -> Verdict | Needs:
    """A verdict when none of the cluster's objects matter, else what `decide` needs."""
    if review.group != GROUP:
        return Verdict.allow(f"group {review.group or 'core'} is not reviewed")
    if review.kind not in REVIEWED_KINDS:
        return Verdict.allow(f"{review.kind} is not reviewed")
    if review.sub_resource:
        return Verdict.allow(f"the {review.sub_resource} subresource is not reviewed")
    if review.operation not in OPERATIONS:
        return Verdict.allow(f"operation {review.operation} is not reviewed")
    op, new, old = review.operation, review.obj, review.old
    if op == "UPDATE" and new is not None and old is not None:
        if (new.get("metadata") or {}).get("deletionTimestamp"):
            return Verdict.allow("the object is being deleted")
        if _unchanged(new, old):
            return Verdict.allow("spec, labels and annotations unchanged")
    if op != "DELETE" and new is None:
        return Verdict.deny(INVALID, f"{review.kind} '{review.name}': object: missing")
    if review.kind == IPPool.KIND:
        name = review.name or _name_of(new or old)
        return Needs(pools=op != "DELETE", subnets=op != "DELETE", claims_of=name)
    if review.kind == Subnet.KIND:
        return Needs(pools=True, subnets=op != "DELETE")
    return Needs()


def _name_of(doc: Doc | None) -> str:
    meta = (doc or {}).get("metadata") or {}
    return str(meta.get("name") or "")


def _message(e: ValidationError) -> str:
    errors = e.errors if isinstance(e, ValidationErrors) else (e,)
    return "; ".join(str(one) for one in errors)


def _parsed(doc: Doc | None) -> Resource | None:
    if doc is None:
        return None
    try:
        return parse(doc)
    except ValidationError:
        return None


def _claimed_ints(facts: Facts) -> list[int]:
    out = []
    for text in facts.claimed:
        try:
            out.append(int(ipaddress.ip_address(text)))
        except ValueError:
            continue  # not an address: no claim the allocator made
    return out


def _check_pool(review: Review, new: IPPool, facts: Facts) -> Verdict:
    old = _parsed(review.old)
    old_pool = old if isinstance(old, IPPool) else None
    others = [p for p in facts.pools if p.name != new.name]
    try:
        validate.check_pool(new, others, old_pool, subnets=facts.subnets)
    except ValidationError as e:
        return Verdict.deny(INVALID, _message(e))
    try:  # the same with the allocated addresses: what fails now is the state's refusal
        validate.check_pool(new, others, old_pool, _claimed_ints(facts), subnets=facts.subnets)
    except ValidationError as e:
        return Verdict.deny(CONFLICT, _message(e))
    return Verdict.allow()


def _write(review: Review, facts: Facts) -> Verdict:
    """CREATE or UPDATE of a reviewed kind."""
    assert review.obj is not None
    if review.kind == SMC_KIND:
        return _multus(review.obj, review.namespace)
    try:
        new = parse(review.obj)
    except ValidationError as e:
        return Verdict.deny(INVALID, _message(e))
    old = _parsed(review.old)
    try:
        if isinstance(new, IPPool):
            return _check_pool(review, new, facts)
        if isinstance(new, Subnet):
            others = [s for s in facts.subnets if s.name != new.name]
            validate.check_subnet(
                new, others, facts.pools, old if isinstance(old, Subnet) else None
            )
        elif isinstance(new, ReservedIP):
            validate.check_reserved(new, old if isinstance(old, ReservedIP) else None)
    except ValidationError as e:
        return Verdict.deny(INVALID, _message(e))
    return Verdict.allow()


def _multus(doc: Doc, namespace: str) -> Verdict:
    meta = dict(doc.get("metadata") or {})
    meta.setdefault("namespace", namespace)
    where = f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"
    if not meta.get("uid"):
        meta["uid"] = _NO_UID  # the renderer names the owner; the NAD is not written here
    try:
        render_nad({**doc, "metadata": meta})
    except MultusConfigError as e:
        return Verdict.deny(INVALID, f"{SMC_KIND} '{where}': {e}")
    return Verdict.allow()


def _delete(review: Review, facts: Facts) -> Verdict:
    old = _parsed(review.old)
    try:
        if review.kind == IPPool.KIND:
            # An object that does not parse was never allocated from: nothing to protect.
            if isinstance(old, IPPool):
                validate.check_pool_delete(old, len(facts.claimed))
        elif review.kind == Subnet.KIND and isinstance(old, Subnet):
            validate.check_subnet_delete(old, facts.pools)
    except ValidationError as e:
        return Verdict.deny(CONFLICT, _message(e))
    return Verdict.allow()


def decide(review: Review, facts: Facts) -> Verdict:
    """The verdict on `review` given the objects `triage` asked for."""
    first = triage(review)
    if isinstance(first, Verdict):
        return first
    if review.operation == "DELETE":
        return _delete(review, facts)
    return _write(review, facts)


def records(bodies: Sequence[Doc], kind: type[_R]) -> list[_R]:
    """The documents of `kind` that parse (for `Facts`)."""
    out = []
    for body in bodies:
        record = _parsed(body)
        if isinstance(record, kind):
            out.append(record)
    return out


def response(uid: str, verdict: Verdict) -> dict[str, Any]:
    """The AdmissionReview v1 document answering request `uid`."""
    answer: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        answer["status"] = {
            "status": "Failure",
            "code": verdict.code,
            "reason": _REASONS.get(verdict.code, "InternalError"),
            "message": verdict.message,
        }
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}
