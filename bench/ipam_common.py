"""What `bench.ipam`'s parts and report share: the run's configuration, the warm-up and
batch sizes, and the SpiderIPPool helpers both parts apply pools with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidernet.control.client import Client

API_VERSION = "spiderpool.spidernet.io/v2beta1"

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


def pool_doc(name: str, subnet: str, ips: list[str], **spec: object) -> dict[str, Any]:
    """A SpiderIPPool document."""
    return {
        "apiVersion": API_VERSION,
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"subnet": subnet, "ips": ips, **spec},
    }


def allocated(client: Client, pool: str) -> int:
    """The pool's allocatedIPCount as the service reports it."""
    obj = client.request("GET", f"/v1/resources/SpiderIPPool/{pool}")
    return int(obj["status"]["allocatedIPCount"])
