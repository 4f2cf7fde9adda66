"""The `Store` contract: where resources and IP claims live, whatever the backend.

Every backend (the embedded SQLite file, the Kubernetes API server) keeps JSON documents under
a `Key` (kind, namespace, name) and gives each write a version, like Kubernetes'
`resourceVersion`: an opaque string that changes on every write of that object. Updates and
deletes may name the version they expect (optimistic concurrency); a mismatch is `Conflict`.
Callers never learn where state lives (DESIGN.md, "Layers").

Claims on IP addresses are ordinary documents: kind `IPClaim`, namespace = pool name,
name = the address. `create` is atomic and fails with `AlreadyExists` when the name is taken,
so the backend itself is the arbiter that stops two pods from holding one address.

`commit` applies several writes as one unit: all of them or none.

`changes` is list/watch: every write appends an `Event` with a revision; a caller lists once,
then asks for the events after the listing's revision. A revision the backend has already
forgotten raises `Expired` (Kubernetes' "410 Gone"): the caller lists again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from spidernet.control.errors import ControlError

CLAIM = "IPClaim"


@dataclass(frozen=True, order=True)
class Key:
    """Names one stored object. Cluster-scoped kinds use namespace ''."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} '{where}'"


@dataclass(frozen=True)
class Stored:
    """One object as the store holds it: its key, its JSON body and its current version."""

    key: Key
    body: Mapping[str, Any]
    version: str


@dataclass(frozen=True)
class Listing:
    """The objects of one kind, and the revision to watch from for later changes."""

    items: tuple[Stored, ...]
    revision: str


class EventType(enum.Enum):
    """What happened to an object."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Event:
    """One change; for DELETED, `obj` is the object as it was last stored, with the delete's
    revision as its version (as Kubernetes reports deletions)."""

    type: EventType
    obj: Stored
    revision: str


@dataclass(frozen=True)
class Create:
    """A write in a `commit`: make a new object (fails if the key exists)."""

    key: Key
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Update:
    """A write in a `commit`: replace an object, if its version is still `expected`."""

    key: Key
    body: Mapping[str, Any]
    expected: str


@dataclass(frozen=True)
class Delete:
    """A write in a `commit`: remove an object; with `expected`, only at that version."""

    key: Key
    expected: str | None = None


Write = Create | Update | Delete


class StoreError(ControlError):
    """Base of the control plane's store errors; each names the object."""

    def __init__(self, key: Key | None, reason: str) -> None:
        # Both arguments go to Exception so the error pickles (it may cross a process pool).
        super().__init__(key, reason)
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}" if self.key else self.reason


class NotFound(StoreError):
    """The object does not exist."""


class Conflict(StoreError):
    """The object changed since the caller read it (version mismatch)."""


class AlreadyExists(Conflict):
    """`create` of a key that is taken."""


class Expired(StoreError):
    """The watch revision is older than the oldest change the store remembers."""


class Unavailable(StoreError):
    """The backend cannot be reached or is busy; retrying later may succeed."""


class ReadOnly(StoreError):
    """The backend only reads this kind: the Kubernetes store serves Pods, Namespaces, Nodes
    and StatefulSets from the cluster's own objects and never writes them."""


class Invalid(StoreError, ValueError):
    """The backend refused the body itself (a Kubernetes 400 or 422: a field its schema does
    not declare, a value it does not allow). A ValueError, as the embedded store's refusal of
    a body that is not JSON is."""


class Store(Protocol):
    """What the allocator and the service need from a backend. Calls block; they are made
    from a worker thread in the service."""

    def get(self, key: Key) -> Stored:
        """The object at `key`; raises NotFound."""
        ...

    def list(self, kind: str, namespace: str | None = None) -> Listing:
        """Every object of `kind` (in `namespace` when given), ordered by key."""
        ...

    def create(self, key: Key, body: Mapping[str, Any]) -> Stored:
        """Store a new object; raises AlreadyExists."""
        ...

    def update(self, key: Key, body: Mapping[str, Any], expected: str) -> Stored:
        """Replace the object if its version is `expected`; raises NotFound or Conflict."""
        ...

    def delete(self, key: Key, expected: str | None = None) -> None:
        """Remove the object (at version `expected` when given); raises NotFound or Conflict."""
        ...

    def commit(self, writes: Sequence[Write]) -> tuple[Stored | None, ...]:
        """Apply all writes or none; returns what each write stored (None for deletes)."""
        ...

    def changes(self, kind: str, since: str) -> tuple[tuple[Event, ...], str]:
        """Events of `kind` after revision `since`, and the revision to ask from next.
        Raises Expired when `since` is older than the store remembers, or newer than any
        revision it has given out (a replaced store): the caller lists again."""
        ...

    def close(self) -> None:
        """Release the backend's resources."""
        ...
