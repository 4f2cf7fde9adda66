"""spidernet-ipam against Go `host-local`, and allocation time against pool size and fill.

    python -m bench.ipam [--quick] [--out DIR] [--calls N] [--pairs M]

Part 1, per-call cost as a process: N sequential ADDs and N DELs of the installed
`spidernet-ipam` executable (forwarding to a running `spidernet serve`), of Go `host-local`
(temporary dataDir), and N runs of CPython doing nothing (`-I -S -c pass`, the system and the
venv interpreter). All sides run in the same rounds, in rotating order, after a warm-up, so
machine noise hits each alike. A few diagnostic rows split spidernet-ipam's time into its
parts (interpreter start, the executable's own imports, `import json`, the service).

Part 2, allocation through the service API (`POST /v1/ipam/allocate`) for pools of /24, /20,
/18 and /16 at 0, 50, 90 and 99 % full: each timed allocation is released again, so the fill
stays put. Pools are filled between levels by the service's own allocator and store
(`IpamCore` on the service's state directory) while the service is stopped: a /16 at 99 % is
65 k allocations, which the API would take minutes to make (the run prints its estimate).

Everything is reported as ratios, never as pass/fail; the numbers go to DIR/ipam.json and a
plot to DIR/ipam.png (default bench/results/).
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

from .ipam_alloc import part_alloc
from .ipam_calls import HOST_LOCAL, attribution, call_ratios, part_calls
from .ipam_common import Config
from .ipam_report import (
    alloc_table,
    attribution_table,
    calls_table,
    fill_table,
    plot,
    ratios_table,
    report_json,
)
from .runs import (
    RUN_FAILURES,
    OwnStack,
    console,
    guarded,
    machine_facts,
    machine_line,
    missing_plugins,
)
from .timing import Spawner

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
CALLS, QUICK_CALLS = 300, 30
PAIRS, QUICK_PAIRS = 200, 30
PREFIXES, QUICK_PREFIXES = (24, 20, 18, 16), (24, 20)
FILLS = (0.0, 0.5, 0.9, 0.99)


def header(console: Console, machine: Mapping[str, Any], cfg: Config) -> str:
    """Print the run's header; returns a one-line form for the plot."""
    line = machine_line(machine)
    console.rule("spidernet IPAM benchmark" + (" (--quick)" if cfg.quick else ""))
    console.print(line)
    console.print(
        f"per call: {cfg.calls} ADD + {cfg.calls} DEL per plugin; allocation: pools "
        f"{', '.join(f'/{p}' for p in cfg.prefixes)} at "
        f"{', '.join(f'{f:.0%}' for f in cfg.fills)} full, {cfg.pairs} pairs per cell"
    )
    return line


def run(cfg: Config, console: Console) -> None:
    """Measure both parts, print the tables, write the JSON and the PNG."""
    began = time.monotonic()
    machine = machine_facts()
    title = header(console, machine, cfg)
    spawner = Spawner()
    base = Path(tempfile.mkdtemp(prefix="snt-bench-"))
    with OwnStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        stack.callback(spawner.kill_live)
        calls = part_calls(cfg, base, spawner, stack, console)
        console.print(calls_table(calls, cfg.calls))
        console.print(attribution_table(attribution(calls, "ADD")))
        alloc = part_alloc(cfg, base, stack, console)
    console.print(alloc_table(alloc, cfg))
    console.print(fill_table(alloc))
    ratios = {**call_ratios(calls), "alloc_largest_over_smallest": alloc.flatness()}
    console.print(ratios_table(ratios))
    console.print(
        f"filling took {sum(f.seconds for f in alloc.fills):.1f} s in-process; through the API "
        f"it would take ≈ {alloc.api_fill_estimate_s():.0f} s at the measured 0 % medians"
    )
    cfg.out.mkdir(parents=True, exist_ok=True)
    png, out_json = cfg.out / "ipam.png", cfg.out / "ipam.json"
    plot(png, calls, alloc, cfg, title)
    runtime = time.monotonic() - began
    doc = report_json(cfg, machine, calls, alloc, ratios, runtime_s=runtime)
    out_json.write_text(json.dumps(doc, indent=1) + "\n")
    console.print(f"wrote {out_json} and {png}; total runtime {runtime:.1f} s")


def parse_args(argv: Sequence[str] | None) -> Config:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.ipam",
        description="spidernet-ipam against Go host-local; allocation vs pool size and fill",
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls, /24 and /20 only")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write results")
    parser.add_argument("--calls", type=int, help="calls per row in part 1")
    parser.add_argument("--pairs", type=int, help="allocate+release pairs per cell in part 2")
    args = parser.parse_args(argv)
    calls = args.calls or (QUICK_CALLS if args.quick else CALLS)
    pairs = args.pairs or (QUICK_PAIRS if args.quick else PAIRS)
    if calls < 2 or pairs < 2:
        parser.error("--calls and --pairs must be at least 2")
    return Config(
        quick=args.quick,
        calls=calls,
        pairs=pairs,
        prefixes=QUICK_PREFIXES if args.quick else PREFIXES,
        fills=FILLS,
        out=args.out,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when the run finished, 1 when a measured call failed, 130 on Ctrl-C."""
    cfg = parse_args(argv)
    out = console()
    if missing_plugins(out, [HOST_LOCAL]):
        return 1
    return guarded(out, lambda: run(cfg, out), RUN_FAILURES)


if __name__ == "__main__":
    sys.exit(main())
