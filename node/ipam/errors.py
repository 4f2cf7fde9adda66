"""What an IPAM backend raises, and the one translation of it into CNI errors.

The backend (the agent's IPAM core, node/agent/ipam.py) speaks its own vocabulary: the
allocator's refusals (`AllocationError`, control/allocator/errors.py) and the failures below.
The plugin maps them to the spec's codes (reference/peers.md §5) where it answers the call:
its verbs (plugin.py) and the agent's typed `/v1/ipam` route both go through `cni_error`, and
so do the Events the agent writes on a pod, which are named after the code.
"""

from __future__ import annotations

from collections.abc import Sequence

from spidernet.cni.errors import CNIError, Code
from spidernet.control.allocator.errors import AllocationError, Reason
from spidernet.node.errors import NodeError


class BackendError(NodeError):
    """A failure of the IPAM backend other than the allocator's refusal: `str()` is the
    one-line message users see, `details` says more (may be empty)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class StoreFailed(BackendError):
    """The store failed under the work named `what`. `unavailable`: busy, locked, or a
    full or failing disk; nothing was written and a retry may succeed."""

    def __init__(self, what: str, cause: Exception, *, unavailable: bool) -> None:
        why = f"store unavailable: {cause}" if unavailable else str(cause)
        super().__init__(f"failed to {what}: {why}")
        self.unavailable = unavailable


class Contended(BackendError):
    """Every try of a claim or a release was lost to concurrent writers; a retry may
    succeed."""


class AddressesHeld(BackendError):
    """Raised by an ADD with conflict detection when every address tried on `ifname` is
    held by another station (ARP/NDP probe); each was released again."""

    def __init__(self, ifname: str, conflicts: Sequence[str]) -> None:
        super().__init__(
            f"no free address for {ifname}: {'; '.join(conflicts)}",
            "every address tried is held by another station (ARP/NDP probe); each was released",
        )


class GatewayUnreachable(BackendError):
    """Raised by an ADD with detection on when the pool's gateway does not answer; the
    addresses were released again."""


class ProbeFailed(BackendError):
    """Raised by an ADD with detection on when its addresses could not be probed at all;
    they were released again."""


class NoEnabledPool(BackendError):
    """Raised by STATUS when no enabled pool exists, so no ADD could succeed now."""


# The families of the backend's failures; a StoreFailed the store calls unavailable is
# "try again later" (11), any other the catch-all (999).
_CODES: tuple[tuple[type[BackendError], Code], ...] = (
    (Contended, Code.TRY_AGAIN_LATER),
    (AddressesHeld, Code.IP_CONFLICT),
    (GatewayUnreachable, Code.GATEWAY_UNREACHABLE),
    (ProbeFailed, Code.INTERNAL),
    (NoEnabledPool, Code.PLUGIN_NOT_AVAILABLE),
)
_REASONS = {
    Reason.INVALID: Code.INVALID_NETWORK_CONFIG,
    Reason.NO_POOL: Code.NO_POOL,
    Reason.EXHAUSTED: Code.ADDRESSES_EXHAUSTED,
}

Failure = AllocationError | BackendError


def cni_error(e: Failure) -> CNIError:
    """The CNI error the runtime gets for the backend's failure `e`: a config error (7) for
    an invalid request, spidernet's own codes for no pool, a full pool, a conflict and a
    silent gateway (110-113), try again later (11), not available (50, STATUS), else 999."""
    if isinstance(e, AllocationError):
        return CNIError(_REASONS[e.reason], e.message)
    code = Code.INTERNAL
    if isinstance(e, StoreFailed):
        code = Code.TRY_AGAIN_LATER if e.unavailable else Code.INTERNAL
    for kind, kind_code in _CODES:
        if isinstance(e, kind):
            code = kind_code
    return CNIError(code, e.message, e.details)
