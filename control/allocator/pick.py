"""Choosing a free address in a pool without scanning it.

Spiderpool takes the lowest free address (reference/spiderpool.md §2.5), which makes every
node race for the same one and re-reads the whole pool on each try. Here the choice is
random: a few uniform probes, then a walk forward from a random point. The walk's expected
length is 1 / (free fraction), so a 99%-full /16 costs about a hundred set lookups, the same
as a 99%-full /24; two allocators on different nodes rarely pick the same address, and when
they do the store's atomic claim decides and the loser picks again.
"""

from __future__ import annotations

import random
from collections.abc import Container

from spidernet.control.model.iprange import IntervalSet

# Uniform probes before walking: on a pool up to half full one of them almost always hits.
PROBES = 8


def pick(
    usable: IntervalSet,
    reserved: IntervalSet,
    taken: Container[int],
    free: int,
    rng: random.Random,
) -> int | None:
    """A free address of `usable` not in `reserved` nor `taken`, or None when none is left.

    `free` is the caller's upper bound on the free addresses; at zero or below the pool is
    full and nothing is probed. The walk is bounded by the pool size, so a bound that is
    too high costs time, never a wrong answer.
    """
    size = usable.count
    if size == 0 or free <= 0:
        return None
    for _ in range(PROBES):
        ip = usable.nth(rng.randrange(size))
        if ip not in taken and ip not in reserved:
            return ip
    start = rng.randrange(size)
    for step in range(size):
        ip = usable.nth((start + step) % size)
        if ip not in taken and ip not in reserved:
            return ip
    return None
