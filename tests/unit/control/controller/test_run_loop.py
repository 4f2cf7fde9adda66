"""The controller loop (run.run): leadership on a Lease, and a reconciler's failure ending only
its own pass. The Lease lives in the real SQLite store, as a plain document."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from spidernet.control.controller.metrics import ControllerMetrics
from spidernet.control.controller.run import Elector, run
from spidernet.control.store.base import Invalid, Key, NotFound, Store, Stored, Unavailable
from spidernet.control.store.embedded import EmbeddedStore


class LeasedStore(EmbeddedStore):
    """The embedded store with the two Lease calls the elector makes (KubeStore has them)."""

    def _key(self, namespace: str, name: str) -> Key:
        return Key("Lease", namespace, name)

    def read_lease(self, namespace: str, name: str) -> Stored:
        return self.get(self._key(namespace, name))

    def write_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any], expected: str | None
    ) -> Stored:
        key = self._key(namespace, name)
        if expected is None:
            return self.create(key, dict(spec))
        return self.update(key, dict(spec), expected)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LeasedStore]:
    s = LeasedStore(tmp_path / "db", synchronous="NORMAL")
    yield s
    s.close()


class Failing:
    """A reconciler that raises `error` on each pass, counting its passes."""

    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error
        self.passes = 0

    def reconcile(self, store: Store, now: float, log: Any) -> None:
        self.passes += 1
        raise self.error


class Counting:
    """A reconciler that only counts; stops the loop after `stop_after` passes."""

    name = "counting"

    def __init__(self, stop: threading.Event, stop_after: int) -> None:
        self.stop = stop
        self.stop_after = stop_after
        self.passes = 0

    def reconcile(self, store: Store, now: float, log: Any) -> None:
        self.passes += 1
        if self.passes >= self.stop_after:
            self.stop.set()


@pytest.mark.parametrize(
    "error",
    [
        Unavailable(None, "connection refused"),
        Invalid(Key("SpiderIPPool", "", "p"), "field not declared in schema"),
        NotFound(Key("SpiderSubnet", "", "s"), "gone"),
    ],
    ids=["unavailable", "invalid", "not-found"],
)
def test_a_failing_reconciler_ends_its_pass_not_the_loop(
    store: LeasedStore, error: Exception
) -> None:
    stop = threading.Event()
    bad = Failing("bad", error)
    good = Counting(stop, stop_after=3)
    lines: list[str] = []
    elector = Elector(store, "kube-system", "spidernet-controller", "me", duration_s=3)
    run(elector, [bad, good], interval_s=0.0, stop=stop, log=lines.append)
    # Three passes ran to the end, each past the failing reconciler.
    assert good.passes == 3
    assert bad.passes == 3
    assert sum(1 for line in lines if line.startswith("bad: pass")) == 3, lines
    assert str(error) in next(line for line in lines if line.startswith("bad: pass"))
    # The loop released the Lease on its way out.
    assert not store.read_lease("kube-system", "spidernet-controller").body.get("holderIdentity")


def test_an_error_that_is_not_the_stores_still_stops_the_controller(store: LeasedStore) -> None:
    # A bug is not hidden as a skipped pass: it ends the loop (and the process) loudly.
    stop = threading.Event()
    elector = Elector(store, "kube-system", "spidernet-controller", "me", duration_s=3)
    with pytest.raises(KeyError):
        run(elector, [Failing("bug", KeyError("x"))], interval_s=0.0, stop=stop, log=print)
    assert not store.read_lease("kube-system", "spidernet-controller").body.get("holderIdentity")


def test_the_loop_counts_its_passes_failures_and_leadership(store: LeasedStore) -> None:
    stop = threading.Event()
    metrics = ControllerMetrics()
    bad = Failing("bad", Unavailable(None, "connection refused"))
    good = Counting(stop, stop_after=2)
    elector = Elector(store, "kube-system", "spidernet-controller", "me", duration_s=3)
    leading: list[float | None] = []

    class Watching(Counting):
        name = "watching"

        def reconcile(self, store: Store, now: float, log: Any) -> None:
            leading.append(metrics.registry.get_sample_value("spidernet_controller_leader"))
            super().reconcile(store, now, log)

    watch = Watching(stop, stop_after=2)
    run(elector, [bad, good, watch], interval_s=0.0, stop=stop, log=lambda _: None, metrics=metrics)
    value = metrics.registry.get_sample_value
    assert leading == [1.0, 1.0]  # while it led
    assert value("spidernet_controller_leader") == 0.0  # released on the way out
    assert value("spidernet_controller_pass_failures_total", {"reconciler": "bad"}) == 2.0
    for part in ("bad", "counting", "watching"):
        assert value("spidernet_controller_pass_seconds_count", {"reconciler": part}) == 2.0
    assert b"process_cpu_seconds_total" in metrics.expose()
    metrics.reviewed("SpiderIPPool", allowed=False)
    assert (
        value(
            "spidernet_controller_webhook_reviews_total",
            {"kind": "SpiderIPPool", "allowed": "false"},
        )
        == 1.0
    )
