"""The CustomResourceDefinitions of deploy/chart/crds, as installed with the package (package data):
the one source of the kinds' printer columns for `spidernet get` (control/model/printing.py)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml

from spidernet.control.model.printing import Printer

SPIDER_PREFIX = "spiderpool.spidernet.io_"


def spider_crds() -> list[dict[str, Any]]:
    """The six Spider* CRD documents, read from the package's deploy/chart/crds."""
    folder = resources.files("spidernet").joinpath("deploy", "chart", "crds")
    out: list[dict[str, Any]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.startswith(SPIDER_PREFIX) and entry.name.endswith(".yaml"):
            out.extend(d for d in yaml.safe_load_all(entry.read_text(encoding="utf-8")) if d)
    return out


@functools.cache
def printer() -> Printer:
    """A Printer with the packaged CRDs' columns (read once)."""
    return Printer(spider_crds())
