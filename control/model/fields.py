"""Strict, typed reading of one document's fields, like Kubernetes' strict JSON decoder.

A `Fields` wraps one mapping at a path ("spec", "spec.routes[0]"): it refuses unknown keys
(suggesting the closest known one), explains fields that Spiderpool retired, and reads
typed values, recording every problem in a Collector instead of stopping at the first.
`null` reads as absent, as Kubernetes treats it for optional fields.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from spidernet.control.model.errors import Collector
from spidernet.control.model.labels import LabelSelector, Requirement, frozen_map
from spidernet.control.model.resources import IPAddress, IPNetwork, Route

NO_RETIRED: Mapping[str, str] = {}
# The keys of the nested Kubernetes shapes Spiderpool's specs use; deploy/chart/crds declares the
# same ones (tests/unit/test_crds.py compares).
ROUTE_FIELDS = ("dst", "gw")
SELECTOR_FIELDS = ("matchLabels", "matchExpressions")
REQUIREMENT_FIELDS = ("key", "operator", "values")

T = TypeVar("T")


@dataclass(frozen=True)
class Meta:
    """The metadata a record keeps besides its name."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]


def need(value: T | None) -> T:
    """A value a decoder read as required; called only once no problem was recorded."""
    assert value is not None
    return value


def need_network(value: IPNetwork | None) -> IPNetwork:
    """`need` for a network (a TypeVar cannot carry the IPv4/IPv6 union)."""
    assert value is not None
    return value


def type_name(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, Mapping):
        return "mapping"
    return type(value).__name__


class Fields:
    """Typed access to the keys of one mapping; problems go to the collector."""

    def __init__(
        self,
        collector: Collector,
        obj: object,
        path: str,
        known: Collection[str],
        retired: Mapping[str, str] = NO_RETIRED,
    ) -> None:
        self.c = collector
        self.path = path
        self.obj: Mapping[str, Any] = {}
        if obj is None:
            return
        if not isinstance(obj, Mapping):
            collector.add(path, f"must be a mapping, not a {type_name(obj)}")
            return
        self.obj = obj
        for key in obj:
            if not isinstance(key, str):
                collector.add(path or "(top level)", f"key {key!r} is not a string")
            elif key in retired:
                collector.add(self.at(key), retired[key])
            elif key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = (
                    f"; did you mean '{close[0]}'?"
                    if close
                    else f"; known fields are {', '.join(known)}"
                    if known
                    else ""
                )
                collector.add(self.at(key), f"unknown field{hint}")

    def at(self, key: str) -> str:
        """The path of one key, for messages."""
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        """Whether the key is present and not null."""
        return self.obj.get(key) is not None

    def raw(self, key: str) -> object:
        """The value as decoded, or None."""
        return self.obj.get(key)

    def _typed(self, key: str, kind: type, what: str, required: bool) -> object:
        value = self.obj.get(key)
        if value is None:
            if required:
                self.c.add(self.at(key), "is required")
            return None
        if isinstance(value, bool) and kind is not bool:
            self.c.add(self.at(key), f"must be {what}, not a boolean ({value})")
            return None
        if not isinstance(value, kind):
            self.c.add(self.at(key), f"must be {what}, not a {type_name(value)} ({value!r})")
            return None
        return value

    def string(self, key: str, *, required: bool = False) -> str | None:
        """A string value."""
        value = self._typed(key, str, "a string", required)
        return value if isinstance(value, str) else None

    def integer(self, key: str, *, required: bool = False) -> int | None:
        """An integer value (booleans are refused)."""
        value = self._typed(key, int, "an integer", required)
        return value if isinstance(value, int) else None

    def boolean(self, key: str, *, required: bool = False) -> bool | None:
        """A boolean value."""
        value = self._typed(key, bool, "true or false", required)
        return value if isinstance(value, bool) else None

    def items(self, key: str, *, required: bool = False) -> list[Any]:
        """A list value; absent reads as empty."""
        value = self._typed(key, list, "a list", required)
        return value if isinstance(value, list) else []

    def strings(self, key: str) -> list[str] | None:
        """A list of strings; None (with a recorded problem) if any entry is not one."""
        out = []
        for i, item in enumerate(self.items(key)):
            if not isinstance(item, str):
                self.c.add(f"{self.at(key)}[{i}]", f"must be a string, not a {type_name(item)}")
                return None
            out.append(item)
        return out

    def string_map(self, key: str) -> dict[str, str]:
        """A mapping of strings to strings (labels, annotations, matchLabels)."""
        value = self._typed(key, Mapping, "a mapping", False)
        out: dict[str, str] = {}
        for k, v in value.items() if isinstance(value, Mapping) else ():
            if not isinstance(k, str) or not isinstance(v, str):
                self.c.add(
                    self.at(key),
                    f"{k!r}: {v!r}: keys and values must be strings (quote numbers and booleans)",
                )
                continue
            out[k] = v
        return out

    def sub(
        self, key: str, known: Collection[str], retired: Mapping[str, str] = NO_RETIRED
    ) -> Fields:
        """The nested mapping under `key` (an empty one when absent)."""
        return Fields(self.c, self.obj.get(key), self.at(key), known, retired)

    # -- addresses ----------------------------------------------------------------------------

    def address(self, key: str, *, required: bool = False) -> IPAddress | None:
        """An IP address (no prefix length)."""
        text = self.string(key, required=required)
        if text is None:
            return None
        return read_address(self.c, self.at(key), text)

    def network(self, key: str, *, required: bool = False) -> IPNetwork | None:
        """A canonical CIDR such as 10.0.0.0/24 (host bits set is refused, with a hint)."""
        text = self.string(key, required=required)
        if text is None:
            return None
        return read_cidr(self.c, self.at(key), text)

    def selector(self, key: str) -> LabelSelector | None:
        """A `metav1.LabelSelector`, or None when absent."""
        if not self.has(key):
            return None
        sel = self.sub(key, SELECTOR_FIELDS)
        exprs = []
        for i, item in enumerate(sel.items("matchExpressions")):
            f = Fields(self.c, item, f"{sel.at('matchExpressions')}[{i}]", REQUIREMENT_FIELDS)
            req_key = f.string("key", required=True)
            operator = f.string("operator", required=True)
            values = f.strings("values")
            if req_key is not None and operator is not None and values is not None:
                exprs.append(Requirement(req_key, operator, tuple(values)))
        return LabelSelector(frozen_map(sel.string_map("matchLabels")), tuple(exprs))

    def routes(self, key: str, *, loose_dst: bool = False) -> tuple[Route, ...]:
        """A list of {dst, gw}. `loose_dst` takes a bare IP (as /32 or /128) or host bits."""
        out = []
        for i, item in enumerate(self.items(key)):
            f = Fields(self.c, item, f"{self.at(key)}[{i}]", ROUTE_FIELDS)
            dst_text = f.string("dst", required=True)
            dst = None
            if dst_text is not None:
                dst = (
                    read_loose_cidr(self.c, f.at("dst"), dst_text)
                    if loose_dst
                    else read_cidr(self.c, f.at("dst"), dst_text)
                )
            gw = f.address("gw", required=True)
            if dst is not None and gw is not None:
                out.append(Route(dst, gw))
        return tuple(out)


def read_address(c: Collector, path: str, text: str) -> IPAddress | None:
    """Parse an IP address, recording why not."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        c.add(path, f"'{text}' is not an IP address")
        return None


def read_cidr(c: Collector, path: str, text: str) -> IPNetwork | None:
    """Parse a canonical CIDR (what Spiderpool's `IsFormatCIDR` demands), recording why not."""
    if "/" not in text:
        c.add(path, f"'{text}' is not a CIDR: add the prefix length, as in {text}/24")
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        c.add(path, f"'{text}' is not a CIDR")
        return None
    if str(net) != text:
        c.add(path, f"'{text}' is not a canonical CIDR, did you mean {net}")
        return None
    return net


def read_loose_cidr(c: Collector, path: str, text: str) -> IPNetwork | None:
    """A CIDR or a bare IP (as /32 or /128); host bits are cleared (the coordinator's form)."""
    _, slash, length = text.partition("/")
    try:
        if slash and not length.isdigit():
            raise ValueError(text)
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        c.add(path, f"'{text}' is not an IP address or a CIDR")
        return None
