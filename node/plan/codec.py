"""Plans to JSON and back, so DEL and CHECK can replay exactly what ADD applied (pure).

Each operation becomes `{"op": "<class name>", <field>: <value>, ...}`; addresses and
networks are written as text and read back by the field's annotation.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Sequence
from typing import Any

from spidernet.node.errors import NodeError

from . import ops

_CLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in vars(ops).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and hasattr(cls, "undo")
}


class CodecError(NodeError, ValueError):
    """A saved plan that cannot be read back."""


def _encode(value: object) -> object:
    if isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network
        | ipaddress.IPv4Interface
        | ipaddress.IPv6Interface,
    ):
        return str(value)
    return value


def _decode(annotation: str, value: object) -> object:
    if value is None or not isinstance(value, str):
        return value
    if "IPInterface" in annotation:
        return ipaddress.ip_interface(value)
    if "IPNetwork" in annotation:
        return ipaddress.ip_network(value)
    if "IPAddress" in annotation:
        return ipaddress.ip_address(value)
    return value


def dumps(plan: Sequence[ops.Op]) -> str:
    """A plan as JSON text."""
    items = []
    for op in plan:
        item: dict[str, object] = {"op": type(op).__name__}
        for f in dataclasses.fields(op):
            item[f.name] = _encode(getattr(op, f.name))
        items.append(item)
    return json.dumps({"version": 1, "plan": items}, indent=1)


def loads(text: str) -> tuple[ops.Op, ...]:
    """A plan read back from `dumps`; raises CodecError."""
    try:
        doc = json.loads(text)
        out = []
        for item in doc["plan"]:
            cls = _CLASSES[item.pop("op")]
            kwargs = {
                f.name: _decode(str(f.type), item[f.name])
                for f in dataclasses.fields(cls)
                if f.name in item
            }
            out.append(cls(**kwargs))
    except (ValueError, KeyError, TypeError) as e:
        raise CodecError(f"unreadable saved plan: {e}") from e
    return tuple(out)
