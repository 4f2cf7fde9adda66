"""The embedded store: the `Store` contract on one SQLite file, for hosts without Kubernetes.

Each write gets the next global revision; an object's version is the revision of its last
write, and the `changes` log keeps the event under the same number, so `list` then
`changes(listing.revision)` misses nothing.

Every write transaction starts with BEGIN IMMEDIATE: it takes the file's single write lock
before reading, so a writer never reads a snapshot that another writer then makes stale;
upgrading a read transaction would fail with SQLITE_BUSY_SNAPSHOT, which no busy timeout waits
out (https://www.sqlite.org/lang_transaction.html, https://www.sqlite.org/rescode.html).
Any number of processes and threads may share the file; a writer waits up to `busy_timeout`
seconds for the lock, then gets `Unavailable`.

Crash safety is SQLite's: a transaction is in the file whole or not at all, whatever kills the
process (https://www.sqlite.org/atomiccommit.html, https://www.sqlite.org/wal.html). Nothing is
cached here, so a returned write is a committed write. The file must be on a local filesystem:
WAL needs shared memory between the processes (https://www.sqlite.org/wal.html#noshm).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from spidernet.control.store import schema
from spidernet.control.store.base import (
    AlreadyExists,
    Conflict,
    Create,
    Delete,
    Event,
    EventType,
    Expired,
    Key,
    Listing,
    NotFound,
    Stored,
    Update,
    Write,
)

DB_NAME = "spidernet.db"

_GET = "SELECT body, version FROM objects WHERE kind = ? AND namespace = ? AND name = ?"
_LIST_KIND = (
    "SELECT namespace, name, body, version FROM objects WHERE kind = ? ORDER BY namespace, name"
)
_LIST_NAMESPACE = (
    "SELECT namespace, name, body, version FROM objects WHERE kind = ? AND namespace = ?"
    " ORDER BY name"
)
_LOG = (
    "INSERT INTO changes (revision, kind, namespace, name, type, body, version)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class EmbeddedStore:
    """A `Store` in the SQLite file at `path` (created if missing, mode 0600).

    `synchronous` is NORMAL, FULL (default) or EXTRA; schema.py says what each one promises.
    The change log keeps at least the `keep_changes` newest events; it is trimmed in bulk once
    it grows a tenth past that. One connection serves all threads, one call at a time.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
        keep_changes: int = 100_000,
    ) -> None:
        if keep_changes < 1:
            raise ValueError(f"keep_changes must be at least 1, not {keep_changes}")
        self.path = path
        self._keep = keep_changes
        self._slack = max(1, keep_changes // 10)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = schema.connect(
            path, synchronous=synchronous, busy_timeout=busy_timeout
        )

    def get(self, key: Key) -> Stored:
        """The object at `key`; raises NotFound."""
        with self._transaction(None, key, "get") as conn:
            row = conn.execute(_GET, (key.kind, key.namespace, key.name)).fetchone()
        if row is None:
            raise NotFound(key, "not found")
        return Stored(key, json.loads(row[0]), str(row[1]))

    def list(self, kind: str, namespace: str | None = None) -> Listing:
        """Every object of `kind` (in `namespace` when given), ordered by key, and the revision
        they were read at. One primary-key range scan; BINARY collation orders like `Key`."""
        with self._transaction("BEGIN", None, f"list {kind}") as conn:
            if namespace is None:
                rows = conn.execute(_LIST_KIND, (kind,)).fetchall()
            else:
                rows = conn.execute(_LIST_NAMESPACE, (kind, namespace)).fetchall()
            revision = _revision(conn)
        items = tuple(
            Stored(Key(kind, ns, name), json.loads(body), str(version))
            for ns, name, body, version in rows
        )
        return Listing(items, str(revision))

    def create(self, key: Key, body: Mapping[str, Any]) -> Stored:
        """Store a new object; raises AlreadyExists."""
        stored = self.commit((Create(key, body),))[0]
        assert stored is not None  # a Create always leaves an object
        return stored

    def update(self, key: Key, body: Mapping[str, Any], expected: str) -> Stored:
        """Replace the object if its version is `expected`; raises NotFound or Conflict."""
        stored = self.commit((Update(key, body, expected),))[0]
        assert stored is not None  # an Update always leaves an object
        return stored

    def delete(self, key: Key, expected: str | None = None) -> None:
        """Remove the object (at version `expected` when given); raises NotFound or Conflict."""
        self.commit((Delete(key, expected),))

    def commit(self, writes: Sequence[Write]) -> tuple[Stored | None, ...]:
        """Apply all writes in one transaction, in order, or none of them; raises the first
        failing write's error. Returns what each write stored (None for deletes). Bodies are
        checked (TypeError/ValueError) before anything is read or written."""
        bodies = [None if isinstance(w, Delete) else encode(w.key, w.body) for w in writes]
        if not writes:
            return ()
        key, doing = (writes[0].key, _verb(writes[0])) if len(writes) == 1 else (None, "commit")
        with self._transaction("BEGIN IMMEDIATE", key, doing) as conn:
            revision = _revision(conn)
            results: list[Stored | None] = []
            for write, body in zip(writes, bodies, strict=True):
                revision += 1
                results.append(_apply(conn, write, body, revision))
            self._trim(conn, revision)
        return tuple(results)

    def changes(self, kind: str, since: str) -> tuple[tuple[Event, ...], str]:
        """Events of `kind` after revision `since`, oldest first, and the revision to ask from
        next. Raises Expired when `since` was trimmed away or is newer than the store (a
        replaced file): either way the caller must list again. ValueError if not a revision."""
        after = parse_revision(since)
        with self._transaction("BEGIN", None, f"watch {kind}") as conn:
            current = _revision(conn)
            (trimmed,) = conn.execute("SELECT value FROM meta WHERE name = 'trimmed'").fetchone()
            if after < trimmed:
                raise Expired(
                    None, f"{kind} changes after revision {after} are trimmed (kept: > {trimmed})"
                )
            if after > current:
                raise Expired(None, f"revision {after} is ahead of the store's {current}")
            rows = conn.execute(
                "SELECT revision, namespace, name, type, body, version FROM changes"
                " WHERE kind = ? AND revision > ? ORDER BY revision",
                (kind, after),
            ).fetchall()
        events = tuple(
            Event(
                EventType(type_),
                Stored(Key(kind, ns, name), json.loads(body), str(version)),
                str(revision),
            )
            for revision, ns, name, type_, body, version in rows
        )
        return events, str(current)

    def close(self) -> None:
        """Close the connection; later calls raise ValueError. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(
        self, begin: str | None, key: Key | None, doing: str
    ) -> Iterator[sqlite3.Connection]:
        """The connection, held alone, inside `begin` (no transaction when None); SQLite
        errors become store errors."""
        with self._lock:
            if self._conn is None:
                raise ValueError(f"store '{self.path}' is closed")
            conn = self._conn
            try:
                if begin is None:
                    yield conn
                    return
                conn.execute(begin)
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (e.g. SQLITE_FULL) may leave the transaction open.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise schema.translate(exc, key, doing) from exc

    def _trim(self, conn: sqlite3.Connection, revision: int) -> None:
        # Revisions are dense (each is the previous + 1, under the write lock), so the log
        # holds `revision - trimmed` rows. Cut it back to `keep` only once it is `slack` over:
        # one DELETE of a contiguous rowid range every `slack` writes.
        (trimmed,) = conn.execute("SELECT value FROM meta WHERE name = 'trimmed'").fetchone()
        if revision - trimmed <= self._keep + self._slack:
            return
        horizon = revision - self._keep
        conn.execute("DELETE FROM changes WHERE revision <= ?", (horizon,))
        conn.execute("UPDATE meta SET value = ? WHERE name = 'trimmed'", (horizon,))


def open_store(state_dir: Path, *, synchronous: str = "FULL") -> EmbeddedStore:
    """The store in `state_dir` (created with mode 0700 if missing), file `spidernet.db`."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return EmbeddedStore(state_dir / DB_NAME, synchronous=synchronous)


def encode(key: Key, body: Mapping[str, Any]) -> str:
    """The canonical JSON text of `body`; TypeError/ValueError if it is not a JSON object."""
    if not isinstance(body, Mapping):
        raise TypeError(f"{key}: body must be a mapping, not {type(body).__name__}")
    for name in body:
        if not isinstance(name, str):
            raise TypeError(f"{key}: body keys must be strings, not {name!r}")
    try:
        return json.dumps(dict(body), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except TypeError as exc:
        raise TypeError(f"{key}: body is not JSON: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{key}: body is not JSON: {exc}") from exc


def parse_revision(text: str) -> int:
    """A revision given back by `list` or `changes`: a non-negative decimal integer."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a store revision: {text!r}")
    return int(text)


def _revision(conn: sqlite3.Connection) -> int:
    """The newest revision ever written (0 for a new store)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
    return 0 if row is None else int(row[0])


def _apply(
    conn: sqlite3.Connection, write: Write, body: str | None, revision: int
) -> Stored | None:
    """Perform one write at `revision` and log it; raises the store error that stops it."""
    key = write.key
    where = (key.kind, key.namespace, key.name)
    row = conn.execute(_GET, where).fetchone()
    if isinstance(write, Create):
        if row is not None:
            raise AlreadyExists(key, "already exists")
        conn.execute("INSERT INTO objects VALUES (?, ?, ?, ?, ?)", (*where, body, revision))
        event = EventType.ADDED
    else:
        if row is None:
            raise NotFound(key, "not found")
        if write.expected is not None and write.expected != str(row[1]):
            raise Conflict(key, f"version {write.expected} expected, {row[1]} stored")
        if isinstance(write, Update):
            conn.execute(
                "UPDATE objects SET body = ?, version = ?"
                " WHERE kind = ? AND namespace = ? AND name = ?",
                (body, revision, *where),
            )
            event = EventType.MODIFIED
        else:
            conn.execute("DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?", where)
            event = EventType.DELETED
    # A DELETED event carries the body as it was last stored.
    logged = row[0] if body is None else body
    conn.execute(_LOG, (revision, *where, event.value, logged, revision))
    return None if body is None else Stored(key, json.loads(body), str(revision))


def _verb(write: Write) -> str:
    return type(write).__name__.lower()
