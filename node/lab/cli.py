"""`spidernet lab`: its parser (cli.py calls `register`) and its table of the lab's pods;
the lab itself is lab.py, imported only when the command runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `lab` (up, status, down) to the subcommands."""
    lab = sub.add_parser(
        "lab",
        help="pods in network namespaces wired through macvlan + spidernet-ipam",
        description="up: start a service, a segment, a gateway and N pods; status: show them; "
        "down: remove all of it.",
    )
    lab.add_argument(
        "action", choices=["up", "status", "down"], help="start, show or remove the lab"
    )
    lab.add_argument("--pods", type=int, default=3, help="pods to create (up; default 3)")
    lab.add_argument("--lab-dir", help="where the lab keeps its state (default /run/spidernet-lab)")
    lab.set_defaults(func=_lab)


def _lab_table(rows: list[Any]) -> None:
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    heads = ("POD", "NETNS", "IPV4", "IPV6", "GATEWAY", "REACHES GW/HOST/SVC", "IPV4 ROUTES")
    for head in heads:
        table.add_column(head, no_wrap=head != "IPV4 ROUTES")
    for r in rows:
        reach = "/".join(
            "yes" if ok else "NO" for ok in (r.reaches_gateway, r.reaches_host, r.reaches_service)
        )
        table.add_row(r.pod, r.netns, r.ipv4, r.ipv6, r.gateway, reach, "\n".join(r.routes))
    Console(width=250, highlight=False, soft_wrap=True).print(table)


def _lab(args: argparse.Namespace) -> int:
    from spidernet.node.lab import lab

    lab_dir = Path(args.lab_dir) if args.lab_dir else lab.DEFAULT_DIR
    if args.action == "up":
        if args.pods < 1:
            print("spidernet: --pods must be at least 1", file=sys.stderr)
            return EXIT_USAGE
        try:
            state = lab.up(
                args.pods, lab_dir, progress=lambda m: print(f"lab: {m}", file=sys.stderr)
            )
        except lab.LabError as e:
            print(f"spidernet: {e}", file=sys.stderr)
            return EXIT_FAILURE
    else:
        loaded = lab.load(lab_dir)
        if args.action == "down":
            errors = lab.down(lab_dir)
            for error in errors:
                print(f"spidernet: {error}", file=sys.stderr)
            print("lab: down" if loaded else "lab: no lab was up", file=sys.stderr)
            return EXIT_FAILURE if errors else EXIT_OK
        if loaded is None:
            print(f"spidernet: no lab is up (state dir {lab_dir})", file=sys.stderr)
            return EXIT_FAILURE
        state = loaded
    rows = lab.rows(state)
    _lab_table(rows)
    return EXIT_OK if all(r.healthy for r in rows) else EXIT_FAILURE
