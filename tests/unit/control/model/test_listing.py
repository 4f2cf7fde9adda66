"""`spidernet get`'s pure parts beside tables: apply-able output, `-o name`, `-l` selectors and
the choice between the API server and the node socket."""

from __future__ import annotations

from typing import Any

import pytest

from spidernet.control.model.documents import load_documents
from spidernet.control.model.labels import LabelSelector, Requirement
from spidernet.control.model.listing import (
    CLUSTER,
    SOCKET,
    applyable,
    as_list,
    name_line,
    parse_selector,
    source,
)

SERVED: dict[str, Any] = {
    "apiVersion": "spiderpool.spidernet.io/v2beta1",
    "kind": "SpiderIPPool",
    "metadata": {
        "name": "p4",
        "labels": {"team": "a"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "creationTimestamp": "2026-05-01T08:40:00Z",
        "generation": 1,
        "managedFields": [{"manager": "kubectl"}],
        "resourceVersion": "812",
        "uid": "0b6a",
        "finalizers": ["spidernet.io/x"],
    },
    "spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.0.10"]},
    "status": {"allocatedIPCount": 0},
}


def test_list_output_is_a_v1_list_without_server_fields() -> None:
    assert as_list([SERVED]) == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "spiderpool.spidernet.io/v2beta1",
                "kind": "SpiderIPPool",
                "metadata": {
                    "name": "p4",
                    "labels": {"team": "a"},
                    "finalizers": ["spidernet.io/x"],
                },
                "spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.0.10"]},
                "status": {"allocatedIPCount": 0},
            }
        ],
    }
    assert SERVED["metadata"]["uid"] == "0b6a"  # (a copy: the input is left as it was)


def test_spidernet_apply_reads_the_list_back() -> None:
    import yaml

    text = yaml.safe_dump(as_list([SERVED, SERVED | {"metadata": {"name": "p6"}}]))
    assert [d["metadata"]["name"] for d in load_documents(text)] == ["p4", "p6"]


def test_annotations_of_others_stay() -> None:
    last = "kubectl.kubernetes.io/last-applied-configuration"
    doc = {"metadata": {"name": "x", "annotations": {"a": "b", last: "{}"}}}
    assert applyable(doc)["metadata"]["annotations"] == {"a": "b"}


def test_name_line_is_kubectls() -> None:
    assert name_line(SERVED, "spiderpool.spidernet.io") == (
        "spiderippool.spiderpool.spidernet.io/p4"
    )


def test_selector_terms() -> None:
    parsed = parse_selector("app=web, tier!=db,env in (a, b),!legacy,owner,x==y,app=other")
    assert parsed.text == "app=web, tier!=db,env in (a, b),!legacy,owner,x==y,app=other"
    assert parsed.selector == LabelSelector(
        {"app": "web", "x": "y"},
        (
            Requirement("tier", "NotIn", ("db",)),
            Requirement("env", "In", ("a", "b")),
            Requirement("legacy", "DoesNotExist"),
            Requirement("owner", "Exists"),
            Requirement("app", "In", ("other",)),  # (both must hold: nothing matches)
        ),
    )
    assert parse_selector("env notin (a),k").matches({"env": "b", "k": ""})
    assert not parse_selector("env notin (a),k").matches({"env": "a", "k": ""})
    assert not parse_selector("app=web,app=other").matches({"app": "web"})


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a b", "cannot read 'a b'"),
        ("=x", "cannot read '=x'"),
        ("a=b,", "cannot read ''"),
        ("a in b", "cannot read 'a in b'"),
        ("-bad=x", "label selector '-bad=x': "),
        ("a=" + "v" * 64, "label selector"),
    ],
)
def test_bad_selectors_are_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(")):
        parse_selector(text)


@pytest.mark.parametrize(
    ("kubeconfig", "cluster", "socket", "env", "side"),
    [
        (None, False, None, {}, SOCKET),
        ("k", False, None, {}, CLUSTER),
        (None, True, None, {}, CLUSTER),
        (None, False, None, {"KUBECONFIG": "k"}, CLUSTER),
        (None, False, "/s", {"KUBECONFIG": "k"}, SOCKET),
        (None, False, None, {"KUBECONFIG": "k", "SPIDERNET_SOCKET": "/s"}, SOCKET),
        ("k", False, None, {"SPIDERNET_SOCKET": "/s"}, CLUSTER),
    ],
)
def test_which_side_a_get_reads(
    kubeconfig: str | None, cluster: bool, socket: str | None, env: dict[str, str], side: str
) -> None:
    assert source(kubeconfig=kubeconfig, cluster=cluster, socket=socket, env=env) == side


def test_naming_both_sides_is_refused() -> None:
    with pytest.raises(ValueError, match="--socket"):
        source(kubeconfig="k", cluster=False, socket="/s", env={})
