"""The embedded store's SQLite file: opening it, its schema and migrations, error translation.

The file holds two tables. `objects` is the current state, one row per `Key`; `changes` is the
event log that `changes()` reads, one row per write, numbered by a global revision. `meta`
remembers up to which revision the log has been trimmed. `PRAGMA user_version` records the
schema version and `PRAGMA application_id` marks the file as spidernet's
(https://www.sqlite.org/pragma.html#pragma_user_version, #pragma_application_id).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from spidernet.control.store.base import Key, StoreError, Unavailable

SCHEMA_VERSION = 1
APPLICATION_ID = 0x53504E54  # "SPNT"
SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")


class BrokenStore(StoreError):
    """The file cannot serve as the store: written by a newer spidernet, not a spidernet
    store, or damaged. Retrying does not help; an operator must look at the file."""


def _create_v1(conn: sqlite3.Connection) -> None:
    # WITHOUT ROWID keeps rows in the primary-key b-tree itself, so `list(kind, namespace)` is
    # one range scan already in key order (https://www.sqlite.org/withoutrowid.html).
    conn.execute(
        "CREATE TABLE objects (kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,"
        " body TEXT NOT NULL, version INTEGER NOT NULL,"
        " PRIMARY KEY (kind, namespace, name)) WITHOUT ROWID"
    )
    # AUTOINCREMENT never reuses a revision, even once the newest rows are gone: the highest
    # one ever used stays in sqlite_sequence (https://www.sqlite.org/autoinc.html).
    conn.execute(
        "CREATE TABLE changes (revision INTEGER PRIMARY KEY AUTOINCREMENT,"
        " kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,"
        " type TEXT NOT NULL, body TEXT NOT NULL, version INTEGER NOT NULL)"
    )
    conn.execute("CREATE INDEX changes_by_kind ON changes (kind, revision)")
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO meta (name, value) VALUES ('trimmed', 0)")


# MIGRATIONS[v] turns a schema-v file into a schema-(v + 1) one, inside the opening transaction.
# Version 0 is a new, empty file. Append a step here (and bump SCHEMA_VERSION) to change the
# schema; never edit a released step.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_v1}


def connect(path: Path, *, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
    """Open (creating if needed) the store file at `path`, in WAL mode at the current schema.

    Raises BrokenStore for a file this code cannot use, Unavailable when it stays locked
    longer than `busy_timeout` seconds, ValueError for an unknown `synchronous` level."""
    level = synchronous.upper()
    if level not in SYNCHRONOUS:
        raise ValueError(
            f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}"
        )
    # SQLite creates -wal and -shm with the permissions of the database file (os_unix.c,
    # findCreateFileMode / unixOpenSharedMemory), so creating the file 0600 ourselves keeps all
    # three private without touching the process-wide umask. An empty file is a valid database.
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise BrokenStore(None, f"failed to open store '{path}': {exc.strerror}") from exc
    try:
        # `timeout` is sqlite3_busy_timeout: a locked file is retried for that long before
        # SQLITE_BUSY. isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise translate(exc, None, f"open store '{path}'") from exc
    try:
        # Refuse a foreign or newer file before anything is written to it: switching the
        # journal mode rewrites the header (its file format versions).
        header = _check_header(conn, path)
        _refuse_foreign(conn, path, *header)
        _configure(conn, level, path, busy_timeout)
        if header != (APPLICATION_ID, SCHEMA_VERSION):
            _migrate(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, None, f"open store '{path}'") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _journal_mode_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """Switch to WAL. Changing the journal mode needs an exclusive lock, and SQLite answers
    SQLITE_BUSY for it at once, without its busy handler, while another connection holds the
    file (a race of processes opening a new store shows it): retried until `busy_timeout`."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            return str(mode)
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _configure(conn: sqlite3.Connection, level: str, path: Path, busy_timeout: float) -> None:
    # WAL: readers never block the writer nor the writer them, and a commit is one append to
    # the -wal file, so a crash at any point leaves either the whole transaction or none of it
    # (https://www.sqlite.org/wal.html). The mode is persistent, stored in the file.
    mode = _journal_mode_wal(conn, busy_timeout)
    if str(mode).lower() != "wal":
        raise BrokenStore(None, f"failed to open store '{path}': journal mode {mode}, not wal")
    # synchronous is per connection. In WAL mode FULL syncs the WAL on every commit, so a
    # commit survives power loss; NORMAL syncs only at checkpoints: still atomic and consistent,
    # and safe against a process crash (SIGKILL), but the last commits may roll back after a
    # power loss or OS crash (https://www.sqlite.org/pragma.html#pragma_synchronous).
    conn.execute(f"PRAGMA synchronous={level}")


def _refuse_foreign(conn: sqlite3.Connection, path: Path, app: int, version: int) -> None:
    """Raise BrokenStore for a database without our id that is not new and empty."""
    if app == APPLICATION_ID:
        return
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    if version or tables:
        raise BrokenStore(None, f"'{path}' is a database of another program, not a store")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring a new or older file to SCHEMA_VERSION."""
    # Several processes may open a new file at once: take the write lock, then look again.
    conn.execute("BEGIN IMMEDIATE")
    try:
        app, version = _check_header(conn, path)
        _refuse_foreign(conn, path, app, version)
        while version < SCHEMA_VERSION:
            MIGRATIONS[version](conn)
            version += 1
        # Both live in the file header and are written as part of this transaction.
        conn.execute(f"PRAGMA user_version={version}")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _check_header(conn: sqlite3.Connection, path: Path) -> tuple[int, int]:
    """The file's application id and schema version; refuses foreign ids, newer schemas."""
    (app,) = conn.execute("PRAGMA application_id").fetchone()
    if app not in (0, APPLICATION_ID):
        raise BrokenStore(None, f"'{path}' is not a spidernet store (application_id {app:#x})")
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise BrokenStore(
            None,
            f"store '{path}' has schema version {version}, newer than the {SCHEMA_VERSION} this"
            " spidernet knows: it was written by a newer release; upgrade spidernet",
        )
    return int(app), int(version)


# Conditions that may clear by themselves: a lock held past the timeout, a full disk, I/O
# trouble (https://www.sqlite.org/rescode.html). Anything else (corruption, "not a database")
# needs a person.
_TRANSIENT = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def translate(exc: sqlite3.Error, key: Key | None, doing: str) -> StoreError:
    """The store error for a failed SQLite call: Unavailable when retrying may help."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    cls = Unavailable if primary in _TRANSIENT else BrokenStore
    hint = ""
    if primary == sqlite3.SQLITE_FULL:
        hint = " (the file system holding the store has no room; the write was rolled back)"
    elif primary == sqlite3.SQLITE_IOERR:
        hint = " (the file system holding the store failed a read or write; rolled back)"
    return cls(key, f"failed to {doing}: {exc}{hint}")
