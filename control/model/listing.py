"""What `spidernet get` prints besides tables, kept pure: documents that `apply -f` takes back,
kubectl's `-o name`, label selectors as `-l` spells them, and which side a `get` reads.

`-o yaml|json` prints objects without what the API server writes for itself (`STRIPPED`), and a
list as a `v1 List` (kubectl's shape), so `kubectl apply -f` and `spidernet apply -f` (whose
reader splices `List` items: control/model/documents.py) take the output back. `status` stays:
a SpiderEndpoint's status is its content (its CRD requires it), and the API server ignores the
status of the kinds with a status subresource on create and update.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spidernet.control.model.labels import (
    LabelSelector,
    Requirement,
    frozen_map,
    label_key_problem,
    label_value_problem,
)

# metadata the API server writes for itself (apimachinery ObjectMeta's read-only fields).
STRIPPED = (
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
# kubectl apply's own record of what was applied; it writes it again.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def applyable(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `doc` without the server-written metadata (`STRIPPED`, kubectl's
    last-applied annotation; empty annotations go too)."""
    out: dict[str, Any] = copy.deepcopy(dict(doc))
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for field in STRIPPED:
            meta.pop(field, None)
        notes = meta.get("annotations")
        if isinstance(notes, dict):
            notes.pop(LAST_APPLIED, None)
            if not notes:
                del meta["annotations"]
    return out


def as_list(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`docs` as kubectl prints a list: a `v1 List` of applyable items."""
    return {"apiVersion": "v1", "kind": "List", "items": [applyable(d) for d in docs]}


def name_line(doc: Mapping[str, Any], group: str) -> str:
    """kubectl's `-o name`: `spiderippool.spiderpool.spidernet.io/NAME`."""
    return f"{str(doc.get('kind', '')).lower()}.{group}/{doc.get('metadata', {}).get('name', '')}"


# -- label selectors, as `kubectl get -l` takes them (apimachinery pkg/labels.Parse) ----------

_TERM = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<absent>[^\s,=!()]+)"
    r"|(?P<key>[^\s,=!()]+)(?:\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,=!()]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?)\s*"
)


@dataclass(frozen=True)
class Selector:
    """A `-l` selector: its text, as sent to the API server, and what it means."""

    text: str
    selector: LabelSelector

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object carrying `labels` is selected (for sides that filter locally)."""
        return self.selector.matches(labels)


def parse_selector(text: str) -> Selector:
    """`app=web,tier!=db,env in (a,b),!legacy,owner` as a Selector; ValueError naming the
    first term that is no term or carries an invalid key or value."""
    equal: dict[str, str] = {}
    reqs: list[Requirement] = []
    for term in _split_terms(text):
        m = _TERM.fullmatch(term)
        if m is None or not term.strip():
            raise ValueError(f"label selector {text!r}: cannot read {term.strip()!r}")
        if m["absent"]:
            reqs.append(Requirement(m["absent"], "DoesNotExist"))
        elif m["op"] in ("=", "=="):
            if m["key"] in equal and equal[m["key"]] != m["value"]:
                reqs.append(Requirement(m["key"], "In", (m["value"],)))
            else:
                equal[m["key"]] = m["value"]
        elif m["op"] == "!=":
            reqs.append(Requirement(m["key"], "NotIn", (m["value"],)))
        elif m["set"]:
            values = tuple(v.strip() for v in m["values"].split(",") if v.strip())
            operator = "In" if m["set"] == "in" else "NotIn"
            reqs.append(Requirement(m["key"], operator, values))
        else:
            reqs.append(Requirement(m["key"], "Exists"))
    selector = LabelSelector(frozen_map(equal), tuple(reqs))
    problems = [
        reason
        for key, values in _keys_values(selector)
        for reason in (label_key_problem(key), *map(label_value_problem, values))
        if reason is not None
    ]
    if problems:
        raise ValueError(f"label selector {text!r}: {problems[0]}")
    return Selector(text, selector)


def _split_terms(text: str) -> list[str]:
    """The comma-separated terms of a selector, commas inside `( )` kept."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _keys_values(selector: LabelSelector) -> list[tuple[str, tuple[str, ...]]]:
    out = [(k, (v,)) for k, v in selector.match_labels.items()]
    return out + [(r.key, r.values) for r in selector.match_expressions]


# -- which side a `get` reads ------------------------------------------------------------------

CLUSTER = "cluster"
SOCKET = "socket"


def source(
    *, kubeconfig: str | None, cluster: bool, socket: str | None, env: Mapping[str, str]
) -> str:
    """CLUSTER (the API server) when `--kubeconfig` or `--cluster` is given, or when
    `$KUBECONFIG` is set and neither `--socket` nor `$SPIDERNET_SOCKET` is; else SOCKET (the
    node's service, as before). ValueError when both sides are named."""
    if (kubeconfig is not None or cluster) and socket is not None:
        raise ValueError("--socket reads a node's service; --kubeconfig/--cluster the API server")
    if kubeconfig is not None or cluster:
        return CLUSTER
    if socket is None and env.get("KUBECONFIG") and not env.get("SPIDERNET_SOCKET"):
        return CLUSTER
    return SOCKET
