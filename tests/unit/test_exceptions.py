"""One exception root per side and no exception name used twice: every exception class in
spidernet.node is a NodeError, every one in spidernet.control a ControlError (read from the
sources, then checked on the imported classes), and no two of the product's exception classes
share a name."""

from __future__ import annotations

import ast
import importlib
from collections import Counter
from pathlib import Path

from spidernet.control.errors import ControlError
from spidernet.node.errors import NodeError

ROOT = Path(__file__).resolve().parents[2]
SIDES = {"node": NodeError, "control": ControlError}
PRODUCT = ("node", "control", "cni", "netconf")


def exception_classes(top: str) -> list[tuple[str, str]]:
    """(module, class) of every class under `top/` that names an exception among its bases
    (directly, or a class whose name ends in Error/Failure/Gone/... is assumed one and then
    checked on the real class)."""
    found = []
    for path in sorted((ROOT / top).rglob("*.py")):
        module = "spidernet." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.bases:
                found.append((module, node.name))
    out = []
    for module, name in found:
        cls = getattr(importlib.import_module(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            out.append((module, name))
    return out


def test_each_side_has_one_root() -> None:
    for top, root in SIDES.items():
        classes = exception_classes(top)
        assert len(classes) >= 10
        strays = [
            f"{m}.{n}"
            for m, n in classes
            if not issubclass(getattr(importlib.import_module(m), n), root)
        ]
        assert not strays, f"not a {root.__name__}: {strays}"


def test_no_exception_name_is_used_twice() -> None:
    names = Counter(n for top in PRODUCT for _, n in exception_classes(top))
    assert [n for n, count in names.items() if count > 1] == []
