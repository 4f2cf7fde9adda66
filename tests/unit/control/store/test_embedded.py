"""The SQLite store beyond the contract: the file, its schema, trimming, many processes at
once, and SIGKILL at any moment."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spidernet.control.store import embedded, schema
from spidernet.control.store.base import CLAIM, Create, Expired, Key, Unavailable
from spidernet.control.store.embedded import EmbeddedStore, open_store

A = Key(CLAIM, "pool-a", "10.0.0.5")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db: Path) -> Iterator[EmbeddedStore]:
    with EmbeddedStore(db) as s:
        yield s


def pragma(db: Path, name: str) -> object:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def test_file_records_schema_version_and_wal(store: EmbeddedStore, db: Path) -> None:
    assert pragma(db, "user_version") == schema.SCHEMA_VERSION
    assert pragma(db, "application_id") == schema.APPLICATION_ID
    assert pragma(db, "journal_mode") == "wal"


def test_newer_schema_refuses_to_open(db: Path) -> None:
    EmbeddedStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={schema.SCHEMA_VERSION + 1}")
    conn.close()
    newer = rf"schema version {schema.SCHEMA_VERSION + 1}, newer than the {schema.SCHEMA_VERSION}"
    with pytest.raises(schema.BrokenStore, match=newer) as caught:
        EmbeddedStore(db)
    assert str(db) in str(caught.value)


@pytest.mark.parametrize("app_id", [0, 0x1234])
def test_foreign_database_refuses_to_open(db: Path, app_id: int) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA application_id={app_id}")
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.close()
    with pytest.raises(schema.BrokenStore, match=r"not a spidernet store|another program"):
        EmbeddedStore(db)


def test_garbage_file_refuses_to_open(db: Path) -> None:
    db.write_bytes(b"not a database at all" * 100)
    with pytest.raises(schema.BrokenStore, match="failed to open store"):
        EmbeddedStore(db)


def test_older_schema_is_migrated(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddedStore(db) as old:
        old.create(A, {"pod": "a"})
    ran: list[int] = []

    def to_v2(conn: sqlite3.Connection) -> None:
        ran.append(1)
        conn.execute("ALTER TABLE objects ADD COLUMN owner TEXT")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(schema.MIGRATIONS, 1, to_v2)
    with EmbeddedStore(db) as new:
        assert new.get(A).body == {"pod": "a"}
    EmbeddedStore(db).close()
    assert ran == [1]
    assert pragma(db, "user_version") == 2


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with open_store(tmp_path / "state") as s:
            s.create(A, {})
            names = sorted(p.name for p in (tmp_path / "state").iterdir())
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "state").iterdir()}
    finally:
        os.umask(old)
    assert names == ["spidernet.db", "spidernet.db-shm", "spidernet.db-wal"]
    assert modes == dict.fromkeys(names, 0o600)
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_reopening_sees_the_data_and_revisions_go_on(db: Path) -> None:
    with EmbeddedStore(db, synchronous="NORMAL") as s:
        first = s.create(A, {"pod": "a"})
        s.delete(A)
    with EmbeddedStore(db) as s:
        assert s.list(CLAIM).items == ()
        again = s.create(A, {"pod": "b"})
        assert int(again.version) > int(first.version) + 1
        events, _ = s.changes(CLAIM, "0")
        assert [e.obj.body for e in events] == [{"pod": "a"}, {"pod": "a"}, {"pod": "b"}]


def test_bad_settings_are_refused(db: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        EmbeddedStore(db, synchronous="OFF")
    with pytest.raises(ValueError, match="keep_changes"):
        EmbeddedStore(db, keep_changes=0)


@pytest.mark.parametrize(
    ("sql", "args", "search"),
    [
        (embedded._LIST_KIND, (CLAIM,), "(kind=?)"),
        (embedded._LIST_NAMESPACE, (CLAIM, "pool-a"), "(kind=? AND namespace=?)"),
    ],
)
def test_list_is_a_primary_key_range_scan(
    store: EmbeddedStore, db: Path, sql: str, args: tuple[str, ...], search: str
) -> None:
    conn = sqlite3.connect(db)
    plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
    conn.close()
    assert f"SEARCH objects USING PRIMARY KEY {search}" in plan
    assert "TEMP B-TREE" not in plan  # no sort: the key order is the b-tree's order


@pytest.mark.parametrize(
    "body", [["a"], {"x": float("nan")}, {"x": {1, 2}}, {1: "a"}, {"x": object()}]
)
def test_bodies_must_be_json_objects(store: EmbeddedStore, body: object) -> None:
    bad = Create(A, body)  # type: ignore[arg-type]  # the point: bodies the type forbids
    with pytest.raises((TypeError, ValueError), match=r"IPClaim 'pool-a/10.0.0.5': body"):
        store.commit([Create(Key(CLAIM, "pool-a", "10.0.0.4"), {}), bad])
    assert store.list(CLAIM).items == ()


@pytest.mark.parametrize("since", ["", "x", "-1", "1.5", " 1", "\u0661"])
def test_revision_must_be_a_number(store: EmbeddedStore, since: str) -> None:
    with pytest.raises(ValueError, match="not a store revision"):
        store.changes(CLAIM, since)


def test_revision_ahead_of_the_store_is_expired(store: EmbeddedStore) -> None:
    store.create(A, {})
    with pytest.raises(Expired, match="ahead"):
        store.changes(CLAIM, "2")


def test_log_is_trimmed_in_bulk_to_the_newest(db: Path) -> None:
    with EmbeddedStore(db, keep_changes=100) as s:  # trims once 10 over
        for n in range(110):
            s.create(Key(CLAIM, "p", str(n)), {})
        assert len(s.changes(CLAIM, "0")[0]) == 110
        s.create(Key(CLAIM, "p", "110"), {})  # revision 111: back to 100 kept
        with pytest.raises(Expired, match="trimmed"):
            s.changes(CLAIM, "10")
        events, position = s.changes(CLAIM, "11")
        assert [e.revision for e in events] == [str(r) for r in range(12, 112)]
        assert position == "111"


def test_busy_beyond_the_timeout_is_unavailable(db: Path) -> None:
    with EmbeddedStore(db, busy_timeout=0.2) as s:
        s.create(A, {"pod": "a"})
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the single write lock
        try:
            started = time.monotonic()
            with pytest.raises(Unavailable, match=r"IPClaim 'pool-a/10.0.0.6': failed to create"):
                s.create(Key(CLAIM, "pool-a", "10.0.0.6"), {})
            assert time.monotonic() - started >= 0.2
            assert s.get(A).body == {"pod": "a"}  # WAL: readers do not wait for the writer
            assert len(s.list(CLAIM).items) == 1
        finally:
            other.execute("ROLLBACK")
            other.close()
        s.create(Key(CLAIM, "pool-a", "10.0.0.6"), {})


def test_a_waiting_writer_gets_the_lock_once_it_is_free(store: EmbeddedStore, db: Path) -> None:
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    release.start()
    try:
        store.create(A, {})  # waits within busy_timeout instead of failing
    finally:
        release.join()
        other.close()
    assert store.get(A).body == {}


def test_closed_store_refuses_calls(db: Path) -> None:
    s = EmbeddedStore(db)
    s.close()
    s.close()
    with pytest.raises(ValueError, match="closed"):
        s.get(A)


CLAIMER = """
import json, random, sys
from pathlib import Path
from spidernet.control.store.base import AlreadyExists, Key
from spidernet.control.store.embedded import EmbeddedStore

path, worker, names = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
random.shuffle(names)
won = []
with EmbeddedStore(path) as store:
    print("ready", flush=True)
    sys.stdin.readline()
    for name in names:
        try:
            store.create(Key("IPClaim", "pool-a", name), {"worker": worker})
        except AlreadyExists:
            continue
        won.append(name)
print(json.dumps(won), flush=True)
"""


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_processes_racing_for_the_same_claims(db: Path) -> None:
    names = [f"10.0.{n // 256}.{n % 256}" for n in range(400)]
    rng = random.Random(7)
    procs = []
    for pair in range(4):  # two complementary halves per pair: every name has 4 contenders
        half = set(rng.sample(names, 200))
        for worker, share in ((2 * pair, half), (2 * pair + 1, set(names) - half)):
            procs.append(run_python(CLAIMER, str(db), str(worker), json.dumps(sorted(share))))
    try:
        for p in procs:  # every worker has opened the (new) file; then all start at once
            assert p.stdout is not None
            assert p.stdout.readline() == "ready\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0] * 8
    wins = [json.loads(out) for out in outputs]
    assert sum(len(w) for w in wins) == 400
    assert sorted(n for w in wins for n in w) == sorted(names)
    with EmbeddedStore(db) as s:
        owner = {item.key.name: item.body["worker"] for item in s.list(CLAIM, "pool-a").items}
        events, _ = s.changes(CLAIM, "0")
    assert owner == {name: worker for worker, w in enumerate(wins) for name in w}
    assert len(events) == 400


WRITER = """
import sys
from pathlib import Path
from spidernet.control.store.base import Create, Key, Update
from spidernet.control.store.embedded import EmbeddedStore

store = EmbeddedStore(Path(sys.argv[1]))
counter = Key("Counter", "", "commits")
print("ready", flush=True)
while True:
    current = store.get(counter)
    n = current.body["n"] + 1
    store.commit([
        Create(Key("Pair", "a", str(n)), {"n": n}),
        Create(Key("Pair", "b", str(n)), {"n": n}),
        Update(counter, {"n": n}, current.version),
    ])
    print(n, flush=True)
"""


def test_sigkill_never_loses_or_splits_a_commit(db: Path) -> None:
    counter = Key("Counter", "", "commits")
    with EmbeddedStore(db) as s:
        s.create(counter, {"n": 0})
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    reported: list[int] = []
    for _ in range(5):
        child = run_python(WRITER, str(db))
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.05, 0.3))  # the random moment of the crash
        finally:
            os.kill(child.pid, signal.SIGKILL)
            out, _ = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL
        lines = out.split("\n")[:-1]  # a line cut short by the kill has no newline
        assert lines, f"seed {seed}: the writer committed nothing before the kill"
        reported += [int(line) for line in lines]

        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
        with EmbeddedStore(db) as s:
            a = {int(i.key.name) for i in s.list("Pair", "a").items}
            b = {int(i.key.name) for i in s.list("Pair", "b").items}
            n = s.get(counter).body["n"]
        assert a == b, f"seed {seed}: half-applied commits {a ^ b}"
        assert a == set(range(1, n + 1)), f"seed {seed}: counter {n} disagrees with pairs"
        assert set(reported) <= a, f"seed {seed}: lost commits {set(reported) - a}"
        assert n - reported[-1] in (0, 1), f"seed {seed}: {n} stored, {reported[-1]} reported"
