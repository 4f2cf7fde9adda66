"""Timing one process per call, the way a container runtime runs a CNI plugin, and summaries.

`Spawner.run` starts the executable with `os.posix_spawn` (no shell, no `ip netns exec`, no
`subprocess` bookkeeping), feeds its stdin from a pipe filled before the clock starts, and
stops the clock when `wait4` returns. The parent's share of every sample is therefore the
same small constant for every executable measured, Go or Python. `wait4` also hands back the
child's resource usage: `ru_maxrss` (KiB on Linux) is its peak resident set, but counted from
the address space it was spawned from, so never below this process's own peak (bench/maxrss.c
says why; `bench.memory` runs each plugin under it to read the plugin's own).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# A pipe holds this much without a reader on Linux (pipe(7)). Stdin is written in full before
# the child starts, and the child's stdout and stderr are read after it exits, so neither may
# be larger; CNI configs and results are a few hundred bytes.
PIPE_CAPACITY = 65536


class SpawnError(Exception):
    """A measured call did not do what it should (non-zero exit, or a wrong answer)."""


@dataclass(frozen=True)
class Spawned:
    """One finished process: wall time from spawn to reaped, exit status and output, and
    `ru_maxrss` from `wait4` in KiB (at least the spawner's own peak; 0 when not known)."""

    seconds: float
    status: int
    stdout: bytes
    stderr: bytes
    maxrss_kb: int = 0


def _drain(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, PIPE_CAPACITY):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


class Spawner:
    """Runs executables one at a time and remembers the pid in flight, so that `kill_live`
    can end and reap it when the benchmark is interrupted (Ctrl-C during `wait4`)."""

    def __init__(self) -> None:
        self.live: set[int] = set()

    def run(self, argv: Sequence[str], env: Mapping[str, str], stdin: bytes = b"") -> Spawned:
        """Run `argv` (an absolute path first) with exactly `env`; returns once it is reaped."""
        if len(stdin) > PIPE_CAPACITY:
            raise ValueError(f"stdin of {len(stdin)} bytes does not fit in a pipe")
        r_in, w_in = os.pipe()
        try:
            os.write(w_in, stdin)
        finally:
            os.close(w_in)
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, r_in, 0),
            (os.POSIX_SPAWN_DUP2, w_out, 1),
            (os.POSIX_SPAWN_DUP2, w_err, 2),
        ]
        try:
            start = time.perf_counter()
            pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions)
            self.live.add(pid)
            _, wait_status, usage = os.wait4(pid, 0)
            seconds = time.perf_counter() - start
            self.live.discard(pid)
        except BaseException:
            # The child may still run (Ctrl-C in wait4) and hold the write ends: do not read.
            for fd in (r_in, w_out, w_err, r_out, r_err):
                os.close(fd)
            raise
        for fd in (r_in, w_out, w_err):
            os.close(fd)
        out = _drain(r_out)
        err = _drain(r_err)
        status = os.waitstatus_to_exitcode(wait_status)
        return Spawned(seconds, status, out, err, maxrss_kb=usage.ru_maxrss)

    def kill_live(self) -> None:
        """SIGKILL and reap the process in flight, if any (by its pid only)."""
        for pid in sorted(self.live):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.live.discard(pid)


@dataclass(frozen=True)
class Summary:
    """Mean, median and 90th percentile of samples, in milliseconds."""

    n: int
    mean_ms: float
    median_ms: float
    p90_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Summary:
        """The summary of samples given in seconds."""
        if not seconds:
            raise ValueError("no samples")
        ms = [s * 1000.0 for s in seconds]
        p90 = statistics.quantiles(ms, n=10, method="inclusive")[-1] if len(ms) > 1 else ms[0]
        return cls(len(ms), statistics.fmean(ms), statistics.median(ms), p90)

    def as_dict(self) -> dict[str, float]:
        """The JSON form (milliseconds, rounded to microseconds)."""
        return {
            "n": self.n,
            "mean_ms": round(self.mean_ms, 3),
            "median_ms": round(self.median_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
        }


def ratio(a: float, b: float) -> float:
    """a / b, rounded for reports."""
    return round(a / b, 3)
