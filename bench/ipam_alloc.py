"""Part 2 of `bench.ipam`, allocation through the service API for pools of several sizes at
several fills: each timed allocation is released again, so the fill stays put; pools are
filled between levels in-process by the service's own allocator and store.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from spidernet.control.client import Client
from spidernet.control.store.embedded import open_store
from spidernet.node.agent.ipam import IpamCore
from spidernet.node.ipam.conf import IpamConf, PodMeta
from spidernet.node.ipam.plugin import IpamCall
from spidernet.node.lab.service import ServiceProcess

from .ipam_common import WARMUP, Config, allocated, pool_doc
from .timing import SpawnError, Summary, ratio


@dataclass(frozen=True)
class PoolSpec:
    """A benchmark pool: the whole subnet but network, broadcast and the gateway (.1).

    The control pool is a /24 that stays empty at every level: measured interleaved with the
    others, it shows how much of a change between levels comes from the pool's own fill and
    how much from everything else (a fresh service per level, a fuller store)."""

    prefix: int
    control: bool = False

    @property
    def name(self) -> str:
        """The SpiderIPPool's name."""
        return f"bench-control-{self.prefix}" if self.control else f"bench-{self.prefix}"

    @property
    def label(self) -> str:
        """Its row label."""
        return f"/{self.prefix} control, always empty" if self.control else f"/{self.prefix}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        """10.(100+prefix).0.0/prefix (control: 10.200.0.0): one distinct /16 per pool."""
        second = 200 if self.control else 100 + self.prefix
        return ipaddress.IPv4Network(f"10.{second}.0.0/{self.prefix}")

    @property
    def usable(self) -> int:
        """Allocatable addresses."""
        return self.subnet.num_addresses - 3

    def doc(self) -> dict[str, Any]:
        """The SpiderIPPool document."""
        net = self.subnet
        gateway, first, last = net[1], net[2], net[-2]
        return pool_doc(self.name, str(net), [f"{first}-{last}"], gateway=str(gateway))

    def target(self, fill: float) -> int:
        """Addresses held at `fill` (none for the control pool)."""
        return 0 if self.control else round(fill * self.usable)


CONTROL = PoolSpec(24, control=True)


@dataclass(frozen=True)
class Cell:
    """One pool at one fill: allocate and release times through the API."""

    pool: PoolSpec
    fill: float
    held: int
    allocate: Summary
    release: Summary
    allocate_s: list[float]


@dataclass(frozen=True)
class FillStep:
    """Filling one pool from one level to the next, in-process."""

    prefix: int
    fill: float
    allocations: int
    seconds: float


@dataclass
class AllocResults:
    """Part 2's cells, fill steps, mirror loads and service start times."""

    cells: list[Cell] = field(default_factory=list)
    fills: list[FillStep] = field(default_factory=list)
    loads_s: list[float] = field(default_factory=list)
    starts_s: list[float] = field(default_factory=list)

    def cell(self, pool: PoolSpec, fill: float) -> Cell:
        """The cell of one pool at one fill."""
        return next(c for c in self.cells if c.pool == pool and c.fill == fill)

    def flatness(self) -> float:
        """Largest over smallest median allocate time among the cells (control excluded)."""
        medians = [c.allocate.median_ms for c in self.cells if not c.pool.control]
        return ratio(max(medians), min(medians))

    def api_fill_estimate_s(self) -> float:
        """How long the same fills would take through the API, at each pool's 0 % median."""
        return sum(
            step.allocations * self.cell(PoolSpec(step.prefix), 0.0).allocate.median_ms / 1000.0
            for step in self.fills
        )


def fill_in_process(
    state_dir: Path, specs: Sequence[PoolSpec], fill: float, held: dict[str, int], res: AllocResults
) -> None:
    """Allocate in-process with the service's allocator and store until each pool holds its
    target at `fill`. The service must be stopped. synchronous=NORMAL: the fill's own
    durability does not matter, and the service reopens the file with its default (FULL).
    Loading the allocator's mirrors of the store is timed apart from the allocations."""
    store = open_store(state_dir, synchronous="NORMAL")
    try:
        core = IpamCore(store)
        began = time.perf_counter()
        core.view.sync()
        res.loads_s.append(time.perf_counter() - began)
        for spec in specs:
            want = spec.target(fill)
            if want <= held[spec.name]:
                continue
            conf = IpamConf(default_ipv4_ippool=(spec.name,))
            start = time.perf_counter()
            for k in range(held[spec.name], want):
                name = f"{spec.name}-{k}"
                pod = PodMeta(namespace="fill", name=name)
                core.allocate(IpamCall(name, "eth0", "", "bench", conf, pod))
            seconds = time.perf_counter() - start
            res.fills.append(FillStep(spec.prefix, fill, want - held[spec.name], seconds))
            held[spec.name] = want
    finally:
        store.close()


def measure_pairs(
    client: Client, specs: Sequence[PoolSpec], fill: float, pairs: int
) -> dict[str, tuple[list[float], list[float]]]:
    """`pairs` timed allocate+release pairs per pool, pools interleaved (order rotating)."""
    times: dict[str, tuple[list[float], list[float]]] = {s.name: ([], []) for s in specs}
    for i in range(-WARMUP, pairs):
        shift = i % len(specs)
        for spec in [*specs[shift:], *specs[:shift]]:
            cid = f"m-{spec.name}-{round(fill * 100)}-{'w' if i < 0 else ''}{abs(i)}"
            body = {
                "containerID": cid,
                "ifName": "eth0",
                "podNamespace": "bench",
                "podName": cid,
                "defaultIPv4IPPool": [spec.name],
            }
            start = time.perf_counter()
            answer = client.request("POST", "/v1/ipam/allocate", body)
            middle = time.perf_counter()
            client.request("POST", "/v1/ipam/release", body)
            end = time.perf_counter()
            ips = answer.get("ips") or [{}]
            address = ipaddress.ip_interface(str(ips[0].get("address")))
            if address.ip not in spec.subnet:
                raise SpawnError(f"pool {spec.name} answered {address}")
            if i >= 0:
                times[spec.name][0].append(middle - start)
                times[spec.name][1].append(end - middle)
    return times


def part_alloc(cfg: Config, base: Path, stack: ExitStack, console: Console) -> AllocResults:
    """Part 2 against one state directory, its service restarted around each fill."""
    specs = [*(PoolSpec(p) for p in cfg.prefixes), CONTROL]
    svc = ServiceProcess(socket=base / "a.sock", state_dir=base / "alloc", log=base / "alloc.log")
    stack.callback(svc.stop)
    res = AllocResults()
    held = {s.name: 0 for s in specs}

    def start() -> None:
        began = time.perf_counter()
        svc.start()
        res.starts_s.append(time.perf_counter() - began)

    start()
    for spec in specs:
        svc.client.request("POST", "/v1/resources", spec.doc())
    for fill in cfg.fills:
        if any(s.target(fill) > held[s.name] for s in specs):
            svc.stop()
            with console.status(f"filling pools to {fill:.0%} in-process"):
                fill_in_process(svc.state_dir, specs, fill, held, res)
            start()
        with console.status(f"allocate+release at {fill:.0%} through the API"):
            times = measure_pairs(svc.client, specs, fill, cfg.pairs)
        for spec in specs:
            seen = allocated(svc.client, spec.name)
            if seen != held[spec.name]:
                raise SpawnError(f"{spec.name}: {seen} allocated, {held[spec.name]} expected")
            alloc_s, release_s = times[spec.name]
            summary = Summary.of(alloc_s), Summary.of(release_s)
            res.cells.append(Cell(spec, fill, seen, *summary, alloc_s))
    svc.stop()
    return res
