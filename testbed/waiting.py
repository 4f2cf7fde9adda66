"""A bounded poll: the one way the lanes wait on the kernel, a service or a cluster (never a
bare sleep: STYLE.md, 9)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout_s: float = 30.0, interval_s: float = 0.1
) -> T:
    """Poll `probe` every `interval_s` until it answers something true, and return that answer.

    Raises TimeoutError naming `what` when `timeout_s` passes first (the probe is asked once
    more at the deadline, so a slow probe still gets its last chance).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def seconds_until(
    what: str, probe: Callable[[], object], timeout_s: float = 30.0, interval_s: float = 0.1
) -> float:
    """`wait_for`, returning how many seconds the wait took (for the lanes' timings)."""
    start = time.monotonic()
    wait_for(what, probe, timeout_s, interval_s)
    return time.monotonic() - start
