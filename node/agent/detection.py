"""IP-conflict and gateway detection in the IPAM ADD path (the node service's side).

Spiderpool runs these inside its IPAM plugin after the agent answered and before the main
plugin configures the address (reference/spiderpool.md §4.5): macvlan, ipvlan and SR-IOV
create the pod's link before they call IPAM, so the link is there, down. As there, the
link is set up, then each new address of this interface is probed the RFC 5227 / RFC 4862
way (no one's cache changes), then each gateway is asked from its address. Unlike there, a
conflicting address is released and another allocated (IpamCore, up to a bound), and both
families are probed at once.

Switches: the network's `enableIPConflictDetection` / `enableGatewayDetection` /
`detectionProfile` (ipam section) over the service's defaults (`spidernet serve
--ip-conflict-detection --gateway-detection --detection-profile`).
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from spidernet.node.access.base import Namespaces
from spidernet.node.detect.probe import ProbeError, load_frames, profile, resolve
from spidernet.node.errors import NodeError
from spidernet.node.ipam.conf import IpamConf
from spidernet.node.ipam.plugin import Address
from spidernet.node.netlink.errors import NetlinkFailure
from spidernet.node.netns import NetnsGone

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Settings:
    """Which checks run, with which probe timing profile."""

    conflict: bool = False
    gateway: bool = False
    profile: str = "fast"

    @property
    def enabled(self) -> bool:
        return self.conflict or self.gateway

    def over(self, conf: IpamConf) -> Settings:
        """These defaults with the network's own switches applied."""
        return Settings(
            conflict=self.conflict
            if conf.ip_conflict_detection is None
            else conf.ip_conflict_detection,
            gateway=self.gateway if conf.gateway_detection is None else conf.gateway_detection,
            profile=conf.detection_profile or self.profile,
        )


@dataclass(frozen=True)
class Conflict:
    """Addresses other stations answered for, with their MACs."""

    held: tuple[tuple[IPAddress, tuple[str, ...]], ...]

    def describe(self, ifname: str) -> str:
        return "; ".join(f"{ip} on {ifname} is held by {', '.join(macs)}" for ip, macs in self.held)


@dataclass(frozen=True)
class Unreachable:
    gateways: tuple[IPAddress, ...]

    def describe(self, ifname: str) -> str:
        names = ", ".join(str(g) for g in self.gateways)
        return f"gateway {names} does not answer on {ifname}"


class CannotProbe(NodeError):
    """The probes could not be sent (the link is missing, the namespace is gone...)."""


class Detector:
    """Runs the checks in a pod's namespace through `access` (the broker)."""

    def __init__(self, access: Namespaces, defaults: Settings) -> None:
        self.access = access
        self.defaults = defaults
        if defaults.enabled:  # every ADD probes unless its network says not to
            load_frames()

    def settings(self, conf: IpamConf) -> Settings:
        return self.defaults.over(conf)

    def check(
        self, netns: str, ifname: str, addresses: Sequence[Address], settings: Settings
    ) -> Conflict | Unreachable | None:
        """Probe the addresses of `ifname` (conflicts first, then gateways)."""
        mine = [a for a in addresses if a.interface == ifname]
        if not mine or not settings.enabled:
            return None
        try:
            with self.access.netlink(netns) as nl:
                nl.set_link(ifname, state="up")  # nothing is sent on a link that is down
        except (NetlinkFailure, NetnsGone) as e:
            raise CannotProbe(f"failed to set '{ifname}' up to probe it: {e}") from e
        ips = [ipaddress.ip_interface(a.address).ip for a in mine]
        if settings.conflict:
            held = self._all(netns, ifname, [(ip, None) for ip in ips], settings)
            found = tuple((ip, macs) for ip, macs in held if macs)
            if found:
                return Conflict(found)
        if settings.gateway:
            asks = [
                (ipaddress.ip_address(a.gateway), ip)
                for a, ip in zip(mine, ips, strict=True)
                if a.gateway
            ]
            answered = self._all(netns, ifname, asks, settings)
            silent = tuple(gw for gw, macs in answered if not macs)
            if silent:
                return Unreachable(silent)
        return None

    def _all(
        self,
        netns: str,
        ifname: str,
        asks: Sequence[tuple[IPAddress, IPAddress | None]],
        settings: Settings,
    ) -> list[tuple[IPAddress, tuple[str, ...]]]:
        """Each (target, source) probe at once; (target, the MACs that answered)."""

        def one(ask: tuple[IPAddress, IPAddress | None]) -> tuple[IPAddress, tuple[str, ...]]:
            target, src = ask
            timing = profile(settings.profile, target.version)
            try:
                # One answer settles either question: stop listening at the first.
                answers = resolve(
                    self.access, netns, ifname, target, src=src, timing=timing, until_first=True
                )
            except (ProbeError, NetnsGone) as e:
                raise CannotProbe(str(e)) from e
            return target, tuple(dict.fromkeys(a.mac for a in answers))

        if not asks:
            return []
        with ThreadPoolExecutor(max_workers=len(asks)) as pool:
            # Each probe runs in a copy of this thread's context: it holds the call's view
            # of namespace paths (node/netns.py), which a pool thread would not have.
            futures = [pool.submit(contextvars.copy_context().run, one, ask) for ask in asks]
            return [f.result() for f in futures]
