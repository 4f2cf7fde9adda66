"""What both benchmarks' entry points share: the machine they ran on, and a clean exit
on SIGTERM that a process forked by pyroute2 cannot turn against its parent.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spidernet.testbed.guard import OwnStack, sigterm_as_exit

from .ipam_calls import HOST_LOCAL

__all__ = ["OwnStack", "machine_facts", "machine_line", "sigterm_as_exit"]


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
