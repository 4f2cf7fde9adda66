"""Label selectors (Kubernetes semantics) and name/label syntax rules."""

from __future__ import annotations

import pytest

from spidernet.control.model.labels import (
    LabelSelector,
    Requirement,
    annotations_problems,
    dns_label_problem,
    dns_subdomain_problem,
    frozen_map,
    label_key_problem,
    label_value_problem,
    labels_problems,
)

POD = {"app": "web", "tier": "front"}


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        (Requirement("app", "In", ("web", "api")), True),
        (Requirement("app", "In", ("api",)), False),
        (Requirement("missing", "In", ("x",)), False),
        (Requirement("app", "NotIn", ("api",)), True),
        (Requirement("app", "NotIn", ("web",)), False),
        # NotIn matches an object that lacks the key (apimachinery labels.Requirement.Matches).
        (Requirement("missing", "NotIn", ("x",)), True),
        (Requirement("tier", "Exists"), True),
        (Requirement("missing", "Exists"), False),
        (Requirement("missing", "DoesNotExist"), True),
        (Requirement("tier", "DoesNotExist"), False),
    ],
)
def test_requirement_semantics(req: Requirement, expected: bool) -> None:
    assert req.matches(POD) is expected


def test_unknown_operator_cannot_match() -> None:
    with pytest.raises(ValueError, match="unknown selector operator"):
        Requirement("app", "Like", ("w",)).matches(POD)


def test_selector_ands_labels_and_expressions() -> None:
    sel = LabelSelector(frozen_map({"app": "web"}), (Requirement("tier", "In", ("front",)),))
    assert sel.matches(POD)
    assert not sel.matches({"app": "web", "tier": "back"})
    assert not sel.matches({"tier": "front"})


def test_empty_selector_matches_everything() -> None:
    assert LabelSelector().is_empty
    assert LabelSelector().matches({})
    assert LabelSelector().matches(POD)
    assert not LabelSelector(frozen_map({"a": "b"})).is_empty


@pytest.mark.parametrize(
    ("req", "field", "reason"),
    [
        (Requirement("app", "In"), "s.values", "must be given when the operator is In"),
        (Requirement("app", "NotIn"), "s.values", "must be given when the operator is NotIn"),
        (Requirement("app", "Exists", ("x",)), "s.values", "must be empty when the operator"),
        (Requirement("app", "Like", ("x",)), "s.operator", "'Like' is not one of In, NotIn"),
        (Requirement("bad key!", "Exists"), "s.key", "key 'bad key!' is invalid"),
        (Requirement("app", "In", ("bad value!",)), "s.values[0]", "value 'bad value!'"),
    ],
)
def test_requirement_problems(req: Requirement, field: str, reason: str) -> None:
    found = req.problems("s")
    assert any(f == field and reason in r for f, r in found), found


def test_selector_problems_name_the_path() -> None:
    sel = LabelSelector(frozen_map({"-bad": "x"}), (Requirement("k", "In"),))
    found = sel.problems("spec.podAffinity")
    assert [f for f, _ in found] == [
        "spec.podAffinity.matchLabels",
        "spec.podAffinity.matchExpressions[0].values",
    ]
    assert found[0][1].startswith("key '-bad' is invalid")
    assert LabelSelector(frozen_map({"app": "x"})).problems("p") == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("pool-a", True),
        ("a.b-c.d", True),
        ("0abc", True),
        ("Pool", False),
        ("-a", False),
        ("a-", False),
        ("a_b", False),
        ("", False),
        ("a" * 253, True),
        ("a" * 254, False),
    ],
)
def test_dns_subdomain(value: str, ok: bool) -> None:
    assert (dns_subdomain_problem(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("default", True), ("kube-system", True), ("a.b", False), ("", False), ("a" * 64, False)],
)
def test_dns_label(value: str, ok: bool) -> None:
    assert (dns_label_problem(value) is None) is ok


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("ipam.spidernet.io/app-namespace", True),
        ("kubernetes.io/metadata.name", True),
        ("A_b.c", True),
        ("/app", False),
        ("Bad.Prefix/app", False),
        ("app/", False),
        ("a" * 64, False),
        ("-app", False),
    ],
)
def test_label_keys(key: str, ok: bool) -> None:
    assert (label_key_problem(key) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [("", True), ("v1.2_x-y", True), ("-x", False), ("a b", False)]
)
def test_label_values(value: str, ok: bool) -> None:
    assert (label_value_problem(value) is None) is ok


def test_labels_and_annotations_problems() -> None:
    assert labels_problems({"app": "x"}, "metadata.labels") == []
    assert labels_problems({"app": "not ok"}, "metadata.labels")[0][0] == "metadata.labels"
    # Annotation values are free text; only keys are checked.
    assert annotations_problems({"note": "any text at all!"}, "m") == []
    assert annotations_problems({"bad key": "x"}, "m")[0][0] == "m"


def test_frozen_map_is_read_only_and_sorted() -> None:
    m = frozen_map({"b": "2", "a": "1"})
    assert list(m) == ["a", "b"]
    with pytest.raises(TypeError):
        m["c"] = "3"  # type: ignore[index]
