"""Which mode the coordinator runs an interface in, and its policy table (reference §4.2).

Pure, like `config`: the facts (does `veth0` exist, the NIC's position in the pod) are
arguments, gathered by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from spidernet.cni.errors import CNIError, Code

from .values import RESERVED_TABLES

if TYPE_CHECKING:
    from .config import CoordinatorConf

# The pod-side veth that underlay mode creates on the pod's first interface (§4.3 step 7).
UNDERLAY_VETH = "veth0"


class Mode(NamedTuple):
    """How the coordinator treats one interface: `mode` "underlay" or "overlay", and whether
    this call is the first for the pod (it sets up the pod-wide parts: veth0, main-table
    routes, the reply-path table 100)."""

    mode: str
    first_invoke: bool


def _mode_error(ifname: str, reason: str) -> CNIError:
    return CNIError(
        Code.INVALID_NETWORK_CONFIG,
        f"failed to resolve coordinator mode for interface '{ifname}': {reason}",
    )


def resolve_mode(
    conf: CoordinatorConf, ifname: str, has_veth0: bool, nic_index: int | None = None
) -> Mode:
    """Spiderpool's mode rules (`utils.go` `coordinatorModeAndFirstInvoke`, reference §4.2).

    auto: the pod's first interface (`podDefaultCniNic`) is underlay; any other interface is
    underlay when `veth0` exists (an earlier underlay call made it), else overlay.
    underlay: first invoke on `podDefaultCniNic`; any other interface needs `veth0`.
    overlay: never on `podDefaultCniNic` (the overlay CNI owns it) nor after underlay
    (`veth0` exists). Its first invoke is the pod's second NIC, `nic_index` 1: Spiderpool
    infers it from "exactly two UP links", which breaks as soon as the pod has any other
    link (#3953/#3954), so the caller passes the NIC's position in the pod's NIC order.

    Raises CNIError(INVALID_NETWORK_CONFIG) for the combinations above that cannot work, and
    ValueError for a caller error: mode "disabled" (the plugin returns before resolving), or
    overlay without `nic_index`.
    """
    mode = conf.mode
    first_nic = ifname == conf.pod_default_cni_nic
    if mode == "disabled":
        raise ValueError("mode 'disabled' has nothing to resolve: skip the coordinator")
    if mode == "auto":
        mode = "underlay" if first_nic or has_veth0 else "overlay"
    if mode == "underlay":
        if not first_nic and not has_veth0:
            raise _mode_error(
                ifname,
                f"underlay mode needs '{UNDERLAY_VETH}', which the coordinator creates on the "
                f"pod's first interface '{conf.pod_default_cni_nic}': enable the coordinator "
                "for that interface too",
            )
        return Mode("underlay", first_nic)
    if first_nic:
        raise _mode_error(
            ifname,
            f"overlay mode is for secondary interfaces; '{ifname}' is the pod's first "
            "interface (podDefaultCniNic), which the overlay CNI owns",
        )
    if has_veth0:
        raise _mode_error(
            ifname,
            f"overlay mode cannot follow underlay: '{UNDERLAY_VETH}' exists, so an earlier "
            "interface was set up in underlay mode; use mode underlay or auto",
        )
    if nic_index is None:
        raise ValueError("overlay mode needs the interface's nic_index to know its first invoke")
    return Mode("overlay", nic_index == 1)


# Table 100 is the pod's reply-path table (underlay) or the copy of eth0's default route
# (overlay); the kernel owns 253-255, so the last usable index is 152.
REPLY_TABLE = 100
MAX_NIC_INDEX = min(RESERVED_TABLES) - REPLY_TABLE - 1


def policy_table(nic_index: int) -> int:
    """The pod-side policy routing table of the interface at `nic_index`: 100 + nic_index.

    `nic_index` is the interface's position in the pod's NIC order as the caller knows it
    (`podDefaultCniNic`, normally eth0, is 0; net1 is 1 and gets table 101; net2 gets 102).
    Spiderpool counts the pod's UP links instead ("upLinks + 98"), which gives wrong or
    clashing numbers when NICs are added out of order or other links exist (#3953/#3954).
    Index 0 has no table of its own: the first NIC's routes stay in main.
    """
    if not 1 <= nic_index <= MAX_NIC_INDEX:
        raise ValueError(f"nic_index {nic_index} is out of range 1..{MAX_NIC_INDEX}")
    return REPLY_TABLE + nic_index
