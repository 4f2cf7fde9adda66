"""Reading and writing Spiderpool resource documents (YAML or JSON).

`load_documents` splits a file into mappings; `parse` turns one into a validated record;
`to_document` writes a record back in canonical form, so `parse(to_document(r)) == r`.

YAML is read the way Kubernetes reads it (sigs.k8s.io/yaml, YAML 1.1 via go-yaml), not with
PyYAML's full YAML 1.1 type set: `12:34` stays a string (PyYAML would make it the base-60
int 754, breaking MAC prefixes and some IPv6 addresses) and timestamps stay strings, so
every document is plain JSON data. Duplicate keys are an error, as in a strict decoder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from spidernet.control.errors import ControlError
from spidernet.control.model.decode import decode
from spidernet.control.model.encode import encode
from spidernet.control.model.resources import KINDS, Resource

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class DocumentError(ControlError, ValueError):
    """A file that is not a sequence of mappings (bad YAML/JSON, a list where a resource
    should be, ...). The message says which document and, where known, which line."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without base-60 numbers and timestamps, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping, refusing a key that appears twice (PyYAML keeps the last one)."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            if isinstance(key, str | int | float | bool):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# PyYAML's YAML 1.1 int and float patterns minus their base-60 alternatives.
_Loader.add_implicit_resolver(
    _INT,
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _is_list(doc: Mapping[str, Any]) -> bool:
    kind = doc.get("kind")
    return (
        isinstance(kind, str)
        and (kind == "List" or (kind.endswith("List") and kind[: -len("List")] in KINDS))
        and "items" in doc
    )


def load_documents(text: str) -> list[dict[str, Any]]:
    """Every document of a YAML (or JSON) text, with `kind: List` items spliced in.

    Empty documents are skipped; anything that is not a mapping raises DocumentError.
    """
    try:
        raw = list(yaml.load_all(text, Loader=_Loader))  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise DocumentError(f"not valid YAML or JSON: {exc}") from None
    out: list[dict[str, Any]] = []
    for number, doc in enumerate(raw, start=1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise DocumentError(
                f"document {number} is a {type(doc).__name__}, not a mapping with apiVersion, "
                "kind and metadata"
            )
        if not _is_list(doc):
            out.append(doc)
            continue
        items = doc["items"]
        if not isinstance(items, list):
            raise DocumentError(f"document {number} ({doc['kind']}): items must be a list")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise DocumentError(
                    f"document {number} ({doc['kind']}): items[{index}] is a "
                    f"{type(item).__name__}, not a mapping"
                )
            out.append(item)
    return out


def parse(doc: Mapping[str, Any]) -> Resource:
    """One document as a validated record with Spiderpool's defaults applied.

    Raises ValidationError (or ValidationErrors, a subclass listing several) naming the
    kind, the name, the field and the reason.
    """
    return decode(doc)


def parse_all(text: str) -> list[Resource]:
    """`parse` over every document of a text; the first invalid document raises."""
    return [parse(doc) for doc in load_documents(text)]


def to_document(resource: Resource) -> dict[str, Any]:
    """The canonical Spiderpool JSON document of a record (plain dicts, lists and scalars)."""
    return encode(resource)
