"""`spidernet diag TARGET`: the command around `run.diagnose` (options in, report out).

Exit status: 0 healthy (no findings), 1 findings, 2 usage errors (a bad option, a target
that names nothing). `-o json` prints the document of docs/diag.schema.json.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from spidernet.control.client import Client, socket_path, state_dir
from spidernet.node import netns
from spidernet.node.access.broker import Broker

from .gather import Service
from .plan import parse_to
from .render import document, tables
from .run import Options, TargetError, diagnose

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
SERVICE_TIMEOUT_S = 5


def _print_tables(doc: dict[str, object], out: TextIO) -> None:
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # No console markup: addresses, queries and "[table 100]" are printed as they are.
    console = Console(file=out, width=200, highlight=False, soft_wrap=True, markup=False)
    target = doc["target"]
    assert isinstance(target, dict)
    pod = f" ({target['pod']})" if target.get("pod") else ""
    console.print(f"pod {target['netns']}{pod}", style="bold")
    for title, columns, rows in tables(doc):
        table = Table(title=title, title_justify="left", box=SIMPLE_HEAD, header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
    findings = doc["findings"]
    unchecked = doc["unchecked"]
    assert isinstance(findings, list)
    assert isinstance(unchecked, list)
    for line in unchecked:
        console.print(f"not checked: {line}")
    if not findings:
        console.print("no findings", style="bold")
        return
    console.print(f"{len(findings)} finding{'s' if len(findings) != 1 else ''}", style="bold")
    for f in findings:
        console.print(f"- {f['kind']}: {f['message']}\n    confirm: {f['confirm']}")


def main(
    target: str,
    *,
    host_netns: str | None = None,
    to: Sequence[str] = (),
    output: str = "table",
    probe: bool = True,
    socket: str | None = None,
    state: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run diag and print its report; returns the exit status."""
    try:
        extra = tuple(parse_to(t) for t in to)
    except ValueError as e:
        err.write(f"spidernet diag: --to: {e}\n")
        return EXIT_USAGE
    host = netns.path_of(host_netns) if host_netns else None
    service = Service(Client(socket_path(socket), timeout=SERVICE_TIMEOUT_S))
    broker = Broker()
    try:
        plans = state_dir(state, ask=service.state_dir)
        options = Options(target, host, extra, probe, state_dir=plans)
        report = diagnose(options, broker, service)
    except (TargetError, netns.NetnsGone) as e:
        err.write(f"spidernet diag: {e}\n")
        return EXIT_USAGE
    finally:
        broker.close()
    doc = document(report)
    if output == "json":
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        _print_tables(doc, out)
    return EXIT_FINDINGS if report.findings else EXIT_OK
