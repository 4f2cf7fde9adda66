"""Plugins run in this process, with the heavy adapters: the fallback when no node service
answers (DESIGN.md, "Thin plugins, hot node service": slow, for tests and tiny set-ups,
and it says so in its log). The host side is this process's own namespace, which is the
runtime's: a runtime starts plugins in the host namespace.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from spidernet.cni.skel import run
from spidernet.control.client import (
    Client,
    ServiceError,
    ServiceUnreachable,
    socket_path,
    state_dir,
)
from spidernet.node.coordinator.commands import Context, make_plugin
from spidernet.node.detect.announce import announce


def _log(message: str) -> None:
    sys.stderr.write(f"spidernet-coordinator: {message}\n")


def cluster_settings(
    namespace: str, name: str
) -> tuple[Mapping[str, Any], Mapping[str, str]] | None:
    """The SpiderCoordinator settings and the pod's annotations from the control service, or
    None when it does not answer."""
    client = Client(socket_path(), timeout=10)
    try:
        settings = client.request(
            "GET", f"/v1/coordinator/config?podNamespace={namespace}&podName={name}"
        )
    except (ServiceUnreachable, ServiceError):
        return None
    annotations = settings.pop("podAnnotations", {}) if isinstance(settings, dict) else {}
    return settings, annotations


def run_coordinator() -> None:
    """spidernet-coordinator, in this process."""
    _log("no node service forwarding: running in-process")
    ctx = Context(
        host_netns=None,
        state_dir=state_dir(),
        cluster=cluster_settings,
        announce=announce,
        log=_log,
    )
    run(make_plugin(ctx))
