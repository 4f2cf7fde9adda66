"""The IPAM core's failures as CNI errors (the spec's codes: reference/peers.md §5): the
allocator's, the conflict detection's and the store's, translated at the service's boundary."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from spidernet.cni.errors import CNIError, Code
from spidernet.control.allocator.errors import AllocationError, Reason
from spidernet.control.store.base import StoreError, Unavailable


def cni_error(e: AllocationError) -> CNIError:
    """The CNI error of the allocator's refusal `e`."""
    code = {
        Reason.INVALID: Code.INVALID_NETWORK_CONFIG,
        Reason.NO_POOL: Code.NO_POOL,
        Reason.EXHAUSTED: Code.ADDRESSES_EXHAUSTED,
    }[e.reason]
    return CNIError(code, e.message)


def conflict_error(ifname: str, conflicts: Sequence[str]) -> CNIError:
    """The CNI error of an ADD whose every address tried on `ifname` another station holds."""
    return CNIError(
        Code.IP_CONFLICT,
        f"no free address for {ifname}: {'; '.join(conflicts)}",
        "every address tried is held by another station (ARP/NDP probe); each was released",
    )


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Store errors inside as CNI errors: try again later (11) when the store is
    unavailable, internal (999) otherwise; `what` names the work that failed."""
    try:
        yield
    except Unavailable as e:
        # Busy, locked, or a full or failing disk: nothing was written; a retry may succeed.
        raise CNIError(Code.TRY_AGAIN_LATER, f"failed to {what}: store unavailable: {e}") from e
    except StoreError as e:
        raise CNIError(Code.INTERNAL, f"failed to {what}: {e}") from e
