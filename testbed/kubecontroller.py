"""A real `spidernet controller` process for the k8s lane's GC tests: fast passes, no margin,
on a Lease in the test's namespace, its output in a log the test reads."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from spidernet.testbed.kubecluster import Cluster


@dataclass
class Controller:
    """A running `spidernet controller` child process and its log."""

    proc: subprocess.Popen[bytes]
    log: Path
    identity: str
    namespace: str  # the test's: other tests' leftovers may be reclaimed too

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def reclaims(self) -> list[str]:
        mine = f"'{self.namespace}/"
        return [line for line in self.lines() if "reclaimed" in line and mine in line]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=15)


def start_controller(
    cluster: Cluster,
    namespace: str,
    identity: str,
    log: Path,
    *,
    lease: str = "gc",
    interval: float = 0.5,
    margin: float | None = 0.0,
) -> Controller:
    """`spidernet controller` with a GC pass every `interval` seconds and `margin` seconds of
    grace (None: the controller's default), on the Lease `lease` in `namespace` (3 s), as
    `identity`, writing to `log`."""
    argv = [sys.executable, "-m", "spidernet", "controller"]
    argv += ["--kubeconfig", str(cluster.kubeconfig), "--gc-interval", f"{interval:g}"]
    if margin is not None:
        argv += ["--gc-margin", f"{margin:g}"]
    argv += ["--lease-namespace", namespace, "--lease-name", lease, "--lease-duration", "3"]
    argv += ["--identity", identity]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return Controller(proc, log, identity, namespace)
