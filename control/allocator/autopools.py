"""SpiderSubnet auto pools: what the `ipam.spidernet.io/subnet(s)` annotations ask for, and
how an auto pool is recognised (reference/spiderpool.md §1.2, §2.9).

Pure and shared: the agent (candidates.py) finds the pool of the pod's application here, and
the controller (control/controller/autopool.py) reads the same annotations, off the same
application's pod template, to make and size that pool. An auto pool is found by its labels
(owner application uid, interface, IP version, owner subnet), never by its name, so a pool made
by Spiderpool's own controller is found as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from spidernet.control.model.resources import IPPool

from .errors import AllocationError, Reason
from .request import ANNO_SUBNET, ANNO_SUBNETS, AppRef

# Pod-template annotations that size and keep an auto pool.
ANNO_IPPOOL_IP_NUMBER = "ipam.spidernet.io/ippool-ip-number"
ANNO_IPPOOL_RECLAIM = "ipam.spidernet.io/ippool-reclaim"

# Labels on auto pools (Spiderpool's `constant.Label*`).
LABEL_OWNER_SUBNET = "ipam.spidernet.io/owner-spider-subnet"
LABEL_APP_GV = "ipam.spidernet.io/owner-application-gv"
LABEL_APP_KIND = "ipam.spidernet.io/owner-application-kind"
LABEL_APP_NAMESPACE = "ipam.spidernet.io/owner-application-namespace"
LABEL_APP_NAME = "ipam.spidernet.io/owner-application-name"
LABEL_APP_UID = "ipam.spidernet.io/owner-application-uid"
LABEL_INTERFACE = "ipam.spidernet.io/interface"
LABEL_IP_VERSION = "ipam.spidernet.io/ip-version"
LABEL_RECLAIM = "ipam.spidernet.io/ippool-reclaim"
LABEL_POOL_CIDR = "ipam.spidernet.io/ippool-cidr"

# The podAffinity keys of an auto pool: the application's identity, which the agent gives
# every pod of that application (PodFacts.affinity_labels), not labels the pod carries.
AFFINITY_GROUP = "ipam.spidernet.io/app-api-group"
AFFINITY_VERSION = "ipam.spidernet.io/app-api-version"
AFFINITY_KIND = "ipam.spidernet.io/app-kind"
AFFINITY_NAMESPACE = "ipam.spidernet.io/app-namespace"
AFFINITY_NAME = "ipam.spidernet.io/app-name"

# The NIC the single-NIC `ipam.spidernet.io/subnet` annotation names (Spiderpool's
# `ClusterDefaultInterfaceName`); its pool serves whatever NIC the call is for.
DEFAULT_INTERFACE = "eth0"

# The application kinds whose pods may use auto pools (the top controller of the pod).
APP_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet")


@dataclass(frozen=True)
class SubnetWant:
    """One NIC's auto pools: the SpiderSubnet of each family ('' for none)."""

    interface: str
    v4: str
    v6: str

    def subnet(self, version: int) -> str:
        """The subnet of family `version`, or ''."""
        return self.v4 if version == 4 else self.v6


def _invalid(what: str, why: str) -> AllocationError:
    return AllocationError(Reason.INVALID, f"invalid {what}: {why}")


def _first(value: object, what: str) -> str:
    """Spiderpool's `[subnet]` lists: the first element is used."""
    if value is None:
        return ""
    if isinstance(value, str) and value:
        return value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _invalid(what, "expected a list of SpiderSubnet names")
    return str(value[0])


def _want(item: Mapping[str, object], interface: str, what: str) -> SubnetWant:
    unknown = set(item) - {"interface", "ipv4", "ipv6"}
    if unknown:
        raise _invalid(what, f"unknown field {sorted(unknown)[0]!r}")
    v4 = _first(item.get("ipv4"), f"{what}.ipv4")
    want = SubnetWant(interface, v4, _first(item.get("ipv6"), f"{what}.ipv6"))
    if not want.v4 and not want.v6:
        raise _invalid(what, "names no subnet (ipv4 or ipv6)")
    return want


def _json(text: str, what: str) -> object:
    try:
        return json.loads(text)
    except ValueError as e:
        raise _invalid(what, f"not JSON ({e})") from e


def subnet_wants(annotations: Mapping[str, str]) -> tuple[str, tuple[SubnetWant, ...]] | None:
    """The annotation used (`subnets` beats `subnet`) and the NICs it asks auto pools for;
    None when the pod asks for none. Raises INVALID naming the annotation."""
    if ANNO_SUBNETS in annotations:
        what = f"annotation {ANNO_SUBNETS}"
        items = _json(annotations[ANNO_SUBNETS], what)
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise _invalid(what, "expected a non-empty list of objects")
        wants = []
        for index, item in enumerate(items):
            nic = item.get("interface")
            if not isinstance(nic, str) or not nic:
                raise _invalid(f"{what}[{index}].interface", "expected an interface name")
            wants.append(_want(item, nic, f"{what}[{index}]"))
        nics = [w.interface for w in wants]
        if len(set(nics)) != len(nics):
            raise _invalid(what, "an interface is listed twice")
        return ANNO_SUBNETS, tuple(wants)
    if ANNO_SUBNET in annotations:
        what = f"annotation {ANNO_SUBNET}"
        obj = _json(annotations[ANNO_SUBNET], what)
        if not isinstance(obj, dict):
            raise _invalid(what, "expected an object")
        return ANNO_SUBNET, (_want(obj, DEFAULT_INTERFACE, what),)
    return None


def group_version(api_version: str) -> tuple[str, str]:
    """("apps", "v1") of "apps/v1"; ("", "v1") of the core "v1"."""
    group, _, version = api_version.rpartition("/")
    return group, version


def affinity_labels(app: AppRef) -> dict[str, str]:
    """The labels an auto pool's podAffinity selects: the application's identity."""
    group, version = group_version(app.api_version)
    return {
        AFFINITY_GROUP: group,
        AFFINITY_VERSION: version,
        AFFINITY_KIND: app.kind,
        AFFINITY_NAMESPACE: app.namespace,
        AFFINITY_NAME: app.name,
    }


def ip_version_label(version: int) -> str:
    """The `ipam.spidernet.io/ip-version` value: IPv4 or IPv6."""
    return f"IPv{version}"


def is_auto_pool(labels: Mapping[str, str]) -> bool:
    """Whether a pool was made for an application (it names the owner's uid)."""
    return bool(labels.get(LABEL_APP_UID))


def auto_pool_for(
    pools: Iterable[IPPool], app: AppRef, interface: str, version: int, subnet: str
) -> IPPool | None:
    """The auto pool of `app` for this NIC and family from `subnet`, if it exists."""
    for pool in pools:
        labels = pool.labels
        if (
            labels.get(LABEL_APP_UID) == app.uid
            and labels.get(LABEL_INTERFACE) == interface
            and labels.get(LABEL_IP_VERSION) == ip_version_label(version)
            and labels.get(LABEL_OWNER_SUBNET) == subnet
        ):
            return pool
    return None
