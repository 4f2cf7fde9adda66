"""A full CNI chain ADD and DEL in network namespaces, as a runtime runs it, side by side:

    python -m bench.chain [--quick] [--out DIR] [--calls N]

- reference: Debian's Go `macvlan` + `host-local` (temporary dataDir);
- spidernet: `macvlan` + `spidernet-ipam` (forwarding to a running `spidernet serve`) +
  `spidernet-coordinator`, as `spidernet install-cni` writes them.

The plugins run in a "host" namespace whose eth0 is the macvlan master, spawned by a small
runtime worker (`bench.chain_worker`) that was started there once, so no `ip netns exec` is
paid per plugin. Each chain call is ADD through every plugin (each result passed on as
`prevResult`) or DEL in reverse order with the cached result, as libcni runs it. Both sides
run in the same rounds, in rotating order, after a warm-up. Results are checked while
measuring (every ADD has an address; after every DEL nothing is allocated and no link is
left behind). Ratios are reported beside their goals, never as pass/fail; the numbers go
to DIR/chain.json and a plot to DIR/chain.png (default bench/results/).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from spidernet.node.netns import NetnsCommandError

from .chain_measure import ChainResults, Config, measure
from .chain_report import (
    breakdown_table,
    chain_ratios,
    chain_table,
    plot,
    ratios_table,
    report_json,
)
from .chain_sides import LABELS, SIDES, SPIDERNET, build_lab, verify_clean
from .ipam_calls import HOST_LOCAL
from .ipam_common import BATCH, WARMUP
from .runs import (
    RUN_FAILURES,
    OwnStack,
    console,
    guarded,
    machine_facts,
    machine_line,
    missing_plugins,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
CALLS, QUICK_CALLS = 100, 15
MACVLAN = HOST_LOCAL.parent / "macvlan"
IPAM, COORDINATOR = "spidernet-ipam", "spidernet-coordinator"


def header(console: Console, machine: Mapping[str, Any], cfg: Config) -> str:
    """Print the run's header; returns a one-line form for the plot."""
    line = machine_line(machine)
    console.rule("spidernet CNI chain benchmark" + (" (--quick)" if cfg.quick else ""))
    console.print(line)
    console.print(
        f"{cfg.calls} chain ADD + {cfg.calls} DEL per side after {cfg.warmup} warm-up calls; "
        f"sides: {'; '.join(LABELS[s] for s in SIDES)}"
    )
    return line


def where_it_goes(res: ChainResults) -> str:
    """One sentence: the spidernet chain's largest part, ADD and DEL."""
    parts = []
    for verb in ("ADD", "DEL"):
        chain = res.median(SPIDERNET, verb)
        plugin, s = max(res.breakdown(SPIDERNET, verb), key=lambda ps: ps[1].median_ms)
        parts.append(f"{verb}: {plugin} {s.median_ms:.1f} of {chain:.1f} ms")
    return "spidernet chain, largest process per call (medians): " + "; ".join(parts)


def run(cfg: Config, console: Console) -> None:
    """Build the lab, measure, verify, print the tables, write the JSON and the PNG."""
    began = time.monotonic()
    machine = {**machine_facts(), "macvlan": str(MACVLAN)}
    title = header(console, machine, cfg)
    base = Path(tempfile.mkdtemp(prefix="snt-bench-"))
    with OwnStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        with console.status("building the lab (namespaces, install-cni, spidernet serve)"):
            lab = build_lab(base, stack, console)
        executables = {name: lab.executables[name] for name in (IPAM, COORDINATOR)}
        console.print("installed: " + "; ".join(f"{k} {v}" for k, v in executables.items()))
        res = measure(lab, cfg, console)
        res.checks = verify_clean(lab)
    console.print(chain_table(res, cfg))
    console.print(breakdown_table(res))
    ratios = chain_ratios(res)
    console.print(ratios_table(ratios))
    console.print(where_it_goes(res))
    console.print(f"checked after every DEL: {json.dumps(res.checks)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    png, out_json = cfg.out / "chain.png", cfg.out / "chain.json"
    plot(png, res, ratios, title)
    runtime = time.monotonic() - began
    doc = report_json(cfg, machine, res, ratios, executables, runtime_s=runtime)
    out_json.write_text(json.dumps(doc, indent=1) + "\n")
    console.print(f"wrote {out_json} and {png}; total runtime {runtime:.1f} s")


def parse_args(argv: Sequence[str] | None) -> Config:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.chain",
        description="macvlan + spidernet-ipam + spidernet-coordinator against Go macvlan + "
        "host-local: a full chain ADD and DEL per call, in network namespaces",
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CALLS} calls per side")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write results")
    parser.add_argument("--calls", type=int, help=f"chain calls per side (default {CALLS})")
    args = parser.parse_args(argv)
    calls = args.calls or (QUICK_CALLS if args.quick else CALLS)
    if calls < 2:
        parser.error("--calls must be at least 2")
    warmup = min(WARMUP, BATCH)  # one pod namespace per warm-up call
    return Config(quick=args.quick, calls=calls, warmup=warmup, out=args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when the run finished, 1 when a call or a check failed, 130 on Ctrl-C."""
    cfg = parse_args(argv)
    out = console()
    if missing_plugins(out, [HOST_LOCAL, MACVLAN]):
        return 1
    failures = (*RUN_FAILURES, NetnsCommandError)
    removed = "every namespace, process and temporary file"
    return guarded(out, lambda: run(cfg, out), failures, removed)


if __name__ == "__main__":
    sys.exit(main())
