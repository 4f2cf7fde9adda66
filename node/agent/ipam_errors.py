"""The store's failures under the IPAM core, in the backend's vocabulary
(node/ipam/errors.py): the ipam plugin turns them into CNI errors where it answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from spidernet.control.store.base import StoreError, Unavailable
from spidernet.node.ipam.errors import StoreFailed


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Store errors inside as StoreFailed, `what` naming the work that failed; unavailable
    when the store says so (busy, locked, or a full or failing disk: nothing was written,
    a retry may succeed)."""
    try:
        yield
    except Unavailable as e:
        raise StoreFailed(what, e, unavailable=True) from e
    except StoreError as e:
        raise StoreFailed(what, e, unavailable=False) from e
