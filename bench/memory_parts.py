"""The measurements of `bench.memory`: the node service's resident set read from /proc (its
own and each descendant's, apart), idle and holding N endpoints, and the peak resident set
of plugin processes from `wait4`'s resource usage.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from spidernet.control.client import Client
from spidernet.node.lab.service import ServiceProcess

from .ipam_calls import HOST_LOCAL, HOST_LOCAL_SUBNET, cni_conf, install_plugins
from .ipam_common import allocated, pool_doc
from .ipam_sides import ENV_PATH, PLUGIN, ProcessSide
from .timing import Spawned, Spawner, SpawnError

POOL = "bench-memory"
NAMESPACE = "bench-memory"
SETTLE_S = 2.0  # after the service answers, and after the allocations, before reading /proc
STATUS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")
VERBS = ("ADD", "DEL")
SERVE, BROKER = "spidernet serve", "namespace broker"
# Part 3's rows: key, label.
IPAM_C, IPAM_PY, HL = PLUGIN, "spidernet-ipam-python", "host-local"
LABELS = {
    IPAM_C: "spidernet-ipam (compiled forwarder)",
    IPAM_PY: "spidernet-ipam (Python forwarder)",
    HL: "Go host-local",
}


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    quick: bool
    endpoints: int
    plugin_calls: int
    out: Path
    settle_s: float = SETTLE_S


# -- the service's resident set, from /proc ---------------------------------------------


def make_service(base: Path) -> ServiceProcess:
    """The run's `spidernet serve` on a temporary state directory (embedded store), metrics
    on a free loopback port as a node's agent serves them."""
    return ServiceProcess(
        socket=base / "s.sock",
        state_dir=base / "state",
        log=base / "serve.log",
        metrics="127.0.0.1:0",
    )


def proc_status(pid: int) -> dict[str, int]:
    """The memory lines of /proc/<pid>/status, and the proportional set size (Pss, each
    shared page divided among the processes mapping it) of /proc/<pid>/smaps_rollup, in kB
    (KiB) as the kernel writes them."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            out[key] = int(value.split()[0])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "Pss":
            out[key] = int(value.split()[0])
    return out


def _ppid(stat: str) -> int:
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid: int) -> tuple[list[int], str]:
    """`pid`'s children and where they were read: /proc/<pid>/task/*/children (a kernel
    built with CONFIG_PROC_CHILDREN), else every process's parent in /proc/*/stat."""
    files = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if not files:
        return children_by_stat(pid), "/proc/*/stat parent pid"
    found: set[int] = set()
    for f in files:
        try:
            found.update(int(c) for c in f.read_text().split())
        except OSError:  # the thread ended
            continue
    return sorted(found), "task/*/children"


def children_by_stat(pid: int) -> list[int]:
    """`pid`'s children from each process's parent pid in /proc/*/stat."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if _ppid(stat.read_text()) == pid:
                found.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):  # the process ended
            continue
    return sorted(found)


def descendants(pid: int) -> tuple[list[tuple[int, int]], str]:
    """(pid, depth) of every process below `pid`, depth first; and where they were read."""
    out: list[tuple[int, int]] = []
    kids, source = children(pid)
    stack = [(k, 1) for k in reversed(kids)]
    while stack:
        child, depth = stack.pop()
        out.append((child, depth))
        stack.extend((k, depth + 1) for k in reversed(children(child)[0]))
    return out, source


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a)


def _label(cmd: str) -> str:
    if "broker_main" in cmd:
        return BROKER
    return Path(cmd.split(" ", 1)[0]).name


def _row(process: str, depth: int, pid: int, cmd: str, status: dict[str, int]) -> dict[str, Any]:
    return {
        "process": process,
        "depth": depth,
        "pid": pid,
        "cmdline": cmd,
        **{f"{k.lower()}_kb": v for k, v in status.items()},
    }


def snapshot(svc: ServiceProcess) -> dict[str, Any]:
    """The service's memory (first row) and each descendant's, one row each, never summed
    here; `depth` 1 is a child of the service."""
    rows = [_row(SERVE, 0, svc.pid, cmdline(svc.pid), proc_status(svc.pid))]
    below, source = descendants(svc.pid)
    for pid, depth in below:
        try:
            cmd, status = cmdline(pid), proc_status(pid)
        except OSError:  # it ended between the listing and the read
            continue
        rows.append(_row(_label(cmd), depth, pid, cmd, status))
    return {"rows": rows, "children_from": source}


def part_idle(svc: ServiceProcess, cfg: Config) -> dict[str, Any]:
    """Part 1: the service started and answering, left alone for `settle_s`."""
    time.sleep(cfg.settle_s)
    return snapshot(svc)


# -- N endpoints --------------------------------------------------------------------------


def pool_subnet(endpoints: int) -> ipaddress.IPv4Network:
    """A /20, or larger when the endpoints do not fit (network, broadcast, gateway aside)."""
    prefix = 20
    while 2 ** (32 - prefix) - 3 < endpoints:
        prefix -= 1
    return ipaddress.IPv4Network(f"10.64.0.0/{prefix}")


def apply_pool(client: Client, subnet: ipaddress.IPv4Network) -> None:
    """The run's one SpiderIPPool: the whole subnet but network, broadcast and gateway."""
    first, last = subnet[2], subnet[-2]
    doc = pool_doc(POOL, str(subnet), [f"{first}-{last}"], gateway=str(subnet[1]))
    client.request("POST", "/v1/resources", doc)


def endpoint(i: int) -> dict[str, Any]:
    """One distinct pod's allocate/release body."""
    return {
        "containerID": f"mem-{i:06d}",
        "ifName": "eth0",
        "podNamespace": NAMESPACE,
        "podName": f"pod-{i}",
        "podUID": f"00000000-0000-4000-8000-{i:012d}",
        "defaultIPv4IPPool": [POOL],
    }


def allocate_all(client: Client, n: int, subnet: ipaddress.IPv4Network) -> float:
    """N allocations, none released; seconds taken. Every answer's address is in `subnet`."""
    start = time.perf_counter()
    for i in range(n):
        answer = client.request("POST", "/v1/ipam/allocate", endpoint(i))
        ips = answer.get("ips") or [{}]
        address = ipaddress.ip_interface(str(ips[0].get("address")))
        if address.ip not in subnet:
            raise SpawnError(f"allocation {i} answered {address}, not in {subnet}")
    return time.perf_counter() - start


def part_endpoints(svc: ServiceProcess, cfg: Config, console: Console) -> dict[str, Any]:
    """Part 2: N endpoints held, memory read; then all released, memory read again, and the
    pool checked empty (SpawnError otherwise)."""
    client = svc.client
    subnet = pool_subnet(cfg.endpoints)
    apply_pool(client, subnet)
    with console.status(f"allocating {cfg.endpoints} endpoints"):
        allocate_s = allocate_all(client, cfg.endpoints, subnet)
    held = allocated(client, POOL)
    if held != cfg.endpoints:
        raise SpawnError(f"{POOL}: {held} allocated after {cfg.endpoints} allocations")
    time.sleep(cfg.settle_s)
    holding = snapshot(svc)
    with console.status(f"releasing {cfg.endpoints} endpoints"):
        start = time.perf_counter()
        for i in range(cfg.endpoints):
            client.request("POST", "/v1/ipam/release", endpoint(i))
        release_s = time.perf_counter() - start
    left = allocated(client, POOL)
    if left:
        raise SpawnError(f"{POOL}: {left} addresses still allocated after every release")
    return {
        "n": cfg.endpoints,
        "pool": {"name": POOL, "subnet": str(subnet)},
        "allocate_s": round(allocate_s, 3),
        "release_s": round(release_s, 3),
        "allocated_while_held": held,
        "allocated_after_release": left,
        "holding": holding,
        "released": snapshot(svc),
    }


# -- plugin processes' peak resident set --------------------------------------------------


LAUNCHER_SOURCE = Path(__file__).resolve().parent / "maxrss.c"
PEAK_LINE = b"\nmaxrss_kb "


def compiler() -> str | None:
    """The C compiler install-cni would use (node/install.py), if any."""
    return shutil.which("cc") or shutil.which("gcc")


def build_launcher(cc: str, out: Path) -> Path:
    """bench/maxrss.c compiled into `out`."""
    done = subprocess.run(
        [cc, "-O2", "-o", str(out), str(LAUNCHER_SOURCE)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SpawnError(f"{cc} failed on {LAUNCHER_SOURCE}: {done.stderr.strip()}")
    return out


def build_floor(cc: str, out: Path) -> tuple[Path, str]:
    """An empty C program (static when the toolchain can link one) and its label: the
    smallest process the launcher can report, for scale."""
    for static in (["-static"], []):
        done = subprocess.run(
            [cc, "-O2", *static, "-o", str(out), "-x", "c", "-"],
            input="int main(void) { return 0; }\n",
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            return out, f"for scale: an empty C program ({'static' if static else 'dynamic'})"
    raise SpawnError(f"{cc} failed on an empty program: {done.stderr.strip()}")


class Launcher(Spawner):
    """Runs every executable under bench/maxrss.c, which forks it from its own small address
    space and reports its peak RSS (wait4's ru_maxrss) as the last line of stderr; that
    line is taken off again. A direct wait4 from this process would report at least this
    process's own peak (bench/maxrss.c says why): `direct_kb` keeps what it reads, for
    the report."""

    def __init__(self, exe: Path) -> None:
        super().__init__()
        self.exe = exe
        self.peaks_kb: list[int] = []
        self.direct_kb: list[int] = []

    def run(self, argv: Sequence[str], env: Mapping[str, str], stdin: bytes = b"") -> Spawned:
        spawned = super().run([str(self.exe), *argv], env, stdin)
        head, found, tail = spawned.stderr.rpartition(PEAK_LINE)
        if not found or not tail.strip().isdigit():
            raise SpawnError(f"{argv[0]}: the launcher reported no peak: {spawned.stderr!r}")
        self.peaks_kb.append(int(tail))
        self.direct_kb.append(spawned.maxrss_kb)
        return dataclasses.replace(spawned, stderr=head, maxrss_kb=int(tail))


@dataclass
class PluginResults:
    """Part 3's peak resident sets, KiB per call, by side and verb; why a side (or, under
    the key "all", the part) was not measured."""

    labels: dict[str, str] = field(default_factory=lambda: dict(LABELS))
    executables: dict[str, str] = field(default_factory=dict)
    maxrss_kb: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    direct_kb: list[int] = field(default_factory=list)
    floor_label: str = ""
    floor_kb: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def median_kb(self, key: str, verb: str) -> float:
        """Median peak of one row, KiB."""
        return float(statistics.median(self.maxrss_kb[key][verb]))


def plugin_sides(base: Path, svc: ServiceProcess, launcher: Launcher) -> list[ProcessSide]:
    """spidernet-ipam as install-cni writes it (compiled and Python forwarder), forwarding
    to `svc`; Go host-local on a temporary dataDir."""
    exes = {
        IPAM_C: install_plugins(base / "bin-c", "c"),
        IPAM_PY: install_plugins(base / "bin-python", "python"),
    }
    ipam = cni_conf(
        {"type": PLUGIN, "ipam_unix_socket_path": str(svc.socket), "default_ipv4_ippool": [POOL]}
    )
    sides = [
        ProcessSide(
            key,
            LABELS[key],
            (str(exe),),
            launcher,
            ipam,
            {"CNI_PATH": f"{exe.parent}:{HOST_LOCAL.parent}"},
            VERBS,
        )
        for key, exe in exes.items()
    ]
    host_local = cni_conf(
        {
            "type": "host-local",
            "dataDir": str(base / "hl"),
            "ranges": [[{"subnet": HOST_LOCAL_SUBNET}]],
        }
    )
    env = {"CNI_PATH": str(HOST_LOCAL.parent)}
    sides.append(ProcessSide(HL, LABELS[HL], (str(HOST_LOCAL),), launcher, host_local, env, VERBS))
    return sides


def host_local_leases(data_dir: Path) -> list[str]:
    """Leases host-local still holds in its dataDir."""
    return sorted(
        p.name for p in data_dir.glob("*/*") if not p.name.startswith(("last_reserved_ip", "lock"))
    )


def part_plugins(
    base: Path, svc: ServiceProcess, cfg: Config, stack: ExitStack, console: Console
) -> tuple[PluginResults, dict[str, Any]]:
    """Part 3: ADD then DEL per call of every side, sides in rotating order, each process's
    peak RSS through the launcher. Afterwards nothing may be held (SpawnError otherwise):
    the checks. Skipped without a C compiler (the launcher and the compiled forwarder)."""
    res = PluginResults()
    cc = compiler()
    if cc is None:
        res.skipped["all"] = "no C compiler (cc or gcc) on PATH for bench/maxrss.c"
        return res, {}
    launcher = Launcher(build_launcher(cc, base / "maxrss"))
    stack.callback(launcher.kill_live)
    sides = plugin_sides(base, svc, launcher)
    res.executables = {s.key: s.argv[0] for s in sides}
    res.maxrss_kb = {s.key: {v: [] for v in VERBS} for s in sides}
    with console.status("plugin processes, ADD and DEL"):
        for i in range(cfg.plugin_calls):
            shift = i % len(sides)
            for side in [*sides[shift:], *sides[:shift]]:
                for verb in VERBS:
                    side.call(verb, f"mem-{side.key}-{i}")
                    res.maxrss_kb[side.key][verb].append(launcher.peaks_kb[-1])
        floor, res.floor_label = build_floor(cc, base / "empty")
        for _ in range(cfg.plugin_calls):
            done = launcher.run([str(floor)], {"PATH": ENV_PATH})
            if done.status != 0:
                raise SpawnError(f"{floor} exited {done.status}: {done.stderr!r}")
            res.floor_kb.append(done.maxrss_kb)
    res.direct_kb = launcher.direct_kb
    left = allocated(svc.client, POOL)
    leases = host_local_leases(base / "hl")
    problems = [f"{left} addresses still allocated in {POOL}"] if left else []
    problems += [f"host-local leases left: {leases}"] if leases else []
    if problems:
        raise SpawnError("after every DEL: " + "; ".join(problems))
    return res, {"pool_allocated_after_plugin_calls": left, "host_local_leases": len(leases)}
