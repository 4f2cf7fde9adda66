"""What the benchmarks' entry points share: the machine they ran on, the console they print
to, a clean exit on SIGTERM that a process forked by pyroute2 cannot turn against its parent,
and the exit status of a run.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from spidernet.control.client import ServiceError, ServiceUnreachable
from spidernet.node.lab.service import ServiceStartFailed
from spidernet.testbed.guard import OwnStack, sigterm_as_exit

from .ipam_calls import HOST_LOCAL
from .timing import SpawnError

# What ends a run that spawns plugins beside a `spidernet serve` (exit 1, printed).
RUN_FAILURES: tuple[type[Exception], ...] = (
    SpawnError,
    ServiceStartFailed,
    ServiceError,
    ServiceUnreachable,
    subprocess.CalledProcessError,
)

__all__ = [
    "RUN_FAILURES",
    "OwnStack",
    "console",
    "guarded",
    "machine_facts",
    "machine_line",
    "missing_plugins",
    "sigterm_as_exit",
]


def console() -> Console:
    """The run's console: tables stay readable when the output is a file or a pipe (rich
    assumes 80 columns there)."""
    return Console(width=None if sys.stdout.isatty() else 120)


def missing_plugins(out: Console, plugins: Sequence[Path]) -> bool:
    """Say so and return True when one of the Go reference `plugins` is not installed."""
    missing = [p for p in plugins if not p.exists()]
    if missing:
        out.print(f"[red]{missing[0]} is missing: install containernetworking-plugins[/]")
    return bool(missing)


def guarded(
    out: Console,
    body: Callable[[], None],
    failures: tuple[type[Exception], ...],
    removed: str = "every process and temporary directory",
) -> int:
    """Run `body` with SIGTERM as an exit: 0 when it finished, 1 on one of `failures`
    (printed), 130 on Ctrl-C; what the run made (`removed`) is gone either way."""
    try:
        with sigterm_as_exit():
            body()
    except KeyboardInterrupt:
        out.print(f"[yellow]interrupted; {removed} removed[/]")
        return 130
    except failures as e:
        out.print(f"[red]benchmark failed: {e}[/]")
        return 1
    return 0


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


def machine_line(machine: Mapping[str, Any]) -> str:
    """The machine in one line, for headers and plots."""
    return (
        f"{machine['date']}  {machine['host']}  {machine['cpus']} CPUs ({machine['cpu_model']})"
        f"  {machine['kernel']}  Python {machine['python']}"
    )
