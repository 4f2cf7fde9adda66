"""netns lane: real kernel, real CNI plugins, throw-away network namespaces.

Nothing is faked. Every test runs under `leak_check`, which fails it when the test left
behind namespaces, processes or file descriptors, or changed this machine's own namespace
(links, addresses, routes, rules, static neighbours; read only, never written). The `world`
fixture builds the standard underlay (a switch, a gateway, a "host" and pod namespaces),
records each namespace's footprint once built, and fails the test when any namespace differs
from that baseline at the end: what a test's plugins add, they must remove. Namespaces are
removed in every case, on failure too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from spidernet.node.access.base import Namespaces
from spidernet.node.access.broker import Broker
from spidernet.node.access.spawn import Spawning
from spidernet.node.lab.addresses import GATEWAY4, GATEWAY6
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.node.lab.topology import Topology, iface
from spidernet.testbed.harness import ProcessSnapshot, World
from spidernet.testbed.lanefixtures import REFERENCE_PLUGINS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.netns)


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("the netns lane needs root (it creates network namespaces)")
    if not (REFERENCE_PLUGINS / "macvlan").exists():
        raise pytest.UsageError("Debian's containernetworking-plugins are missing: run 'make test'")


@pytest.fixture(autouse=True)
def leak_check() -> Iterator[None]:
    """Fail the test when it leaked anything outside its namespaces (runs last)."""
    before = ProcessSnapshot.take()
    yield
    leaks = before.leaks(ProcessSnapshot.take())
    if leaks:
        pytest.fail("leak check failed:\n  " + "\n  ".join(leaks), pytrace=False)


@pytest.fixture
def world(topo: Topology) -> Iterator[World]:
    """Switch + gateway (192.0.2.1, 2001:db8:1::1) + host (eth0 on the segment) + two pods."""
    seg = topo.segment()
    gw = topo.gateway(seg, (iface(f"{GATEWAY4}/24"), iface(f"{GATEWAY6}/64")))
    host = topo.namespace("host")
    topo.attach(seg, host, "eth0")
    pods = [topo.namespace(f"pod{i}") for i in range(2)]
    w = World(topo, seg, host, gw, pods)
    w.seal()
    yield w
    changes = w.changes()
    if changes:
        lines = [f"{ns}: {c}" for ns, cs in changes.items() for c in cs]
        pytest.fail(
            "namespaces differ from their baseline:\n  " + "\n  ".join(lines), pytrace=False
        )


@pytest.fixture(params=["spawning", "broker"])
def access(request: pytest.FixtureRequest) -> Iterator[Namespaces]:
    """Both ways of reaching into namespaces: a process per reach, and the broker process
    (started and stopped inside the test, so the leak check sees it gone)."""
    if request.param == "spawning":
        yield Spawning()
        return
    broker = Broker()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def start_service() -> Iterator[Callable[..., ServiceProcess]]:
    """Start a `spidernet serve` of this test with extra options; every one started is
    stopped and its directory removed afterwards."""
    with ExitStack() as stack:
        yield lambda *extra_args: stack.enter_context(scratch_service(*extra_args))


@pytest.fixture
def service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    """A `spidernet serve` of this test (metrics on a free loopback port)."""
    return start_service()
