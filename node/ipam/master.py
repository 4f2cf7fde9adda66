"""The master of the call's NIC, for `match_master_subnet` (Spiderpool's matchMasterSubnet):
the host link the main plugin hangs the NIC off, and the addresses it holds on the node.

The main plugin's config is what spidernet-ipam receives on stdin: macvlan, ipvlan, vlan and
ipoib name the link in `master` (after the ifacer, its bond or VLAN link); SR-IOV names the VF
by PCI address in `deviceID` (what Multus injects from the device plugin; host-device's
`pciBusID` or `runtimeConfig.deviceID` likewise), whose PF's netdev is the
master (`/sys/bus/pci/devices/<VF>/physfn/net/<PF>`). The addresses are read in the caller's
namespace, the node's (a runtime runs plugins there), by a `MasterReader` the composition root
gives the plugin (node/plugins.py).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spidernet.cni.errors import CNIError, Code
from spidernet.control.allocator.request import Master

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
# The addresses of the node's link called NAME; raises LookupError when there is none.
MasterReader = Callable[[str], tuple[IPInterface, ...]]
SYSFS = Path("/sys")


def master_link(raw: Mapping[str, Any], sysfs: Path = SYSFS) -> str:
    """The host link of the main plugin's config `raw` ("" when it names none)."""
    master = raw.get("master")
    if isinstance(master, str) and master:
        return master
    runtime = raw.get("runtimeConfig")
    device = raw.get("deviceID") or raw.get("pciBusID")
    if not device and isinstance(runtime, Mapping):
        device = runtime.get("deviceID")
    if isinstance(device, str) and device and "/" not in device:
        try:
            names = sorted(
                os.listdir(sysfs / "bus" / "pci" / "devices" / device / "physfn" / "net")
            )
        except OSError:
            return ""
        return names[0] if names else ""
    return ""


def resolve(raw: Mapping[str, Any], read: MasterReader | None, sysfs: Path = SYSFS) -> Master:
    """The call's master and its addresses; a CNI config error (7) when the network names
    none, or names one the node does not have."""
    name = master_link(raw, sysfs)
    if not name:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            "ipam.match_master_subnet: the network names no master (the main plugin's "
            "`master`, or an SR-IOV VF's `deviceID` with a PF)",
        )
    if read is None:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            "ipam.match_master_subnet: this host cannot read the master's addresses",
        )
    try:
        return Master(name, read(name))
    except LookupError as e:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"ipam.match_master_subnet: master {name!r} does not exist on this node",
        ) from e
