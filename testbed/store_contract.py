"""The `Store` contract, one suite for every backend, through the protocol alone (DESIGN.md:
"one contract test suite runs against every store implementation").

A backend's test module subclasses `StoreContract` and gives it a `backend` fixture (a
`Backend`: how to get a new, empty store); pytest collects the inherited tests there. The unit
lane runs it against the embedded store (tests/unit/control/store/test_contract.py), the k8s
lane against the Kubernetes store on a real API server (tests/k8s/test_store_contract.py).

Versions and revisions are opaque: these tests compare them for equality only. Bodies are
opaque too, so the kinds here are ones every backend stores as given (IPClaim and a made-up
one); Spiderpool's kinds, which the Kubernetes store keeps under their CRDs' schemas, are
tested in the backends' own files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spidernet.control.store.base import (
    CLAIM,
    AlreadyExists,
    Conflict,
    Create,
    Delete,
    EventType,
    Expired,
    Key,
    NotFound,
    Store,
    Update,
)


@dataclass(frozen=True)
class Backend:
    """How to get a new, empty store of one kind. `short_history(dir, n)` gives one that
    remembers only about the last `n` changes; None when a backend cannot be told to forget."""

    name: str
    fresh: Callable[[Path], Store]
    short_history: Callable[[Path, int], Store] | None = None


def claim(name: str, pool: str = "pool-a") -> Key:
    return Key(CLAIM, pool, name)


A, B, C = claim("10.0.0.5"), claim("10.0.0.6"), claim("10.0.0.7")
OTHER = "Widget"  # another kind, cluster-scoped


class StoreContract:
    """The suite; a subclass named Test... with a `backend` fixture in reach runs it."""

    @pytest.fixture
    def store(self, backend: Backend, tmp_path: Path) -> Iterator[Store]:
        """A new, empty store of the backend's kind, closed after the test."""
        s = backend.fresh(tmp_path)
        yield s
        s.close()

    def test_create_then_get(self, store: Store) -> None:
        stored = store.create(A, {"pod": "default/web-0", "nested": {"ips": [1, 2], "ok": True}})
        assert stored.key == A
        assert stored.body == {"pod": "default/web-0", "nested": {"ips": [1, 2], "ok": True}}
        assert store.get(A) == stored

    def test_bodies_are_copies(self, store: Store) -> None:
        body: dict[str, Any] = {"pod": "a", "tags": ["x"]}
        returned = store.create(A, body)
        body["tags"].append("changed")
        returned.body["tags"].append("changed")
        assert store.get(A).body == {"pod": "a", "tags": ["x"]}

    def test_list_is_ordered_by_key_and_filters(self, store: Store) -> None:
        keys = [
            claim("10.0.0.9", "pool-b"),
            claim("10.0.0.2", "pool-a"),
            claim("10.0.0.10", "pool-b"),
        ]
        keys += [Key(OTHER, "", "pool-a"), claim("10.0.0.1", "pool-c")]
        for k in keys:
            store.create(k, {"n": k.name})
        claims = sorted(k for k in keys if k.kind == CLAIM)
        assert [s.key for s in store.list(CLAIM).items] == claims
        assert [s.key.name for s in store.list(CLAIM, "pool-b").items] == ["10.0.0.10", "10.0.0.9"]
        assert store.list(CLAIM, "nowhere").items == ()
        assert store.list("Nothing").items == ()
        (pool,) = store.list(OTHER).items
        assert pool.body == {"n": "pool-a"}
        assert pool == store.get(pool.key)

    def test_create_taken_key_is_already_exists(self, store: Store) -> None:
        first = store.create(A, {"pod": "a"})
        with pytest.raises(AlreadyExists) as caught:
            store.create(A, {"pod": "b"})
        assert isinstance(caught.value, Conflict)
        assert caught.value.key == A
        assert str(A) in str(caught.value)
        assert store.get(A) == first

    def test_update_at_expected_version(self, store: Store) -> None:
        first = store.create(A, {"pod": "a"})
        second = store.update(A, {"pod": "b"}, first.version)
        assert second.body == {"pod": "b"}
        assert second.version != first.version
        assert store.get(A) == second

    def test_update_at_stale_version_is_conflict(self, store: Store) -> None:
        first = store.create(A, {"pod": "a"})
        second = store.update(A, {"pod": "b"}, first.version)
        with pytest.raises(Conflict) as caught:
            store.update(A, {"pod": "c"}, first.version)
        assert not isinstance(caught.value, AlreadyExists)
        assert caught.value.key == A
        assert str(A) in str(caught.value)
        assert store.get(A) == second

    def test_missing_objects_are_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound) as caught:
            store.get(A)
        assert caught.value.key == A
        assert str(A) in str(caught.value)
        with pytest.raises(NotFound):
            store.update(A, {}, "1")
        with pytest.raises(NotFound):
            store.delete(A)
        with pytest.raises(NotFound):
            store.delete(A, "1")

    def test_delete_unconditional_and_at_version(self, store: Store) -> None:
        store.create(A, {"pod": "a"})
        b = store.create(B, {"pod": "b"})
        store.delete(A)
        store.delete(B, b.version)
        assert store.list(CLAIM).items == ()
        with pytest.raises(NotFound):
            store.get(A)
        with pytest.raises(NotFound):
            store.delete(A)

    def test_delete_at_stale_version_is_conflict(self, store: Store) -> None:
        first = store.create(A, {"pod": "a"})
        second = store.update(A, {"pod": "b"}, first.version)
        with pytest.raises(Conflict):
            store.delete(A, first.version)
        assert store.get(A) == second

    def test_versions_change_on_every_write(self, store: Store) -> None:
        versions = [store.create(A, {"n": 0}).version]
        for n in range(1, 4):
            versions.append(store.update(A, {"n": n}, versions[-1]).version)
        store.delete(A, versions[-1])
        versions.append(store.create(A, {"n": 0}).version)
        versions.append(store.create(B, {"n": 0}).version)
        assert len(set(versions)) == len(versions)

    def test_commit_applies_every_write(self, store: Store) -> None:
        a = store.create(A, {"n": 1})
        store.create(B, {"n": 2})
        results = store.commit([Update(A, {"n": 10}, a.version), Delete(B), Create(C, {"n": 3})])
        assert len(results) == 3
        assert results[1] is None
        assert results[0] is not None
        assert results[0].body == {"n": 10}
        assert results[2] is not None
        assert results[2].key == C
        assert results[0] == store.get(A)
        assert results[2] == store.get(C)
        with pytest.raises(NotFound):
            store.get(B)
        assert store.commit([]) == ()

    def test_commit_is_all_or_nothing(self, store: Store) -> None:
        taken = store.create(C, {"n": "taken"})
        before = store.list(CLAIM)
        with pytest.raises(AlreadyExists) as caught:
            store.commit([Create(A, {"n": 1}), Create(B, {"n": 2}), Create(C, {"n": 3})])
        assert caught.value.key == C
        assert store.list(CLAIM).items == (taken,)
        events, _ = store.changes(CLAIM, before.revision)
        assert events == ()

    def test_commit_raises_the_first_failing_write(self, store: Store) -> None:
        a = store.create(A, {"n": 1})
        store.update(A, {"n": 2}, a.version)
        store.create(C, {"n": 3})
        with pytest.raises(Conflict) as caught:
            store.commit([Delete(A, a.version), Update(B, {}, "1"), Create(C, {})])
        assert type(caught.value) is Conflict
        assert caught.value.key == A
        with pytest.raises(NotFound) as missing:
            store.commit([Create(B, {"n": 2}), Delete(B), Delete(B)])
        assert missing.value.key == B
        assert [s.key for s in store.list(CLAIM).items] == [A, C]

    def test_changes_report_each_write_in_order(self, store: Store) -> None:
        start = store.list(CLAIM).revision
        a = store.create(A, {"n": 1})
        store.create(Key(OTHER, "", "pool-a"), {"other": "kind"})
        a2 = store.update(A, {"n": 2}, a.version)
        store.delete(A)
        events, next_revision = store.changes(CLAIM, start)
        assert [e.type for e in events] == [EventType.ADDED, EventType.MODIFIED, EventType.DELETED]
        assert [e.obj.key for e in events] == [A, A, A]
        assert events[0].obj == a
        assert events[1].obj == a2
        assert events[2].obj.body == {"n": 2}  # the last body stored
        assert len({e.revision for e in events}) == 3
        assert store.changes(CLAIM, next_revision) == ((), next_revision)
        store.create(B, {"n": 3})
        later, _ = store.changes(CLAIM, next_revision)
        assert [(e.type, e.obj.key) for e in later] == [(EventType.ADDED, B)]

    def test_list_then_watch_has_no_gap(self, store: Store) -> None:
        a = store.create(A, {"n": 1})
        store.create(B, {"n": 2})
        listing = store.list(CLAIM)
        store.create(C, {"n": 3})
        store.update(A, {"n": 4}, a.version)
        store.delete(B)
        events, _ = store.changes(CLAIM, listing.revision)
        assert [(e.type, e.obj.key) for e in events] == [
            (EventType.ADDED, C),
            (EventType.MODIFIED, A),
            (EventType.DELETED, B),
        ]
        # Replaying the listing with the events gives the current state.
        state = {s.key: s for s in listing.items}
        for e in events:
            if e.type is EventType.DELETED:
                del state[e.obj.key]
            else:
                state[e.obj.key] = e.obj
        assert tuple(state[k] for k in sorted(state)) == store.list(CLAIM).items

    def test_watch_position_survives_other_kinds_writing(self, store: Store) -> None:
        _, position = store.changes(CLAIM, store.list(CLAIM).revision)
        for n in range(20):
            store.create(Key(OTHER, "", f"pool-{n}"), {})
        events, position = store.changes(CLAIM, position)
        assert events == ()
        store.create(A, {})
        events, _ = store.changes(CLAIM, position)
        assert [e.obj.key for e in events] == [A]

    def test_forgotten_revision_is_expired(self, backend: Backend, tmp_path: Path) -> None:
        if backend.short_history is None:
            pytest.skip(f"{backend.name} cannot be told to forget changes")
        store = backend.short_history(tmp_path, 5)
        try:
            start = store.list(CLAIM).revision
            for n in range(30):
                store.create(claim(f"10.0.1.{n}"), {"n": n})
            with pytest.raises(Expired):
                store.changes(CLAIM, start)
            # Listing again gives a revision to watch from.
            listing = store.list(CLAIM)
            assert len(listing.items) == 30
            store.delete(claim("10.0.1.0"))
            events, _ = store.changes(CLAIM, listing.revision)
            assert [(e.type, e.obj.key) for e in events] == [(EventType.DELETED, claim("10.0.1.0"))]
        finally:
            store.close()

    def test_create_arbitrates_between_threads(self, store: Store) -> None:
        names = [f"10.0.2.{n}" for n in range(60)]

        def grab(worker: int) -> list[str]:
            won = []
            for name in names if worker % 2 else names[::-1]:
                try:
                    store.create(claim(name), {"worker": worker})
                except AlreadyExists:
                    continue
                won.append(name)
            return won

        with ThreadPoolExecutor(max_workers=4) as pool:
            wins = list(pool.map(grab, range(4)))
        assert sorted(n for won in wins for n in won) == sorted(names)
        for worker, won in enumerate(wins):
            for name in won:
                assert store.get(claim(name)).body == {"worker": worker}
