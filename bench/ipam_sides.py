"""Part 1's rows and the loop that times them: a side is called once per sample, either an
executable spawned per call (`ProcessSide`) or the forwarding code in this process
(`ForwardSide`); `measure_calls` runs every side in the same rounds, in rotating order.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Console

from spidernet.cni import forward

from .ipam_common import BATCH, WARMUP
from .timing import Spawner, SpawnError

PLUGIN = "spidernet-ipam"

ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETNS = "/var/run/netns/snt-bench"  # never opened: an IPAM plugin does not enter the netns
RUN = "run"  # the one "verb" of rows that are not CNI calls


class Side(Protocol):
    """One row group of part 1: something called once per sample."""

    key: str
    label: str
    verbs: tuple[str, ...]
    diagnostic: bool

    def call(self, verb: str, container: str) -> float:
        """Run one call; its duration in seconds. Raises SpawnError when it failed."""
        ...


def _cni_env(verb: str, container: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": NETNS,
        "CNI_IFNAME": "eth0",
    }


def _check(label: str, verb: str, status: int, stdout: bytes, stderr: bytes | str) -> None:
    if status != 0:
        raise SpawnError(f"{label} {verb} exited {status}: {stdout!r} {stderr!r}")
    if verb == "ADD":
        try:
            ips = json.loads(stdout).get("ips")
        except (ValueError, AttributeError):
            ips = None
        if not ips:
            raise SpawnError(f"{label} ADD answered without addresses: {stdout!r}")


@dataclass
class ProcessSide:
    """An executable spawned once per call (a CNI plugin, or an interpreter)."""

    key: str
    label: str
    argv: tuple[str, ...]
    spawner: Spawner
    stdin: bytes = b""
    env: Mapping[str, str] = field(default_factory=dict)
    verbs: tuple[str, ...] = (RUN,)
    diagnostic: bool = False

    def call(self, verb: str, container: str) -> float:
        env = {"PATH": ENV_PATH, **self.env}
        if verb != RUN:
            env.update(_cni_env(verb, container))
        done = self.spawner.run(self.argv, env, self.stdin)
        _check(self.label, verb, done.status, done.stdout, done.stderr)
        return done.seconds


@dataclass
class ForwardSide:
    """The executable's forwarding code called in this process: the service's share alone."""

    key: str
    label: str
    stdin: bytes
    cni_path: str
    verbs: tuple[str, ...] = ("ADD", "DEL")
    diagnostic: bool = True

    def call(self, verb: str, container: str) -> float:
        env = {"PATH": ENV_PATH, "CNI_PATH": self.cni_path, **_cni_env(verb, container)}
        start = time.perf_counter()
        status, out, err = forward.forward(PLUGIN, env, self.stdin)
        seconds = time.perf_counter() - start
        _check(self.label, verb, status, out, err)
        return seconds


Samples = dict[str, dict[str, list[float]]]


def measure_calls(sides: Sequence[Side], n: int, console: Console) -> Samples:
    """`n` calls of each verb of each side, in rounds of BATCH; side order rotates per round."""
    samples: Samples = {s.key: {v: [] for v in s.verbs} for s in sides}
    rounds = math.ceil(n / BATCH)
    with console.status("") as status:
        for r in range(-1, rounds):
            size = WARMUP if r < 0 else min(BATCH, n - r * BATCH)
            shift = r % len(sides)
            status.update("per-call warm-up" if r < 0 else f"per-call round {r + 1}/{rounds}")
            for side in [*sides[shift:], *sides[:shift]]:
                ids = [f"{side.key}-{'w' if r < 0 else r}-{i}" for i in range(size)]
                for verb in side.verbs:
                    for cid in ids:
                        seconds = side.call(verb, cid)
                        if r >= 0:
                            samples[side.key][verb].append(seconds)
    return samples
