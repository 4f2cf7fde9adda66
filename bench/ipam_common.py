"""What `bench.ipam`'s parts and report share: the run's configuration, the warm-up and
batch sizes, and (from the lab, spidernet.testbed.pools) the SpiderIPPool helpers both
parts apply pools with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spidernet.testbed.pools import allocated
from spidernet.testbed.pools import ippool as pool_doc

BATCH = 10  # calls of one side in a row before the next side's turn
WARMUP = 3  # unrecorded calls of each side (and pairs of each pool) first


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    quick: bool
    calls: int
    pairs: int
    prefixes: tuple[int, ...]
    fills: tuple[float, ...]
    out: Path


__all__ = ["BATCH", "WARMUP", "Config", "allocated", "pool_doc"]
