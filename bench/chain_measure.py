"""The measuring loop of `bench.chain`: both chains in the same rounds, in rotating order.

Each round gives each side, in turn, BATCH chain ADDs (one per pod namespace of the pool),
then the BATCH DELs, then as many ADD and DEL calls of its IPAM plugin alone (a diagnostic:
what the IPAM delegate costs inside macvlan's process). A warm-up round is not recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .chain_sides import SIDES, Lab, cni_args
from .ipam_common import BATCH
from .timing import Summary

VERBS = ("ADD", "DEL")


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    quick: bool
    calls: int
    warmup: int
    out: Path


Series = dict[str, dict[str, list[float]]]  # side -> verb -> seconds


def _series() -> Series:
    return {side: {verb: [] for verb in VERBS} for side in SIDES}


@dataclass
class ChainResults:
    """Every sample, in seconds."""

    chain: Series = field(default_factory=_series)  # the whole chain call
    runtime: Series = field(default_factory=_series)  # chain minus its plugin processes
    ipam: Series = field(default_factory=_series)  # the IPAM plugin alone
    # side -> verb -> plugin type -> seconds of that plugin's process
    plugins: dict[str, dict[str, dict[str, list[float]]]] = field(
        default_factory=lambda: {side: {verb: {} for verb in VERBS} for side in SIDES}
    )
    ipam_types: dict[str, str] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)

    def record(self, side: str, verb: str, answer: Mapping[str, Any]) -> None:
        """One chain call's answer from the worker."""
        seconds = float(answer["seconds"])
        timed = [(str(p), float(s)) for p, s in answer["plugins"]]
        self.chain[side][verb].append(seconds)
        self.runtime[side][verb].append(seconds - sum(s for _, s in timed))
        for plugin, s in timed:
            self.plugins[side][verb].setdefault(plugin, []).append(s)

    def summary(self, series: Series, side: str, verb: str) -> Summary:
        """The summary of one side and verb of `series`."""
        return Summary.of(series[side][verb])

    def median(self, side: str, verb: str) -> float:
        """Median milliseconds of a chain call."""
        return self.summary(self.chain, side, verb).median_ms

    def mean(self, side: str, verb: str) -> float:
        """Mean milliseconds of a chain call."""
        return self.summary(self.chain, side, verb).mean_ms

    def breakdown(self, side: str, verb: str) -> Iterator[tuple[str, Summary]]:
        """Each plugin process of the chain, in the order the runtime ran them."""
        for plugin, samples in self.plugins[side][verb].items():
            yield plugin, Summary.of(samples)


def _rounds(cfg: Config) -> Iterator[tuple[int, int]]:
    """(round, size): the warm-up as round -1, then rounds of BATCH calls."""
    if cfg.warmup:
        yield -1, cfg.warmup
    for r in range(math.ceil(cfg.calls / BATCH)):
        yield r, min(BATCH, cfg.calls - r * BATCH)


def _turn(lab: Lab, res: ChainResults, side: str, tag: str, size: int, *, keep: bool) -> None:
    """One side's turn in a round: `size` chain ADDs, their DELs, then its IPAM plugin alone
    as often; recorded when `keep` (not in the warm-up)."""
    pods = [(f"{side}-{tag}-{i}", lab.pod_path(i)) for i in range(size)]
    for op, suffix in (("chain", ""), ("ipam", "-ipam")):
        for verb in VERBS:
            for cid, path in pods:
                container = cid + suffix
                answer = lab.worker.call(
                    op=op,
                    net=side,
                    verb=verb,
                    container=container,
                    netns=path,
                    args=cni_args(container),
                )
                if op == "ipam":
                    res.ipam_types[side] = str(answer["plugins"][0][0])
                if not keep:
                    continue
                if op == "chain":
                    res.record(side, verb, answer)
                else:
                    res.ipam[side][verb].append(float(answer["seconds"]))


def measure(lab: Lab, cfg: Config, console: Console) -> ChainResults:
    """`cfg.calls` chain ADDs and DELs of each side (and its IPAM plugin alone)."""
    res = ChainResults()
    rounds = math.ceil(cfg.calls / BATCH)
    with console.status("") as status:
        for r, size in _rounds(cfg):
            shift = r % len(SIDES)
            for side in [*SIDES[shift:], *SIDES[:shift]]:
                what = "warm-up" if r < 0 else f"round {r + 1}/{rounds}"
                status.update(f"chain {what}: {side}")
                _turn(lab, res, side, "w" if r < 0 else str(r), size, keep=r >= 0)
    return res
