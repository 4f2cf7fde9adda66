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
import datetime
import ipaddress
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from spidernet.control.client import Client, ServiceError, ServiceUnreachable
from spidernet.control.service.ipam import IpamCore
from spidernet.control.store.embedded import open_store
from spidernet.node.cni import forward
from spidernet.node.ipam.conf import IpamConf, PodMeta
from spidernet.node.ipam.plugin import IpamCall
from spidernet.node.lab.service import ServiceProcess, ServiceStartFailed

from .timing import Spawner, SpawnError, Summary, ratio

HOST_LOCAL = Path("/usr/lib/cni/host-local")
SYSTEM_PYTHON = "/usr/bin/python3"
PLUGIN = "spidernet-ipam"
API_VERSION = "spiderpool.spidernet.io/v2beta1"
GOAL = 3.0  # DESIGN.md: spidernet-ipam within 3x of host-local per call

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
CALLS, QUICK_CALLS = 300, 30
PAIRS, QUICK_PAIRS = 200, 30
PREFIXES, QUICK_PREFIXES = (24, 20, 18, 16), (24, 20)
FILLS = (0.0, 0.5, 0.9, 0.99)
BATCH = 10  # calls of one side in a row before the next side's turn
WARMUP = 3  # unrecorded calls of each side (and pairs of each pool) first

ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETNS = "/var/run/netns/snt-bench"  # never opened: an IPAM plugin does not enter the netns
RUN = "run"  # the one "verb" of rows that are not CNI calls
PASS = ("-I", "-S", "-c", "pass")
CALL_POOL, CALL_SUBNET = "bench-calls", ipaddress.ip_network("10.99.0.0/16")
HOST_LOCAL_SUBNET = "10.0.0.0/16"

# Part 1 rows: the compared sides first, then diagnostics.
IPAM, HL, FLOOR, VFLOOR = PLUGIN, "host-local", "python3-floor", "venv-python-floor"
# The Python forwarder (what install-cni writes without a C compiler); the diagnostics below
# take it apart, since the compiled one has no interpreter to measure.
IPAM_PY = "spidernet-ipam-python"
IPAM_ENV, IPAM_VERSION, EXE_FLOOR, JSON_IMPORT, INPROC = (
    "spidernet-ipam-env-socket",
    "spidernet-ipam-version",
    "executable-interpreter-floor",
    "executable-interpreter-import-json",
    "in-process-forward",
)


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    quick: bool
    calls: int
    pairs: int
    prefixes: tuple[int, ...]
    fills: tuple[float, ...]
    out: Path


# -- part 1: per-call cost as a process ---------------------------------------------------


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


@dataclass
class CallResults:
    """Part 1's samples and row labels."""

    samples: Samples
    labels: dict[str, str]
    diagnostic: set[str]
    exe_floor: str  # the floor row of the interpreter that runs spidernet-ipam
    exe_head: str  # the executable's first two lines ("#!" and what it is)

    def median(self, key: str, verb: str) -> float:
        """Median milliseconds of one row."""
        return Summary.of(self.samples[key][verb]).median_ms

    def mean(self, key: str, verb: str) -> float:
        """Mean milliseconds of one row."""
        return Summary.of(self.samples[key][verb]).mean_ms


def cni_conf(ipam: Mapping[str, Any]) -> bytes:
    """A network config with the given `ipam` section (macvlan is never run: IPAM only)."""
    return json.dumps(
        {"cniVersion": "1.0.0", "name": "bench", "type": "macvlan", "ipam": dict(ipam)}
    ).encode()


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


def install_plugins(bin_dir: Path, forwarder: str) -> Path:
    """`spidernet install-cni --bin-dir --forwarder` (the real install path); the
    spidernet-ipam path. `forwarder` "c" fails when no C compiler is present."""
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "spidernet", "install-cni", "--bin-dir", str(bin_dir)),
            *("--forwarder", forwarder),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SpawnError(f"install-cni --forwarder {forwarder} failed: {done.stderr.strip()}")
    return bin_dir / PLUGIN


def interpreter(exe: Path) -> str:
    """The interpreter named on the executable's "#!" line."""
    line = exe.read_bytes().split(b"\n", 1)[0]
    if not line.startswith(b"#!"):
        raise SpawnError(f"{exe} has no '#!' line")
    return line[2:].split()[0].decode()


def floor_key(python: str) -> str:
    """The floor row measuring `python` itself: a brief's floor when it is the same path."""
    return {SYSTEM_PYTHON: FLOOR, sys.executable: VFLOOR}.get(python, EXE_FLOOR)


def call_sides(
    spawner: Spawner, exes: tuple[Path, Path], svc: ServiceProcess, cni_path: str, state: Path
) -> list[Side]:
    """Part 1's rows: spidernet-ipam (compiled, then Python), host-local, the CPython floors,
    then diagnostics of the Python forwarder."""
    ipam_exe, py_exe = exes
    pools = {"default_ipv4_ippool": [CALL_POOL]}
    with_socket = cni_conf({"type": PLUGIN, "ipam_unix_socket_path": str(svc.socket), **pools})
    no_socket = cni_conf({"type": PLUGIN, **pools})
    host_local = cni_conf(
        {"type": "host-local", "dataDir": str(state), "ranges": [[{"subnet": HOST_LOCAL_SUBNET}]]}
    )
    plugin_env = {"CNI_PATH": cni_path}
    cni = ("ADD", "DEL")
    venv = sys.executable
    exe = (str(py_exe),)
    python = interpreter(py_exe)
    own_floor: list[Side] = []
    if floor_key(python) == EXE_FLOOR:
        label = f"{python} -I -S -c pass (the executable's interpreter)"
        own_floor.append(ProcessSide(EXE_FLOOR, label, (python, *PASS), spawner, diagnostic=True))
    return [
        ProcessSide(
            IPAM,
            "spidernet-ipam (compiled forwarder)",
            (str(ipam_exe),),
            spawner,
            with_socket,
            plugin_env,
            cni,
        ),
        ProcessSide(
            IPAM_PY,
            "spidernet-ipam (Python forwarder)",
            exe,
            spawner,
            with_socket,
            plugin_env,
            cni,
        ),
        ProcessSide(
            IPAM_ENV,
            "Python forwarder, socket from $SPIDERNET_SOCKET, not the config",
            exe,
            spawner,
            no_socket,
            {**plugin_env, "SPIDERNET_SOCKET": str(svc.socket)},
            cni,
            diagnostic=True,
        ),
        ProcessSide(HL, "Go host-local", (str(HOST_LOCAL),), spawner, host_local, plugin_env, cni),
        ProcessSide(FLOOR, f"{SYSTEM_PYTHON} -I -S -c pass", (SYSTEM_PYTHON, *PASS), spawner),
        ProcessSide(VFLOOR, "venv python -I -S -c pass", (venv, *PASS), spawner),
        ProcessSide(
            IPAM_VERSION,
            "Python forwarder VERSION (answered without the service)",
            exe,
            spawner,
            b"",
            {**plugin_env, "CNI_COMMAND": "VERSION"},
            diagnostic=True,
        ),
        *own_floor,
        ProcessSide(
            JSON_IMPORT,
            f"{python} -I -S -c 'import json' (for scale)",
            (python, "-I", "-S", "-c", "import json"),
            spawner,
            diagnostic=True,
        ),
        ForwardSide(
            INPROC, "forward() in-process: the service round trip alone", with_socket, cni_path
        ),
    ]


def part_calls(
    cfg: Config, base: Path, spawner: Spawner, stack: ExitStack, console: Console
) -> CallResults:
    """Part 1 against its own `spidernet serve`."""
    ipam_exe = install_plugins(base / "bin", "c")
    py_exe = install_plugins(base / "bin-python", "python")
    svc = ServiceProcess(socket=base / "c.sock", state_dir=base / "calls", log=base / "calls.log")
    stack.callback(svc.stop)
    svc.start()
    client = svc.client
    hosts = list(CALL_SUBNET.hosts())
    client.request(
        "POST",
        "/v1/resources",
        pool_doc(CALL_POOL, str(CALL_SUBNET), [f"{hosts[1]}-{hosts[-1]}"], gateway=str(hosts[0])),
    )
    sides = call_sides(
        spawner, (ipam_exe, py_exe), svc, f"{base / 'bin'}:{HOST_LOCAL.parent}", base / "hl"
    )
    samples = measure_calls(sides, cfg.calls, console)
    left = allocated(client, CALL_POOL)
    if left:
        raise SpawnError(f"{left} addresses still allocated after every DEL")
    svc.stop()
    return CallResults(
        samples,
        {s.key: s.label for s in sides},
        {s.key for s in sides if s.diagnostic},
        floor_key(interpreter(py_exe)),
        "\n".join(py_exe.read_text(errors="replace").splitlines()[:2]),
    )


def call_ratios(res: CallResults) -> dict[str, float]:
    """Part 1's ratios (medians unless named `_mean`)."""
    med, mean = res.median, res.mean
    out = {}
    for verb in ("ADD", "DEL"):
        v = verb.lower()
        out[f"ipam_over_host_local_{v}"] = ratio(med(IPAM, verb), med(HL, verb))
        out[f"ipam_over_host_local_{v}_mean"] = ratio(mean(IPAM, verb), mean(HL, verb))
        out[f"ipam_over_python_floor_{v}"] = ratio(med(IPAM, verb), med(FLOOR, RUN))
        out[f"ipam_over_venv_floor_{v}"] = ratio(med(IPAM, verb), med(VFLOOR, RUN))
        out[f"ipam_python_over_host_local_{v}"] = ratio(med(IPAM_PY, verb), med(HL, verb))
        out[f"ipam_python_over_own_interpreter_floor_{v}"] = ratio(
            med(IPAM_PY, verb), med(res.exe_floor, RUN)
        )
        out[f"ipam_socket_from_env_over_host_local_{v}"] = ratio(med(IPAM_ENV, verb), med(HL, verb))
        out[f"python_floor_over_host_local_{v}"] = ratio(med(FLOOR, RUN), med(HL, verb))
    return out


def attribution(res: CallResults, verb: str) -> list[tuple[str, float]]:
    """The Python forwarder's median call split into parts, each a difference of measured
    medians (the compiled forwarder's total beside it)."""
    med = res.median
    total = med(IPAM_PY, verb)
    floor = med(res.exe_floor, RUN)
    own = med(IPAM_VERSION, RUN)
    env_socket = med(IPAM_ENV, verb)
    return [
        ("CPython start-up: the executable's interpreter, -I -S -c pass", floor),
        ("the executable's own start-up: its imports and code, answers VERSION", own - floor),
        ("stdin, request, service round trip, answer", env_socket - own),
        ("  of which the service round trip (in-process forward())", med(INPROC, verb)),
        ("finding ipam_unix_socket_path in the config (vs $SPIDERNET_SOCKET)", total - env_socket),
        ("total: spidernet-ipam, Python forwarder", total),
        ("for comparison: spidernet-ipam, compiled forwarder", med(IPAM, verb)),
        ("for comparison: Go host-local", med(HL, verb)),
        ("for scale: `import json` on that interpreter", med(JSON_IMPORT, RUN) - floor),
    ]


# -- part 2: allocation time against pool size and fill -----------------------------------


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


# -- report ---------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    """CPU count and model, kernel, Python, the date."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uname = platform.uname()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": uname.node,
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": f"{uname.system} {uname.release} {uname.machine}",
        "python": platform.python_version(),
        "host_local": str(HOST_LOCAL),
    }


def _ms(x: float) -> str:
    return f"{x:.2f}"


def _x(x: float) -> str:
    return f"{x:.2f}x"


def calls_table(res: CallResults, n: int) -> Table:
    """Part 1: one row per side and verb."""
    table = Table(
        title=f"Per call, as a process ({n} calls per row, rounds of {BATCH}, rotating order)",
        title_justify="left",
    )
    for col in ("what", "verb", "n", "mean ms", "median ms", "p90 ms", "x host-local"):
        table.add_column(col, justify="left" if col in ("what", "verb") else "right")
    for key, verbs in res.samples.items():
        if key in res.diagnostic:
            continue
        for verb, samples in verbs.items():
            s = Summary.of(samples)
            base = res.median(HL, verb if verb != RUN else "ADD")
            table.add_row(
                res.labels[key],
                verb,
                str(s.n),
                _ms(s.mean_ms),
                _ms(s.median_ms),
                _ms(s.p90_ms),
                _x(ratio(s.median_ms, base)),
            )
    table.add_section()
    for key in (k for k in res.samples if k in res.diagnostic):
        for verb, samples in res.samples[key].items():
            s = Summary.of(samples)
            table.add_row(
                f"[dim]{res.labels[key]}[/]",
                verb,
                str(s.n),
                _ms(s.mean_ms),
                _ms(s.median_ms),
                _ms(s.p90_ms),
                "",
            )
    return table


def ratios_table(ratios: Mapping[str, float]) -> Table:
    """The headline ratios of part 1 and part 2."""
    table = Table(title="Ratios (medians)", title_justify="left")
    table.add_column("ratio")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    table.add_column("")
    rows = [
        ("spidernet-ipam (compiled) / host-local, ADD", "ipam_over_host_local_add", GOAL),
        ("spidernet-ipam (compiled) / host-local, DEL", "ipam_over_host_local_del", GOAL),
        ("spidernet-ipam (Python) / host-local, ADD", "ipam_python_over_host_local_add", GOAL),
        ("spidernet-ipam (Python) / host-local, DEL", "ipam_python_over_host_local_del", GOAL),
        ("spidernet-ipam (compiled) / CPython floor, ADD", "ipam_over_python_floor_add", 0),
        ("spidernet-ipam (compiled) / CPython floor, DEL", "ipam_over_python_floor_del", 0),
        ("spidernet-ipam (compiled) / venv python floor, ADD", "ipam_over_venv_floor_add", 0),
        ("CPython floor / host-local, ADD", "python_floor_over_host_local_add", 0),
        (
            "spidernet-ipam (Python) / its own interpreter's floor, ADD",
            "ipam_python_over_own_interpreter_floor_add",
            0,
        ),
        ("allocation: slowest / fastest cell (pool size x fill)", "alloc_largest_over_smallest", 0),
    ]
    for label, key, goal in rows:
        value = ratios[key]
        note = ("within goal" if value <= goal else "above goal") if goal else ""
        table.add_row(label, _x(value), f"≤ {goal:.1f}x" if goal else "", note)
    return table


def attribution_table(parts: Sequence[tuple[str, float]]) -> Table:
    """Where the Python forwarder's ADD goes."""
    table = Table(title="Where a Python-forwarder ADD goes (differences of medians)")
    table.title_justify = "left"
    table.add_column("part")
    table.add_column("ms", justify="right")
    for label, ms in parts:
        table.add_row(label, _ms(ms))
    return table


def alloc_table(res: AllocResults, cfg: Config) -> Table:
    """Part 2: rows = pool size, columns = fill, cells = median ms per allocate."""
    table = Table(
        title=f"Allocate through the service API: median ms ({cfg.pairs} pairs per cell, "
        "pools interleaved; p90 in brackets)",
        title_justify="left",
    )
    table.add_column("pool")
    table.add_column("usable", justify="right")
    for fill in cfg.fills:
        table.add_column(f"{fill:.0%} full", justify="right")
    pools = [PoolSpec(p) for p in cfg.prefixes]
    for pool in [*pools, CONTROL]:
        if pool.control:
            table.add_section()
        cells = [res.cell(pool, fill) for fill in cfg.fills]
        table.add_row(
            pool.label,
            str(pool.usable),
            *(f"{_ms(c.allocate.median_ms)} ({_ms(c.allocate.p90_ms)})" for c in cells),
        )
    return table


def fill_table(res: AllocResults) -> Table:
    """How long the in-process fills took."""
    loads = ", ".join(f"{x:.1f}" for x in res.loads_s)
    table = Table(
        title=f"Filling (in-process IpamCore, service stopped; loading its mirrors first took "
        f"{loads} s, not counted below)",
        title_justify="left",
    )
    for col in ("pool", "to", "allocations", "seconds", "ms each"):
        table.add_column(col, justify="left" if col == "pool" else "right")
    for step in res.fills:
        each = step.seconds / step.allocations * 1000.0
        table.add_row(
            f"/{step.prefix}",
            f"{step.fill:.0%}",
            str(step.allocations),
            f"{step.seconds:.1f}",
            _ms(each),
        )
    return table


def plot(path: Path, calls: CallResults, alloc: AllocResults, cfg: Config, title: str) -> None:
    """Left: median ms per call; right: median allocate ms against fill, a line per size."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), layout="constrained")
    rows = [(IPAM, "ADD"), (IPAM, "DEL"), (IPAM_PY, "ADD"), (IPAM_PY, "DEL")]
    rows += [(HL, "ADD"), (HL, "DEL"), (FLOOR, RUN), (VFLOOR, RUN)]
    rows += [(k, RUN) for k in (EXE_FLOOR,) if k in calls.samples]
    rows += [(IPAM_ENV, "ADD"), (IPAM_VERSION, RUN), (JSON_IMPORT, RUN), (INPROC, "ADD")]
    labels = [f"{k} {v}" if v != RUN else k for k, v in rows]
    medians = [calls.median(k, v) for k, v in rows]
    colors = [
        ("tab:red" if k == IPAM else "lightcoral")
        if k.startswith(IPAM)
        else "tab:blue"
        if k == HL
        else "tab:gray"
        for k, _ in rows
    ]
    left.barh(range(len(rows)), medians, color=colors)
    left.set_yticks(range(len(rows)), labels)
    left.invert_yaxis()
    for i, m in enumerate(medians):
        left.text(m, i, f" {m:.1f}", va="center", fontsize=8)
    left.set_xlabel("median ms per call (process spawn to reaped)")
    left.set_title(f"Per call, as a process ({cfg.calls} calls each)")
    for pool in [*(PoolSpec(p) for p in cfg.prefixes), CONTROL]:
        right.plot(
            [f * 100 for f in cfg.fills],
            [alloc.cell(pool, f).allocate.median_ms for f in cfg.fills],
            marker="o",
            linestyle="--" if pool.control else "-",
            color="gray" if pool.control else None,
            label=f"{pool.label} ({pool.usable} usable)",
        )
    right.set_xlabel("pool fill (%)")
    right.set_ylabel("median ms per allocate (service API)")
    right.set_ylim(bottom=0)
    right.set_title(f"Allocation vs pool size and fill (x{alloc.flatness():.2f} max/min)")
    right.legend()
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_json(
    cfg: Config,
    machine: Mapping[str, Any],
    calls: CallResults,
    alloc: AllocResults,
    ratios: Mapping[str, float],
    *,
    runtime_s: float,
) -> dict[str, Any]:
    """Every number of the run."""
    per_call = {
        key: {
            "label": calls.labels[key],
            "diagnostic": key in calls.diagnostic,
            **{
                verb: {**Summary.of(s).as_dict(), "samples_ms": [round(x * 1e3, 3) for x in s]}
                for verb, s in verbs.items()
            },
        }
        for key, verbs in calls.samples.items()
    }
    return {
        "schema": 1,
        "machine": dict(machine),
        "config": {
            "quick": cfg.quick,
            "calls": cfg.calls,
            "batch": BATCH,
            "warmup": WARMUP,
            "pairs": cfg.pairs,
            "prefixes": list(cfg.prefixes),
            "fills": list(cfg.fills),
        },
        "ipam_executable_head": calls.exe_head,
        "goal": {"ipam_over_host_local_max": GOAL},
        "ratios": dict(ratios),
        "per_call": per_call,
        "attribution_add_ms": {k: round(v, 3) for k, v in attribution(calls, "ADD")},
        "allocation": {
            "cells": [
                {
                    "pool": c.pool.name,
                    "prefix": c.pool.prefix,
                    "control": c.pool.control,
                    "fill": c.fill,
                    "held": c.held,
                    "usable": c.pool.usable,
                    "allocate": c.allocate.as_dict(),
                    "release": c.release.as_dict(),
                    "allocate_samples_ms": [round(x * 1e3, 3) for x in c.allocate_s],
                }
                for c in alloc.cells
            ],
            "fill_steps": [
                {
                    "prefix": f.prefix,
                    "fill": f.fill,
                    "allocations": f.allocations,
                    "seconds": round(f.seconds, 3),
                }
                for f in alloc.fills
            ],
            "fill_seconds_total": round(sum(f.seconds for f in alloc.fills), 3),
            "api_fill_estimate_s": round(alloc.api_fill_estimate_s(), 1),
            "mirror_load_s": [round(s, 3) for s in alloc.loads_s],
            "service_start_s": [round(s, 3) for s in alloc.starts_s],
        },
        "runtime_s": round(runtime_s, 1),
    }


# -- main -------------------------------------------------------------------------------------


def header(console: Console, machine: Mapping[str, Any], cfg: Config) -> str:
    """Print the run's header; returns a one-line form for the plot."""
    line = (
        f"{machine['date']}  {machine['host']}  {machine['cpus']} CPUs ({machine['cpu_model']})"
        f"  {machine['kernel']}  Python {machine['python']}"
    )
    console.rule("spidernet IPAM benchmark" + (" (--quick)" if cfg.quick else ""))
    console.print(line)
    console.print(
        f"per call: {cfg.calls} ADD + {cfg.calls} DEL per plugin; allocation: pools "
        f"{', '.join(f'/{p}' for p in cfg.prefixes)} at "
        f"{', '.join(f'{f:.0%}' for f in cfg.fills)} full, {cfg.pairs} pairs per cell"
    )
    return line


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every cleanup below runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(cfg: Config, console: Console) -> None:
    """Measure both parts, print the tables, write the JSON and the PNG."""
    began = time.monotonic()
    machine = machine_facts()
    title = header(console, machine, cfg)
    spawner = Spawner()
    base = Path(tempfile.mkdtemp(prefix="snt-bench-"))
    with ExitStack() as stack:
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
    # Tables stay readable when the output is a file or a pipe (rich assumes 80 columns).
    console = Console(width=None if sys.stdout.isatty() else 120)
    if not HOST_LOCAL.exists():
        console.print(f"[red]{HOST_LOCAL} is missing: install containernetworking-plugins[/]")
        return 1
    try:
        with _sigterm_as_exit():
            run(cfg, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; every process and temporary directory removed[/]")
        return 130
    except (
        SpawnError,
        ServiceStartFailed,
        ServiceError,
        ServiceUnreachable,
        subprocess.CalledProcessError,
    ) as e:
        console.print(f"[red]benchmark failed: {e}[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
