"""Kubernetes names, labels and label selectors (`metav1.LabelSelector` semantics).

Spiderpool uses selectors for pool affinity (`podAffinity`, `namespaceAffinity`,
`nodeAffinity`) and validates them with apimachinery's `ValidateLabelSelector`; the syntax
rules below are apimachinery's (`pkg/util/validation/validation.go`).
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_DNS_SUBDOMAIN_RE = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_NAME_PART_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")

# One empty mapping shared by every resource without labels or annotations.
EMPTY_MAP: Mapping[str, str] = types.MappingProxyType({})


def empty_map() -> Mapping[str, str]:
    """The shared empty read-only mapping (a dataclass default factory)."""
    return EMPTY_MAP


def frozen_map(items: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only copy of a str→str mapping, keys sorted (the canonical JSON order)."""
    if not items:
        return EMPTY_MAP
    return types.MappingProxyType(dict(sorted(items.items())))


def dns_subdomain_problem(value: str) -> str | None:
    """Why `value` is not an RFC 1123 subdomain (a Kubernetes object name), or None."""
    if not value:
        return "must not be empty"
    if len(value) > 253:
        return f"must be no more than 253 characters, not {len(value)}"
    if not _DNS_SUBDOMAIN_RE.fullmatch(value):
        return (
            f"'{value}' is not a valid name: use lower case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return None


def dns_label_problem(value: str) -> str | None:
    """Why `value` is not an RFC 1123 label (a namespace name), or None."""
    if not value:
        return "must not be empty"
    if len(value) > 63:
        return f"must be no more than 63 characters, not {len(value)}"
    if not _DNS_LABEL_RE.fullmatch(value):
        return (
            f"'{value}' is not a valid label: use lower case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a qualified name (`[prefix/]name`), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns_subdomain_problem(prefix)):
        return f"key '{key}' has an invalid prefix: it must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME_PART_RE.fullmatch(name):
        return (
            f"key '{key}' is invalid: the name part must be 1-63 characters of letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None (the empty value is valid)."""
    if value and (len(value) > 63 or not _NAME_PART_RE.fullmatch(value)):
        return (
            f"value '{value}' is invalid: it must be at most 63 characters of letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


@dataclass(frozen=True)
class Requirement:
    """One `matchExpressions` entry: `key` `operator` `values`."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: NotIn and DoesNotExist match objects without the key."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        raise ValueError(f"unknown selector operator {self.operator!r}")

    def problems(self, path: str) -> list[tuple[str, str]]:
        """(field, reason) pairs for what apimachinery would refuse in this requirement."""
        out = []
        if (reason := label_key_problem(self.key)) is not None:
            out.append((f"{path}.key", reason))
        if self.operator not in OPERATORS:
            out.append(
                (f"{path}.operator", f"'{self.operator}' is not one of {', '.join(OPERATORS)}")
            )
        elif self.operator in ("In", "NotIn") and not self.values:
            out.append((f"{path}.values", f"must be given when the operator is {self.operator}"))
        elif self.operator in ("Exists", "DoesNotExist") and self.values:
            out.append((f"{path}.values", f"must be empty when the operator is {self.operator}"))
        for i, value in enumerate(self.values):
            if (reason := label_value_problem(value)) is not None:
                out.append((f"{path}.values[{i}]", reason))
        return out


@dataclass(frozen=True)
class LabelSelector:
    """`matchLabels` AND every `matchExpressions` requirement; empty matches everything."""

    match_labels: Mapping[str, str] = field(default_factory=empty_map)
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True for a selector with no terms (it selects every object)."""
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object carrying `labels` is selected."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(r.matches(labels) for r in self.match_expressions)

    def problems(self, path: str) -> list[tuple[str, str]]:
        """(field, reason) pairs for what apimachinery's ValidateLabelSelector refuses."""
        out = []
        for key, value in self.match_labels.items():
            for reason in (label_key_problem(key), label_value_problem(value)):
                if reason is not None:
                    out.append((f"{path}.matchLabels", reason))
        for i, req in enumerate(self.match_expressions):
            out.extend(req.problems(f"{path}.matchExpressions[{i}]"))
        return out


def labels_problems(labels: Mapping[str, str], path: str) -> list[tuple[str, str]]:
    """(field, reason) pairs for invalid `metadata.labels` keys or values."""
    out = []
    for key, value in labels.items():
        for reason in (label_key_problem(key), label_value_problem(value)):
            if reason is not None:
                out.append((path, reason))
    return out


def annotations_problems(annotations: Mapping[str, str], path: str) -> list[tuple[str, str]]:
    """(field, reason) pairs for invalid `metadata.annotations` keys (values are free text)."""
    return [(path, reason) for key in annotations if (reason := label_key_problem(key)) is not None]
