"""What both benchmarks' entry points share: the machine they ran on, and a clean exit
on SIGTERM that a process forked by pyroute2 cannot turn against its parent.
"""

from __future__ import annotations

import datetime
import os
import platform
import signal
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from .ipam_calls import HOST_LOCAL


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


class OwnStack(ExitStack):
    """An ExitStack whose cleanups run only in the process that made it.

    pyroute2 forks a child to open a socket in a namespace and ends it with SIGTERM; a child
    that a signal reaches before its `os._exit` unwinds through this process's frames. It
    must exit there, not tear down the namespaces, the service and the worker it shares
    with its parent."""

    def __init__(self) -> None:
        super().__init__()
        self.pid = os.getpid()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if os.getpid() != self.pid:
            os._exit(1)
        return bool(super().__exit__(exc_type, exc, tb))


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C in this process, so every cleanup runs; a forked child
    (see OwnStack) just exits."""
    pid = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != pid:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
