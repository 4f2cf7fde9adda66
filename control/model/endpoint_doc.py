"""Reading SpiderEndpoint documents (pure): the annotations spidernet keeps on them and
their allocation entries. The service writes them (node/agent/endpoints.py); diag and
`spidernet detect watch` read them through the service's API.

Annotations beyond Spiderpool's shape: the sandbox's container ID and network namespace,
the CNI network of each interface (for GC), the interfaces an ADD has configured, and the
conflicts the node service's watch recorded.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

ANNO_CONTAINER = "spidernet.io/container-id"
ANNO_NETWORKS = "spidernet.io/networks"
ANNO_ATTACHED = "spidernet.io/attached"
ANNO_NETNS = "spidernet.io/netns"
# The identity (DEV:INODE, node/netns.py `identity_text`) of that namespace as the ADD's
# caller saw it: what the embedded GC looks for among the namespaces the host still holds.
ANNO_NETNS_ID = "spidernet.io/netns-id"
ANNO_CONFLICTS = "spidernet.io/conflicts"
# The pod that holds the addresses, when the endpoint is named after something else: a
# KubeVirt VM or an IPAMClaim (docs/kubevirt.md).
ANNO_POD = "spidernet.io/pod"
# During a KubeVirt live migration, the source launcher pod's sandbox ({containerID, uid,
# pod, node, netns, netnsId, attached}) while the target holds the endpoint.
ANNO_MIGRATION = "spidernet.io/migration-source"
# (ANNO_CONFLICTS is written by the conflict watch, node/agent/conflicts.py, and kept
# when the service rebuilds the document.)


def annotations_of(doc: Mapping[str, Any]) -> Mapping[str, str]:
    """The document's metadata.annotations (empty when absent)."""
    anno = doc.get("metadata", {}).get("annotations", {})
    return anno if isinstance(anno, dict) else {}


def container_of(doc: Mapping[str, Any]) -> str:
    """The container ID of the sandbox that holds the endpoint's addresses."""
    return str(annotations_of(doc).get(ANNO_CONTAINER, ""))


def netns_of(doc: Mapping[str, Any]) -> str:
    """The sandbox's network namespace path as its last ADD named it ("" when unknown)."""
    return str(annotations_of(doc).get(ANNO_NETNS, ""))


def netns_id_of(doc: Mapping[str, Any]) -> str:
    """The sandbox's network namespace identity ("" when not recorded)."""
    return str(annotations_of(doc).get(ANNO_NETNS_ID, ""))


def pod_of(doc: Mapping[str, Any]) -> str:
    """The name of the pod that holds the endpoint's addresses."""
    anno = annotations_of(doc)
    return str(anno.get(ANNO_POD) or doc.get("metadata", {}).get("name", ""))


def migration_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The source sandbox of a live migration in progress (empty when none)."""
    raw = annotations_of(doc).get(ANNO_MIGRATION)
    if not raw:
        return {}
    value = json.loads(str(raw))
    return value if isinstance(value, dict) else {}


def networks_of(doc: Mapping[str, Any]) -> dict[str, str]:
    """Interface -> CNI network name."""
    raw = annotations_of(doc).get(ANNO_NETWORKS, "{}")
    value = json.loads(raw)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def attached_of(doc: Mapping[str, Any]) -> list[str]:
    """Interfaces whose ADD has happened."""
    raw = str(annotations_of(doc).get(ANNO_ATTACHED, ""))
    return [nic for nic in raw.split(",") if nic]


def entries_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The AllocationDetail entries of `status.current.ips`."""
    ips = doc.get("status", {}).get("current", {}).get("ips", [])
    return [dict(e) for e in ips] if isinstance(ips, list) else []


def interfaces_of(
    entry: Mapping[str, Any],
) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The addresses of one entry (its ipv4 and ipv6, with their prefix lengths)."""
    return [ipaddress.ip_interface(str(entry[fam])) for fam in ("ipv4", "ipv6") if entry.get(fam)]


def conflicts_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conflicts recorded on the document (address, mac, link, seenAt), oldest first."""
    try:
        value = json.loads(annotations_of(doc).get(ANNO_CONFLICTS, "[]"))
    except ValueError:
        return []
    return [dict(e) for e in value if isinstance(e, dict)] if isinstance(value, list) else []
