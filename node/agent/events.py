"""The agent's Events on Pods whose allocation failed (Kubernetes mode only).

The failing ADD does not wait for them: each is queued and a thread of its own posts it
(KubeStore.post_event), so an API server that is slow or gone delays no answer to a
runtime. The queue is bounded; what does not fit is counted and dropped, and a failure to
post is logged at most once a minute.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from spidernet.control.model import events
from spidernet.control.store.base import StoreError
from spidernet.node.ipam.conf import PodMeta
from spidernet.node.ipam.errors import Failure, cni_error

_log = logging.getLogger("spidernet.events")

# (namespace, Event) -> the count written (KubeStore.post_event).
Post = Callable[[str, Mapping[str, Any]], int]
QUEUE = 256
LOG_EVERY_S = 60.0


class PodEvents:
    """Posts a Warning Event on the pod of each failed allocation, off the caller's thread."""

    def __init__(self, post: Post, node: str) -> None:
        self._post = post
        self.node = node
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(QUEUE)
        self.dropped = 0
        self.posted = 0
        self._logged = 0.0
        self._thread = threading.Thread(target=self._run, name="pod-events", daemon=True)
        self._thread.start()

    def add_failed(self, pod: PodMeta, error: Failure, *, waiting: bool) -> None:
        """The IPAM core's failure hook: queue the Event for the ADD of `pod` that failed
        with `error`, named after the CNI error the runtime got for it (cni_error)."""
        cni = cni_error(error)
        self.allocation_failed(pod.namespace, pod.name, pod.uid, cni.code, cni.msg, waiting=waiting)

    def allocation_failed(
        self, namespace: str, name: str, uid: str, code: int, message: str, *, waiting: bool
    ) -> None:
        """Queue the Event for a failed ADD of the pod `namespace/name` (`uid`, "" when the
        runtime did not say) that failed with CNI error `code`, if it deserves one."""
        reason = events.failure_reason(code, waiting=waiting)
        if reason is None or not namespace or not name:
            return
        now = datetime.now(UTC)
        event = events.pod_event(namespace, name, uid, reason, message, self.node, now)
        try:
            self._queue.put_nowait((namespace, event))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Post what is queued (for at most `timeout_s`), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            namespace, event = item
            try:
                self._post(namespace, event)
                self.posted += 1
            except StoreError as e:
                now = time.monotonic()
                if now - self._logged >= LOG_EVERY_S:
                    self._logged = now
                    _log.warning(
                        "event on pod %s/%s not posted: %s",
                        namespace,
                        event["involvedObject"]["name"],
                        e,
                    )
