"""The one place the node's three CNI plugins are wired to what runs them.

A plugin's verbs take their effects through a context (where the host namespace is, the
node's state directory, the cluster's SpiderCoordinator settings, how to reach a pod's
namespace, where to log). Two hosts run them:

- the node agent (`spidernet serve`, node/agent): `for_agent` gives, per plugin name, a
  maker of the plugin for one call, whose host side is the calling runtime's namespace;
- the plugin process itself when no agent answers (`python -m spidernet.node.coordinator`
  or `.ifacer`, the executables' fallback): `in_process` builds the plugin for this process,
  whose host side is its own namespace (a runtime starts plugins in the host namespace).
  It is slow and says so in its log (DESIGN.md, "Thin plugins, hot node service").

spidernet-ipam has no in-process form: its state is the agent's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from spidernet.cni.skel import Plugin
from spidernet.control.client import Client, ServiceError, ServiceUnreachable, socket_path
from spidernet.control.client import state_dir as default_state_dir
from spidernet.netconf.coordinator.config import (
    ANNO_DEFAULT_ROUTE_NIC,
    ClusterSettings,
    cluster_settings,
)
from spidernet.node.access.base import Namespaces

if TYPE_CHECKING:  # (the in-process fallbacks import this module: nothing of the IPAM's)
    from spidernet.node.ipam.master import IPInterface, MasterReader
    from spidernet.node.ipam.plugin import Backend

# The cluster's coordinator settings for (namespace, pod name), or None.
Settings = Callable[[str, str], ClusterSettings | None]
# The plugin for one call, given the caller's (the host side's) network namespace.
PerCall = Callable[[str | None], Plugin]


def for_agent(
    ipam_backend: Backend,
    *,
    state_dir: Path | None,
    settings: Settings,
    access: Namespaces,
) -> dict[str, PerCall]:
    """What the agent serves: plugin name -> the plugin for one call. The coordinator needs a
    state directory (its saved plans); without one the agent does not serve it."""
    from spidernet.node.coordinator import commands as coordinator
    from spidernet.node.detect.announce import announce
    from spidernet.node.ifacer import commands as ifacer
    from spidernet.node.ipam.plugin import NAME as IPAM
    from spidernet.node.ipam.plugin import make_plugin as make_ipam

    plugins: dict[str, PerCall] = {
        IPAM: lambda host: make_ipam(ipam_backend, masters(access, host)),
        ifacer.NAME: lambda host: ifacer.make_plugin(
            ifacer.Context(host_netns=host, access=access)
        ),
    }
    if state_dir is not None:
        plugins[coordinator.NAME] = lambda host: coordinator.make_plugin(
            coordinator.Context(
                host_netns=host,
                state_dir=state_dir,
                cluster=settings,
                announce=announce,
                access=access,
            )
        )
    return plugins


def masters(access: Namespaces, host: str | None) -> MasterReader:
    """The addresses of a link of the host side (the caller's namespace), for
    spidernet-ipam's `match_master_subnet`; LookupError when the link does not exist."""

    def read(name: str) -> tuple[IPInterface, ...]:
        with access.netlink(host) as nl:
            index = {link.name: link.index for link in nl.links()}.get(name)
            if index is None:
                raise LookupError(name)
            return tuple(a.address for a in nl.addresses() if a.index == index)

    return read


def _log(name: str) -> Callable[[str], None]:
    def log(message: str) -> None:
        sys.stderr.write(f"{name}: {message}\n")

    return log


def agent_settings(namespace: str, name: str) -> ClusterSettings | None:
    """The cluster's settings for the pod as the agent's socket answers them (the
    SpiderCoordinator spec and the pod's default-route-NIC annotation), checked here; None
    when no agent answers (config and defaults then decide)."""
    client = Client(socket_path(), timeout=10)
    try:
        found = client.request(
            "GET", f"/v1/coordinator/config?podNamespace={namespace}&podName={name}"
        )
    except (ServiceUnreachable, ServiceError):
        return None
    if not isinstance(found, dict):
        return None
    annotations = found.pop("podAnnotations", {})
    nic = annotations.get(ANNO_DEFAULT_ROUTE_NIC, "") if isinstance(annotations, dict) else ""
    return cluster_settings(found, str(nic))


def coordinator_in_process() -> Plugin:
    """spidernet-coordinator for this process, logging that it runs without the agent."""
    from spidernet.node.coordinator import commands as coordinator
    from spidernet.node.detect.announce import announce

    log = _log(coordinator.NAME)
    log("no node service forwarding: running in-process")
    return coordinator.make_plugin(
        coordinator.Context(
            host_netns=None,
            state_dir=default_state_dir(),
            cluster=agent_settings,
            announce=announce,
            log=log,
        )
    )


def ifacer_in_process() -> Plugin:
    """spidernet-ifacer for this process (its host side is this process's namespace), logging
    that it runs without the agent. It loads only the ifacer: no scapy, no coordinator."""
    from spidernet.node.ifacer import commands as ifacer

    _log(ifacer.NAME)("no node service forwarding: running in-process")
    return ifacer.make_plugin(ifacer.Context())
