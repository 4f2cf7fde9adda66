"""`spidernet get` through the API server (a kubeconfig, or in a pod its service account):
Spider* objects with their CRDs' printer columns and AGE, `-A`, `-l` (sent to the server),
`-o wide|yaml|json|name`, and `--watch` (list, then a line per change until Ctrl-C).

The pure parts are control/model/printing.py (columns, ages) and control/model/listing.py
(applyable documents, selectors, names); this module reads and prints.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from spidernet.control.crds import printer
from spidernet.control.model.listing import Selector, applyable, as_list, name_line
from spidernet.control.model.printing import widths

if TYPE_CHECKING:
    from spidernet.control.store.kube_get import KubeGetApi

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


@dataclass(frozen=True)
class Request:
    """One `get`: what to read and how to print it."""

    kind: str
    name: str | None
    namespace: str | None  # None: every namespace (-A), or a cluster-scoped kind
    selector: Selector | None
    output: str  # table, wide, json, yaml, name
    watch: bool = False
    watch_events: bool = False


def get(
    api: KubeGetApi,
    req: Request,
    *,
    out: TextIO = sys.stdout,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Print what `req` asks for; with `watch`, then every change until interrupted
    (KeyboardInterrupt propagates; the caller turns it into exit 130). Raises StoreError."""
    from spidernet.control.store.base import Expired

    view = _View(req, out, clock)
    selector = req.selector.text if req.selector else None
    if req.name is not None:
        items = [api.get(req.kind, req.namespace, req.name)]
        version = str(items[0].get("metadata", {}).get("resourceVersion", ""))
    else:
        listing = api.list(req.kind, req.namespace, selector)
        items, version = list(listing.items), listing.version
    view.first(items)
    while req.watch:
        try:
            for event in api.watch(req.kind, req.namespace, selector, version):
                version = str(event.object.get("metadata", {}).get("resourceVersion", version))
                if req.name is None or event.object.get("metadata", {}).get("name") == req.name:
                    view.change(event.type, event.object)
        except Expired:
            # Older than the server's watch cache: list again and go on from there, as
            # kubectl's watch does (what changed meanwhile prints as MODIFIED).
            listing = api.list(req.kind, req.namespace, selector)
            version = listing.version
            for doc in listing.items:
                if req.name is None or doc.get("metadata", {}).get("name") == req.name:
                    view.change("MODIFIED", doc)
    return EXIT_OK


class _View:
    """The printing side of one `get`: the first listing, then a watch's changes."""

    def __init__(self, req: Request, out: TextIO, clock: Callable[[], datetime]) -> None:
        self.req, self.out, self.clock = req, out, clock
        self.info = printer().kinds[req.kind]
        self.widths: list[int] | None = None  # a table's, once its header is printed

    def first(self, items: Sequence[Mapping[str, Any]]) -> None:
        req = self.req
        if req.output in ("json", "yaml") and not req.watch:
            doc = applyable(items[0]) if req.name is not None else as_list(items)
            self._dump(doc)
        elif req.output in ("json", "yaml"):
            for item in items:
                self._dump(applyable(item))
        elif req.output == "name":
            for item in items:
                print(name_line(item, self.info.group), file=self.out, flush=True)
        elif items:
            self._rows([("ADDED", item) for item in items])
        if not items and req.output not in ("json", "yaml"):
            where = f" in {req.namespace} namespace" if req.namespace else ""
            print(f"No resources found{where}.", file=sys.stderr, flush=True)

    def change(self, kind: str, doc: Mapping[str, Any]) -> None:
        if self.req.output in ("json", "yaml"):
            self._dump(applyable(doc))
        elif self.req.output == "name":
            print(name_line(doc, self.info.group), file=self.out, flush=True)
        else:
            self._rows([(kind, doc)])

    def _dump(self, doc: Mapping[str, Any]) -> None:
        if self.req.output == "json":
            print(json.dumps(doc, indent=2, sort_keys=True), file=self.out, flush=True)
            return
        start = "---\n" if self.req.watch else ""
        text = yaml.safe_dump(dict(doc), sort_keys=True)
        print(start + text, file=self.out, end="", flush=True)

    def _rows(self, changes: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        req = self.req
        headers, rows = printer().table(
            req.kind,
            [doc for _, doc in changes],
            req.output == "wide",
            namespaces=req.namespace is None,
            now=self.clock(),
        )
        if req.watch_events:
            headers = ["EVENT", *headers]
            rows = [[kind, *row] for (kind, _), row in zip(changes, rows, strict=True)]
        show_header = self.widths is None
        seen = widths(headers, rows)
        if self.widths is not None:
            seen = [max(a, b) for a, b in zip(self.widths, seen, strict=True)]
        self.widths = seen
        render(headers, rows, self.widths, self.out, header=show_header)


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    column_widths: Sequence[int],
    out: TextIO,
    *,
    header: bool = True,
) -> None:
    """A kubectl-style table (no rules, columns three spaces apart) of at least these widths,
    so that a watch's later rows line up under the first ones."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, show_header=header, pad_edge=False, padding=(0, 3, 0, 0))
    for head, width in zip(headers, column_widths, strict=True):
        table.add_column(head, no_wrap=True, min_width=width, header_style="")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # (cells are text, never markup)
    console = Console(file=out, width=400, highlight=False, soft_wrap=True, emoji=False)
    console.print(table, markup=False)
    out.flush()
