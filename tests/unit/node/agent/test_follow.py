"""The live watch that keeps the claims mirror current (follow.py), on the embedded store with
a scripted feed in the Kubernetes store's place: it lists, applies each change and bookmark
as it comes, lists again when the feed says its revision expired, waits and retries when the
feed fails, and `close` shuts the open watch. (The Kubernetes store's own feed is the k8s
lane's: the agents there follow their claims.)"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spidernet.control.store.base import CLAIM, Event, EventType, Expired, Key, Unavailable
from spidernet.control.store.embedded import EmbeddedStore
from spidernet.node.agent import follow
from spidernet.node.agent.follow import Closer
from spidernet.node.agent.pools import PoolView

END = object()  # the server ends the watch


class Feed:
    """What the store's `follow` would give: the items put on `script`, until END; an
    exception put there is raised. Records each call's `since`, and shuts when closed."""

    def __init__(self) -> None:
        self.script: queue.Queue[object] = queue.Queue()
        self.since: list[str] = []
        self.shut = threading.Event()

    def __call__(
        self, kind: str, since: str, opened: Callable[[Closer], None]
    ) -> Iterator[tuple[Event | None, str]]:
        assert kind == CLAIM
        self.since.append(since)
        opened(self.shut.set)
        while not self.shut.is_set():
            try:
                item = self.script.get(timeout=0.01)
            except queue.Empty:
                continue
            if item is END:
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, tuple)
            yield item


def claim(pool: str, ip: str) -> Key:
    return Key(CLAIM, pool, ip)


def wait_until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "db", synchronous="NORMAL")
    yield s
    s.close()


def test_it_lists_then_applies_changes_and_bookmarks_as_they_come(store: EmbeddedStore) -> None:
    listed = store.create(claim("p", "10.0.0.1"), {"pod": "ns/a"})
    view, feed = PoolView(store), Feed()
    view.follow(feed)
    try:
        wait_until("the first list", lambda: feed.since != [])
        assert view.claims.taken("p") == {0x0A000001}
        added = store.create(claim("p", "10.0.0.2"), {"pod": "ns/b"})
        feed.script.put((Event(EventType.ADDED, added, added.version), added.version))
        wait_until("the ADDED", lambda: 0x0A000002 in view.claims.taken("p"))
        feed.script.put((Event(EventType.DELETED, listed, "99"), "99"))
        wait_until("the DELETED", lambda: 0x0A000001 not in view.claims.taken("p"))
        feed.script.put((None, "120"))  # a bookmark
        wait_until("the bookmark's revision", lambda: view.claims.revision == "120")
        # The server ends the watch: the next one starts where the last left off.
        feed.script.put(END)
        wait_until("the second watch", lambda: len(feed.since) == 2)
        assert feed.since[1] == "120"
    finally:
        view.close()
    assert feed.shut.is_set()


def test_an_expired_revision_lists_again_and_a_failure_waits_and_retries(
    store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "RETRY_FIRST_S", 0.01)
    view, feed = PoolView(store), Feed()
    view.follow(feed)
    try:
        wait_until("the first watch", lambda: len(feed.since) == 1)
        # Written while the watch missed it, then the server forgets the revision.
        store.create(claim("p", "10.0.0.7"), {"pod": "ns/c"})
        feed.script.put(Expired(None, "too old"))
        wait_until("the relist", lambda: 0x0A000007 in view.claims.taken("p"))
        wait_until("a watch from the new list", lambda: len(feed.since) == 2)
        feed.script.put(Unavailable(None, "connection reset"))
        wait_until("the retry", lambda: len(feed.since) == 3)
        assert feed.since[2] == feed.since[1]  # same position: nothing skipped
    finally:
        view.close()


def test_the_process_own_writes_are_in_the_mirror_at_once(store: EmbeddedStore) -> None:
    from spidernet.control.store.base import Create, Delete

    view, feed = PoolView(store), Feed()
    view.follow(feed)
    try:
        wait_until("the first watch", lambda: len(feed.since) == 1)
        key = claim("p", "10.0.0.9")
        view.wrote([Create(key, {"pod": "ns/d"})])
        assert 0x0A000009 in view.claims.taken("p")
        view.wrote([Delete(key)])
        assert 0x0A000009 not in view.claims.taken("p")
    finally:
        view.close()
