"""A mirror kept current by a live watch (an informer), for the Kubernetes store.

Catching up on demand (mirror.py's `sync`) costs each ADD a consistent list and a watch per
kind, and on the Kubernetes store a wait of `watch_idle` for a kind that is quiet while
others are written: an ADD's claims are followed by its endpoint, so the claims' watch almost
always waits it out. A `Follower` instead keeps one watch open in a thread of its own and
applies each change as it arrives, under the view's lock; an ADD reads the mirror as it is.

A mirror that is a moment behind can only offer an address whose claim was just created
elsewhere: the claim's create is the arbiter (409 AlreadyExists), and the ADD tries the next
address, as it does when two agents race. The process's own writes are put into the mirror
at once (`PoolView.wrote`), so an agent never races itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from spidernet.control.store.base import Event, Expired

from .mirror import Mirror

Closer = Callable[[], None]
# The store's live feed of one kind: (kind, since, opened) -> (event or None for a bookmark,
# revision), until the server ends the watch; `opened` gets what ends it from another thread.
Feed = Callable[[str, str, Callable[[Closer], None]], Iterator[tuple[Event | None, str]]]

_log = logging.getLogger("spidernet.agent.follow")
RETRY_FIRST_S, RETRY_MAX_S = 0.1, 5.0


class Follower:
    """One mirror, listed and then watched by a thread of its own until `close`."""

    def __init__(self, mirror: Mirror[Any], feed: Feed, lock: threading.Lock) -> None:
        self._mirror = mirror
        self._feed = feed
        self._lock = lock
        self._stop = threading.Event()
        self._closer: Closer | None = None
        self._thread = threading.Thread(target=self._run, name=f"follow-{mirror.kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop watching (the open watch is shut) and wait for the thread."""
        self._stop.set()
        closer = self._closer
        if closer is not None:
            closer()
        self._thread.join(timeout=10)

    def _opened(self, closer: Closer) -> None:
        self._closer = closer
        if self._stop.is_set():  # closed while the watch was being opened
            closer()

    def _run(self) -> None:
        wait = RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                self._follow()
                wait = RETRY_FIRST_S
            except Expired:
                with self._lock:
                    self._mirror.revision = ""  # listed again on the next turn
            except Exception as e:  # (a thread of its own: nothing above it to catch it)
                if self._stop.is_set():
                    return
                _log.warning("watch of %s failed (%s); again in %.1f s", self._mirror.kind, e, wait)
                self._stop.wait(wait)
                wait = min(wait * 2, RETRY_MAX_S)

    def _follow(self) -> None:
        """List when the mirror has no revision, then apply the watch's changes until the
        server ends it or `close` shuts it."""
        mirror = self._mirror
        if not mirror.revision:
            listing = mirror.store.list(mirror.kind)  # (not under the lock: ADDs go on)
            with self._lock:
                mirror.load(listing)
        for event, revision in self._feed(mirror.kind, mirror.revision, self._opened):
            with self._lock:
                if event is not None:
                    mirror.apply(event)
                if revision:
                    mirror.revision = revision
            if self._stop.is_set():
                return
