"""`spidernet ip who|release` and the GC preview (control/controller/addresses.py) over a real
embedded store file: who holds an address, a release that refuses a running pod and takes the
address out of its endpoint, and the GC's verdicts without a write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spidernet.control.controller import addresses, gc
from spidernet.control.store.base import CLAIM, Key
from spidernet.control.store.embedded import EmbeddedStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "db", synchronous="NORMAL")
    yield s
    s.close()


def pod(store: EmbeddedStore, name: str, uid: str) -> None:
    store.create(
        Key("Pod", "ns", name), {"metadata": {"name": name, "namespace": "ns", "uid": uid}}
    )


def endpoint(store: EmbeddedStore, name: str, uid: str, *ips: tuple[str, str]) -> None:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns"},
        "status": {
            "current": {
                "uid": uid,
                "node": "n1",
                "ips": [
                    {"interface": f"net{i}", "ipv4": f"{ip}/24", "ipv4Pool": p}
                    for i, (ip, p) in enumerate(ips, 1)
                ],
            },
            "ownerControllerType": "Pod",
            "ownerControllerName": name,
        },
    }
    store.create(Key(gc.ENDPOINT, "ns", name), body)


def claim(store: EmbeddedStore, pool: str, ip: str, pod_name: str, uid: str) -> None:
    body = {"pod": f"ns/{pod_name}", "podUid": uid, "interface": "net1", "node": "n1",
            "since": "2026-12-07T07:00:00Z"}  # fmt: skip
    store.create(Key(CLAIM, pool, ip), body)


def test_who_names_the_claim_its_pod_state_and_the_endpoints_listing_it(
    store: EmbeddedStore,
) -> None:
    pod(store, "a", "ua")
    claim(store, "v4", "10.0.0.5", "a", "ua")
    endpoint(store, "a", "ua", ("10.0.0.5", "v4"))
    endpoint(store, "stale", "us", ("10.0.0.5", "other"))  # listed, no claim in that pool
    (listed_only, held) = addresses.who(store, "10.0.0.5")  # by pool name
    assert (held.pool, held.pod, held.pod_state) == ("v4", "ns/a", "running")
    assert [e.key.name for e in held.listed_by] == ["a"]
    assert (listed_only.pool, listed_only.claim, listed_only.pod) == ("other", None, "ns/stale")
    assert addresses.who(store, "10.0.0.99") == []
    with pytest.raises(ValueError, match="does not appear to be"):
        addresses.canonical("10.0.0.5/24")


def test_release_refuses_a_running_pod_and_otherwise_takes_the_address_out_of_its_endpoint(
    store: EmbeddedStore,
) -> None:
    pod(store, "a", "ua")
    claim(store, "v4", "10.0.0.5", "a", "ua")
    claim(store, "side", "10.1.0.5", "a", "ua")
    endpoint(store, "a", "ua", ("10.0.0.5", "v4"), ("10.1.0.5", "side"))
    with pytest.raises(addresses.Refused, match="still runs"):
        addresses.release(store, "10.0.0.5", None, force=False)
    assert len(store.list(CLAIM).items) == 2  # nothing changed
    addresses.release(store, "10.0.0.5", None, force=True)
    assert [c.key.name for c in store.list(CLAIM).items] == ["10.1.0.5"]
    (left,) = store.get(Key(gc.ENDPOINT, "ns", "a")).body["status"]["current"]["ips"]
    assert left["ipv4"] == "10.1.0.5/24"
    # The pod gone: its last address goes without --force, and the empty endpoint with it.
    store.delete(Key("Pod", "ns", "a"))
    addresses.release(store, "10.1.0.5", "side", force=False)
    assert store.list(CLAIM).items == ()
    assert store.list(gc.ENDPOINT).items == ()


def test_release_names_what_it_needs() -> None:
    with pytest.raises(addresses.Refused, match="no pool holds it"):
        addresses.plan_release([], None, False)
    two = [addresses.Holder(p, "10.0.0.5", None, (), "") for p in ("x", "y")]
    with pytest.raises(addresses.Refused, match="--pool"):
        addresses.plan_release(two, None, False)


def test_the_gc_preview_lists_verdicts_and_orphans_and_writes_nothing(
    store: EmbeddedStore,
) -> None:
    claim(store, "v4", "10.0.0.6", "gone", "ug")
    endpoint(store, "gone", "ug", ("10.0.0.6", "v4"))
    claim(store, "v4", "10.0.0.7", "lost", "ul")  # no endpoint, no pod: an orphan
    before = store.list(CLAIM).items
    verdicts = addresses.gc_preview(store, gc.Policy(30.0, 60.0))
    assert [(v.kind, v.name, v.addresses, v.reason) for v in verdicts] == [
        (gc.ENDPOINT, "ns/gone", ("v4/10.0.0.6",), "pod gone"),
        (
            CLAIM,
            "v4/10.0.0.7",
            ("v4/10.0.0.7",),
            "claim no endpoint lists (after --orphan-grace, 60 s)",
        ),
    ]
    assert store.list(CLAIM).items == before
