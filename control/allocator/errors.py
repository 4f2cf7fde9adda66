"""Why an allocation failed, in the control plane's own vocabulary (STYLE.md §6).

The ipam plugin translates these to CNI codes where it answers (node/ipam/errors.py):
`INVALID` is a config error (7), `NO_POOL` and `EXHAUSTED` are spidernet's own codes, so a
runtime (and a person) can tell a typo from a full pool.
"""

from __future__ import annotations

import enum

from spidernet.control.errors import ControlError


class Reason(enum.Enum):
    """The families of allocation failure."""

    INVALID = "invalid"  # a malformed annotation or config value
    NO_POOL = "no-pool"  # no pool is a candidate, or every candidate was filtered out
    EXHAUSTED = "exhausted"  # candidate pools exist but have no free address


class AllocationError(ControlError):
    """Raised by the allocator; `str()` is the one-line message users see."""

    def __init__(self, reason: Reason, message: str, *, waiting: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        # True when the answer may change without the pod changing: its SpiderSubnet auto
        # pool is not created or not sized yet (the controller is on it); the service waits
        # and asks again, for a bounded time (autopools.py).
        self.waiting = waiting
