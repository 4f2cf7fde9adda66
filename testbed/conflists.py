"""The standard underlay chain, as the lanes hand it to a runtime: macvlan on the host's eth0
in bridge mode with spidernet-ipam, optionally followed by spidernet-coordinator.

Tests build their network configs here and spell out only what they are about (a pool, a
probe, a coordinator key); a test of an odd input keeps its own literal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spidernet.cni.config import parse_conflist
from spidernet.node.lab.runtime import Chain

VERSION = "1.0.0"  # Debian 12's reference plugins speak up to 1.0.0
NAME = "underlay"


def spidernet_ipam(socket: str | Path | None = None, **keys: object) -> dict[str, Any]:
    """spidernet-ipam's `ipam` section: the service's socket (None: the one the environment
    names) and Spiderpool's keys (default_ipv4_ippool=[...], enableGatewayDetection=True, ...)."""
    ipam: dict[str, Any] = {"type": "spidernet-ipam"}
    if socket is not None:
        ipam["ipam_unix_socket_path"] = str(socket)
    return {**ipam, **keys}


def macvlan(ipam: dict[str, Any], master: str = "eth0", **keys: object) -> dict[str, Any]:
    """The macvlan plugin on `master` in bridge mode with `ipam` (`keys`: "args", ...)."""
    return {"type": "macvlan", "master": master, "mode": "bridge", **keys, "ipam": ipam}


def spidernet_coordinator(socket: str | Path | None = None, **keys: object) -> dict[str, Any]:
    """spidernet-coordinator (`keys`: serviceCIDR=[...], ...)."""
    plugin: dict[str, Any] = {"type": "spidernet-coordinator"}
    if socket is not None:
        plugin["ipam_unix_socket_path"] = str(socket)
    return {**plugin, **keys}


def chain_conf(
    *plugins: dict[str, Any], name: str = NAME, version: str = VERSION
) -> dict[str, Any]:
    """A .conflist document running `plugins` in order."""
    return {"cniVersion": version, "name": name, "plugins": list(plugins)}


def plugin_conf(plugin: dict[str, Any], name: str = NAME, version: str = VERSION) -> dict[str, Any]:
    """A one-plugin network config, as a runtime hands a plugin its stdin."""
    return {"cniVersion": version, "name": name, **plugin}


def smc_conf(
    name: str, cni_type: str, sub: dict[str, Any], **coordinator: object
) -> dict[str, Any]:
    """The network config our SpiderMultusConfig code renders (control/controller/multus.py)
    for an SMC `name` of `cni_type` with sub-config `sub` and an underlay coordinator block
    (`coordinator`: its further keys)."""
    from spidernet.control.controller.multus import render_config

    smc = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderMultusConfig",
        "metadata": {"name": name, "namespace": "t"},
        "spec": {
            "cniType": cni_type,
            cni_type: sub,
            "coordinator": {"mode": "underlay", "serviceCIDR": ["10.96.0.0/12"], **coordinator},
        },
    }
    conf: dict[str, Any] = json.loads(render_config(smc))
    return conf


def service_chain(
    conflist: dict[str, Any],
    socket: Path,
    cni_path: tuple[str, ...],
    state: Path,
    host_netns: str | None,
) -> Chain:
    """`conflist` run as a runtime runs it from `host_netns`, its spidernet plugins on the
    service at `socket` and the coordinator's state in `state`."""
    env = {"SPIDERNET_STATE_DIR": str(state), "SPIDERNET_SOCKET": str(socket)}
    return Chain(
        parse_conflist(json.dumps(conflist).encode()),
        cni_path,
        host_netns=host_netns,
        extra_env=env,
    )
