"""Part 1 of `bench.ipam`, per-call cost as a process: N ADDs and N DELs of the installed
`spidernet-ipam` executable (compiled and Python forwarder, forwarding to a running
`spidernet serve`), of Go `host-local`, and N runs of CPython doing nothing; its ratios, and
the Python forwarder's call split into parts.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from spidernet.node.lab.service import ServiceProcess
from spidernet.testbed.conflists import macvlan, plugin_conf

from .ipam_common import Config, allocated, pool_doc
from .ipam_sides import PLUGIN, RUN, ForwardSide, ProcessSide, Samples, Side, measure_calls
from .timing import Spawner, SpawnError, Summary, ratio

HOST_LOCAL = Path("/usr/lib/cni/host-local")
SYSTEM_PYTHON = "/usr/bin/python3"

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
    return json.dumps(plugin_conf(macvlan(dict(ipam)), name="bench")).encode()


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
