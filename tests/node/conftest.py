"""node lane: a real Kubernetes node (kubelet, containerd, Multus) running spidernet's image.

The lane runs in network and mount namespaces of its own (`tests/lanes.py node`), where
`spidernet.testbed.node` brings up one node: etcd and kube-apiserver, kube-controller-manager,
kube-scheduler, containerd, kube-proxy and a kubelet, with Multus over Debian's bridge +
host-local as the node's CNI. One node serves the whole session; spidernet is installed on it
once, with `helm install` of deploy/chart and the image built here, as a user would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from spidernet.testbed import nodekube, nodelane
from spidernet.testbed.guard import sigterm_as_exit
from spidernet.testbed.node import RealNode, running_node


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def lane() -> nodelane.Prepared:
    """The node's programs and the images, built first where the cache lacks them."""
    return nodelane.prepare()


@pytest.fixture(scope="session")
def node(
    lane: nodelane.Prepared, record_testsuite_property: Callable[[str, object], None]
) -> Iterator[RealNode]:
    """A Ready node; stopped, and everything it made removed, at the end of the session
    (also when the lane is sent SIGTERM: it unwinds as an exit, in this process only)."""
    with sigterm_as_exit(), running_node(lane.tools, lane.images) as real:
        for name, seconds in real.timings.items():
            record_testsuite_property(f"node_{name}_seconds", f"{seconds:.1f}")
        yield real


@pytest.fixture(scope="session")
def spidernet(
    node: RealNode,
    lane: nodelane.Prepared,
    record_testsuite_property: Callable[[str, object], None],
) -> RealNode:
    """The node with spidernet installed by `helm install` of deploy/chart (agent and controller
    ready)."""
    seconds = nodekube.install_spidernet(node, lane.spidernet_image, lane.helm)
    record_testsuite_property("spidernet_install_seconds", f"{seconds:.1f}")
    return node
