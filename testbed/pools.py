"""SpiderIPPool documents and counts for the netns and kernel tests and the benchmarks."""

from __future__ import annotations

from typing import Any

from spidernet.control.client import Client

API_VERSION = "spiderpool.spidernet.io/v2beta1"


def ippool(name: str, subnet: str, ips: list[str], **spec: object) -> dict[str, Any]:
    """A SpiderIPPool document (`spec`: gateway=..., routes=..., default=True, ...)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"subnet": subnet, "ips": ips, **spec},
    }


def add_pool(client: Client, name: str, subnet: str, ips: list[str], **spec: object) -> None:
    """Apply a SpiderIPPool through the service."""
    client.request("POST", "/v1/resources", ippool(name, subnet, ips, **spec))


def allocated(client: Client, pool: str) -> int:
    """The pool's allocatedIPCount as the service reports it."""
    obj = client.request("GET", f"/v1/resources/SpiderIPPool/{pool}")
    return int(obj["status"]["allocatedIPCount"])
