"""The report of `bench.chain`: the rich tables, the matplotlib plot, the JSON document."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from .chain_measure import VERBS, ChainResults, Config
from .chain_sides import LABELS, REFERENCE, SIDES, SPIDERNET
from .ipam_common import BATCH
from .ipam_report import _ms, _x
from .timing import Summary, ratio

# DESIGN.md "Targets": the full chain within 3x of macvlan + host-local for ADD, and no
# slower for DEL. Printed beside the numbers; the program never passes or fails on them.
GOALS = {"ADD": 3.0, "DEL": 1.0}
MACVLAN = "macvlan"


def chain_ratios(res: ChainResults) -> dict[str, float]:
    """spidernet over reference, medians unless named `_mean`."""
    out = {}
    for verb in VERBS:
        v = verb.lower()
        out[f"{v}_spidernet_over_reference"] = ratio(
            res.median(SPIDERNET, verb), res.median(REFERENCE, verb)
        )
        out[f"{v}_spidernet_over_reference_mean"] = ratio(
            res.mean(SPIDERNET, verb), res.mean(REFERENCE, verb)
        )
        macvlan = {s: Summary.of(res.plugins[s][verb][MACVLAN]).median_ms for s in SIDES}
        out[f"{v}_macvlan_process_spidernet_over_reference"] = ratio(
            macvlan[SPIDERNET], macvlan[REFERENCE]
        )
    return out


def chain_table(res: ChainResults, cfg: Config) -> Table:
    """One row per side and verb: the whole chain call."""
    table = Table(
        title=f"Full chain per call, in netns ({cfg.calls} calls per row, rounds of {BATCH}, "
        "rotating order)",
        title_justify="left",
    )
    for col in ("chain", "verb", "n", "mean ms", "median ms", "p90 ms", "x reference"):
        table.add_column(col, justify="left" if col in ("chain", "verb") else "right")
    for side in SIDES:
        for verb in VERBS:
            s = res.summary(res.chain, side, verb)
            table.add_row(
                LABELS[side],
                verb,
                str(s.n),
                _ms(s.mean_ms),
                _ms(s.median_ms),
                _ms(s.p90_ms),
                _x(ratio(s.median_ms, res.median(REFERENCE, verb))),
            )
    return table


def breakdown_rows(
    res: ChainResults, side: str, verb: str
) -> list[tuple[str, Summary | None, float]]:
    """(part, its summary or None for a difference, median ms) of one side's chain call: the
    whole call, each plugin process in the order run, the runtime's own work between them."""
    whole = res.summary(res.chain, side, verb)
    rows: list[tuple[str, Summary | None, float]] = [("whole chain", whole, whole.median_ms)]
    for plugin, s in res.breakdown(side, verb):
        rows.append((f"{plugin} process", s, s.median_ms))
        if plugin == MACVLAN:
            alone = res.summary(res.ipam, side, verb)
            ipam = res.ipam_types.get(side, "ipam")
            rows.append((f"  its IPAM delegate ({ipam} run alone)", alone, alone.median_ms))
            rows.append(("  macvlan itself (difference)", None, s.median_ms - alone.median_ms))
    rt = res.summary(res.runtime, side, verb)
    rows.append(("runtime between plugins", rt, rt.median_ms))
    return rows


def breakdown_table(res: ChainResults) -> Table:
    """Where each chain's time goes: each plugin process, its IPAM delegate, the runtime."""
    table = Table(
        title="Where a chain call goes: each plugin process, spawn to reaped (indented: "
        "diagnostics inside macvlan's process)",
        title_justify="left",
    )
    for col in ("side", "verb", "part", "median ms", "mean ms", "p90 ms", "% of chain"):
        table.add_column(col, justify="left" if col in ("side", "verb", "part") else "right")
    for side in SIDES:
        for verb in VERBS:
            chain = res.median(side, verb)
            for i, (what, s, median) in enumerate(breakdown_rows(res, side, verb)):
                dim = what.startswith("  ")
                table.add_row(
                    side if i == 0 else "",
                    verb if i == 0 else "",
                    f"[dim]{what}[/]" if dim else what,
                    _ms(median),
                    _ms(s.mean_ms) if s else "",
                    _ms(s.p90_ms) if s else "",
                    f"{100 * median / chain:.0f} %",
                )
            table.add_section()
    return table


def ratios_table(ratios: Mapping[str, float]) -> Table:
    """The headline ratios with their goals beside them."""
    table = Table(title="Ratios spidernet / reference", title_justify="left")
    table.add_column("ratio")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    for verb in VERBS:
        v = verb.lower()
        table.add_row(
            f"chain {verb}, medians",
            _x(ratios[f"{v}_spidernet_over_reference"]),
            f"≤ {GOALS[verb]:.1f}x",
        )
    for verb in VERBS:
        v = verb.lower()
        table.add_row(f"chain {verb}, means", _x(ratios[f"{v}_spidernet_over_reference_mean"]), "")
    for verb in VERBS:
        v = verb.lower()
        key = f"{v}_macvlan_process_spidernet_over_reference"
        table.add_row(
            f"macvlan process {verb} (with its IPAM delegate), medians", _x(ratios[key]), ""
        )
    return table


PART_COLORS = {
    "macvlan itself (difference)": "tab:blue",
    "IPAM delegate (run alone)": "tab:cyan",
    "spidernet-coordinator": "tab:red",
    "runtime between plugins": "tab:gray",
}


def _plot_parts(res: ChainResults, side: str, verb: str) -> list[tuple[str, float]]:
    """The stacked parts of one chain call: macvlan split into itself and its delegate."""
    out = []
    for what, _, median in breakdown_rows(res, side, verb):
        if what in ("whole chain", f"{MACVLAN} process"):
            continue
        part = what.strip().removesuffix(" process")
        if part.startswith("its IPAM delegate"):
            part = "IPAM delegate (run alone)"
        out.append((part, median))
    return out


def plot(path: Path, res: ChainResults, ratios: Mapping[str, float], title: str) -> None:
    """Left: chain medians with p90 whiskers; right: where they go, part by part, stacked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5), layout="constrained")
    rows = [(side, verb) for verb in VERBS for side in SIDES]
    names = [f"{side} {verb}" for side, verb in rows]
    sums = [res.summary(res.chain, side, verb) for side, verb in rows]
    colors = ["tab:red" if side == SPIDERNET else "tab:blue" for side, _ in rows]
    whiskers = [[0.0] * len(sums), [s.p90_ms - s.median_ms for s in sums]]
    left.barh(range(len(rows)), [s.median_ms for s in sums], xerr=whiskers, color=colors, capsize=3)
    left.set_yticks(range(len(rows)), names)
    left.invert_yaxis()
    for i, s in enumerate(sums):
        left.text(s.p90_ms, i, f"  {s.median_ms:.1f} ms", va="center", fontsize=8)
    left.set_xlim(right=max(s.p90_ms for s in sums) * 1.2)
    left.set_xlabel("median ms per chain call (whisker to p90)")
    left.set_title(
        f"Chain: ADD x{ratios['add_spidernet_over_reference']:.2f} (goal ≤ {GOALS['ADD']:.1f}), "
        f"DEL x{ratios['del_spidernet_over_reference']:.2f} (goal ≤ {GOALS['DEL']:.1f})"
    )
    palette = iter(["tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:olive"])
    labelled: set[str] = set()
    part_colors = dict(PART_COLORS)
    for i, (side, verb) in enumerate(rows):
        x = 0.0
        for part, ms in _plot_parts(res, side, verb):
            if part not in part_colors:
                part_colors[part] = next(palette, "black")
            label = None if part in labelled else part
            labelled.add(part)
            right.barh(i, ms, left=x, color=part_colors[part], label=label)
            x += ms
    right.set_yticks(range(len(rows)), names)
    right.invert_yaxis()
    right.set_xlabel("median ms per part, stacked")
    right.set_title("Where a chain call goes (plugin processes; macvlan's IPAM delegate)")
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _series(series: Mapping[str, Mapping[str, list[float]]]) -> dict[str, Any]:
    return {
        side: {v: Summary.of(s).as_dict() for v, s in verbs.items()}
        for side, verbs in series.items()
    }


def report_json(
    cfg: Config,
    machine: Mapping[str, Any],
    res: ChainResults,
    ratios: Mapping[str, float],
    executables: Mapping[str, str],
    *,
    runtime_s: float,
) -> dict[str, Any]:
    """Every number of the run, raw chain samples included."""
    return {
        "schema": 1,
        "machine": dict(machine),
        "config": {"quick": cfg.quick, "calls": cfg.calls, "batch": BATCH, "warmup": cfg.warmup},
        "sides": {
            side: {"label": LABELS[side], "ipam": res.ipam_types.get(side)} for side in SIDES
        },
        "goal": {
            "add_spidernet_over_reference_max": GOALS["ADD"],
            "del_spidernet_over_reference_max": GOALS["DEL"],
        },
        "executables": dict(executables),
        "ratios": dict(ratios),
        "chain": {
            side: {
                verb: {**Summary.of(s).as_dict(), "samples_ms": [round(x * 1e3, 3) for x in s]}
                for verb, s in verbs.items()
            }
            for side, verbs in res.chain.items()
        },
        "plugins": {
            side: {
                verb: {p: Summary.of(s).as_dict() for p, s in plugins.items()}
                for verb, plugins in verbs.items()
            }
            for side, verbs in res.plugins.items()
        },
        "runtime_between_plugins": _series(res.runtime),
        "ipam_alone": _series(res.ipam),
        "checks": dict(res.checks),
        "runtime_s": round(runtime_s, 1),
    }
