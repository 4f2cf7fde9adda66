"""The Kubernetes store's `changes`: a watch from a revision (docs/kube-store.md, "changes").

The store first lists one object to learn the current revision `now` (a consistent read), then
watches and collects events until one is at `now` or later, or no event arrives for
`watch_idle` seconds, or the server ends the watch after `watch_timeout`. The next revision is
the last event's (a bookmark's when the server sends one): never past an event not yet seen, so
nothing is skipped, but a kind that is quiet while others write keeps its old position
(Kubernetes gives no progress marker on demand). A position older than the API server's watch
cache is 410 Gone: Expired, and the caller lists again, as any informer does. Revisions are the
API server's; the store only compares them (as integers) to refuse one newer than the server
(a replaced cluster) with Expired.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import urllib3.exceptions
import urllib3.response

from spidernet.control.store.base import Event, EventType, Expired, StoreError, Unavailable
from spidernet.control.store.kube_api import KubeApi, read_timed_out
from spidernet.control.store.kube_names import Doc, decode_as, parse_revision, resource_of

Closer = Callable[[], None]


def current_revision(api: KubeApi, kind: str) -> str:
    """The API server's current revision, from a consistent list of at most one object."""
    call = api.lister(kind, None, {"limit": 1, "_request_timeout": api.timeout})
    return str(api.call(None, f"list {kind}", call)["metadata"]["resourceVersion"])


def changes(
    api: KubeApi, kind: str, since: str, *, watch_idle: float, watch_timeout: int
) -> tuple[tuple[Event, ...], str]:
    """Events of `kind` after revision `since`, oldest first, and the revision to ask from
    next; raises Expired when the API server no longer has `since` or never gave it out."""
    after = parse_revision(since)
    res = resource_of(kind)
    now = current_revision(api, kind)
    if after > int(now):
        raise Expired(None, f"revision {after} is ahead of the API server's {now}")
    if after == int(now):
        return (), since
    events: list[Event] = []
    position = since
    kw = {
        "watch": True,
        "resource_version": since,
        "allow_watch_bookmarks": True,
        "timeout_seconds": watch_timeout,
        "_preload_content": False,
        "_request_timeout": (api.timeout, watch_idle),
    }
    try:
        stream = api.send(None, f"watch {kind}", api.lister(kind, None, kw), holds=False)
    except Unavailable as e:
        if not read_timed_out(e.__cause__):
            raise
        # A loaded API server did not even answer the watch within `watch_idle`: nothing
        # was seen, so nothing is skipped; the caller asks from `since` again next time.
        return (), since
    assert isinstance(stream, urllib3.response.BaseHTTPResponse)  # (_preload_content=False)
    try:
        for event in _lines(stream):
            obj = event.get("object") or {}
            if event.get("type") == "ERROR":
                raise watch_error(kind, obj)
            revision = str(obj.get("metadata", {}).get("resourceVersion", ""))
            if event.get("type") != "BOOKMARK":
                stored = decode_as(kind, res, obj)
                if stored.key.kind == kind:
                    events.append(Event(EventType(event["type"]), stored, revision))
            position = revision or position
            if int(position) >= int(now):
                break
    except urllib3.exceptions.ReadTimeoutError:
        pass  # quiet for `watch_idle` seconds: caught up
    except urllib3.exceptions.HTTPError as e:
        raise Unavailable(None, f"watch {kind}: {e}") from e
    finally:
        stream.close()
        stream.release_conn()
    return tuple(events), position


LIVE_SECONDS = 300  # how long one live watch request asks the server to run


def live_request(api: KubeApi, since: str, *, bookmarks: bool = False) -> dict[str, Any]:
    """The lister arguments of a live watch from revision `since` (with bookmarks when
    asked): the server ends it after LIVE_SECONDS, and a read that outlasts that is a lost
    connection."""
    return {
        "watch": True,
        "resource_version": since,
        "timeout_seconds": LIVE_SECONDS,
        "_preload_content": False,
        "_request_timeout": (api.timeout, LIVE_SECONDS + 30),
        "allow_watch_bookmarks": bookmarks,
    }


def live_events(
    api: KubeApi,
    kind: str,
    lister: Callable[[], object],
    opened: Callable[[Closer], None] | None = None,
) -> Iterator[Doc]:
    """The events of one live watch request (`lister`, made with `live_request`) as each
    arrives, until the server ends it, or the stream is shut: `opened` is given what shuts
    it, which another thread may call. An ERROR event raises the store's error (Expired for
    a revision the server forgot); a broken connection raises Unavailable."""
    stream = api.send(None, f"watch {kind}", lister, holds=False)
    assert isinstance(stream, urllib3.response.HTTPResponse)  # (_preload_content=False)
    shut = threading.Event()

    def close() -> None:
        shut.set()
        stream.shutdown()

    if opened is not None:
        opened(close)
    try:
        for event in live_lines(stream):
            if event.get("type") == "ERROR":
                raise watch_error(kind, event.get("object") or {})
            yield event
    except urllib3.exceptions.ReadTimeoutError:
        return  # (the caller watches again from the last revision it saw)
    except (urllib3.exceptions.HTTPError, OSError) as e:
        if shut.is_set():
            return  # shut by `close`: the end asked for
        raise Unavailable(None, f"watch {kind}: {e}") from e
    finally:
        stream.close()
        stream.release_conn()


def follow(
    api: KubeApi, kind: str, since: str, opened: Callable[[Closer], None]
) -> Iterator[tuple[Event | None, str]]:
    """The changes of `kind` after revision `since` as they happen, each with its revision
    (None and the revision for a bookmark), until the server ends the watch (after about
    five minutes) or the stream is shut (`live_events`). Raises Expired when `since` is
    older than the API server's watch cache (list again), Unavailable when the connection
    breaks."""
    res = resource_of(kind)
    kw = live_request(api, since, bookmarks=True)
    for event in live_events(api, kind, api.lister(kind, None, kw), opened):
        obj = event.get("object") or {}
        revision = str(obj.get("metadata", {}).get("resourceVersion", ""))
        if event.get("type") == "BOOKMARK":
            yield None, revision
            continue
        stored = decode_as(kind, res, obj)
        if stored.key.kind == kind:
            yield Event(EventType(event["type"]), stored, revision), revision


def _lines(stream: urllib3.response.BaseHTTPResponse) -> Iterator[Doc]:
    """The watch events of a streaming response, one JSON object a line."""
    for line in stream:
        if line.strip():
            event: Doc = json.loads(line)
            yield event


def live_lines(stream: urllib3.response.BaseHTTPResponse) -> Iterator[Doc]:
    """The watch events of a streaming response as each arrives: iterating the response
    itself reads 64 KiB at a time, and a quiet watch would hold back what it has."""
    assert isinstance(stream, urllib3.response.HTTPResponse)
    chunks = stream.read_chunked(decode_content=True) if stream.chunked else stream.stream(1)
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                event: Doc = json.loads(line)
                yield event


def watch_error(kind: str, status: Mapping[str, Any]) -> StoreError:
    """The store error of a watch's ERROR event (`status`: its Status object)."""
    code = status.get("code")
    message = f"watch {kind}: {status.get('message', status)}"
    if code == 410:
        return Expired(None, message)
    return Unavailable(None, message)
