"""Start and stop `spidernet serve` as a child process (the lab, netns tests, benchmarks).

The process is found again by the pid recorded at start, and only that pid is signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spidernet.control.client import Client
from spidernet.node.errors import NodeError

# SPIDERNET_SERVICE_START_TIMEOUT (seconds) raises the limit where Python itself is slow:
# the kernel lane's VM (emulated, TCG) takes about a minute to import the service.
START_TIMEOUT_S = float(os.environ.get("SPIDERNET_SERVICE_START_TIMEOUT") or 20.0)
STOP_TIMEOUT_S = 15.0


class ServiceStartFailed(NodeError):
    """`spidernet serve` exited or did not answer in time; the message holds its log tail."""


@dataclass
class ServiceProcess:
    """A running `spidernet serve`, its socket, state directory and log file."""

    socket: Path
    state_dir: Path
    log: Path
    metrics: str = "off"
    extra_args: tuple[str, ...] = ()  # more `spidernet serve` options
    pid: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client(self) -> Client:
        """A client of this service."""
        return Client(self.socket)

    def start(self, *, detach: bool = False, python: str = sys.executable) -> None:
        """Start it and wait until it answers; `detach` lets it outlive this process."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv = [
            python,
            "-m",
            "spidernet",
            "serve",
            "--socket",
            str(self.socket),
            "--state-dir",
            str(self.state_dir),
            "--metrics-address",
            self.metrics,
            *self.extra_args,
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=detach,
            )
        self.pid = self.proc.pid
        deadline = time.monotonic() + START_TIMEOUT_S
        client = self.client
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceStartFailed(f"spidernet serve exited: {self.log_tail()}")
            if client.healthy():
                return
            time.sleep(0.02)
        self.stop()
        raise ServiceStartFailed(f"spidernet serve did not answer in time: {self.log_tail()}")

    def metrics_port(self) -> int | None:
        """The metrics port the service reported in its log (None when off)."""
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            if "metrics on port " in line:
                return int(line.rsplit(" ", 1)[1])
        return None

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the service's log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def alive(self) -> bool:
        """True while the recorded pid runs (and is not a zombie of ours)."""
        if self.proc is not None:
            return self.proc.poll() is None
        if not self.pid:
            return False
        # Not our child (a detached service of an earlier `lab up`): make sure the pid still
        # belongs to that service before anyone signals it.
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"serve" in cmdline and str(self.socket).encode() in cmdline

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the recorded pid and wait for it to exit (SIGKILL after a timeout)."""
        if not self.pid or not self.alive():
            self._reap()
            return
        os.kill(self.pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.alive():
                self._reap()
                return
            time.sleep(0.02)
        os.kill(self.pid, signal.SIGKILL)
        self._reap()

    def kill(self) -> None:
        """SIGKILL, no grace (crash tests)."""
        if self.pid and self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait()
            self.proc = None
        else:
            # A detached service started by an earlier `lab up`: wait until the kernel has
            # finished its exit (its cmdline empties before that).
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.pid and not exited(self.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.pid = 0


def exited(pid: int) -> bool:
    """True once `pid` is gone or a zombie (whose reaping belongs to its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@contextmanager
def scratch_service(*extra_args: str) -> Iterator[ServiceProcess]:
    """A `spidernet serve` in a throw-away directory (metrics on a free loopback port),
    stopped and its directory removed on exit. The directory is short: a socket's path
    must fit sun_path's 108 bytes."""
    base = Path(tempfile.mkdtemp(prefix="snt-svc-"))
    svc = ServiceProcess(
        socket=base / "s.sock",
        state_dir=base / "state",
        log=base / "log",
        metrics="127.0.0.1:0",
        extra_args=extra_args,
    )
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(base, ignore_errors=True)
