"""spidernet-ipam's verbs, over a `Backend` that owns the addresses.

The backend is the control service's allocator: the service runs these verbs itself when a
thin plugin process forwards a call to it (DESIGN.md, "Thin plugins, hot node service"). This
module only turns CNI calls into backend calls and backend answers into CNI results, and the
backend's failures into CNI errors (errors.py): load config -> gather pod facts -> ask the
backend -> print the result (STYLE.md §1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from spidernet.cni.config import Attachment
from spidernet.cni.errors import CNIError, Code
from spidernet.cni.result import IPConfig, Result, Route
from spidernet.cni.skel import CallArgs, Plugin
from spidernet.control.allocator.errors import AllocationError
from spidernet.control.allocator.request import Master

from .conf import IpamConf, PodMeta, parse_ipam, pod_meta
from .errors import BackendError, cni_error
from .master import MasterReader, resolve

NAME = "spidernet-ipam"


@dataclass(frozen=True)
class IpamCall:
    """One ADD, DEL or CHECK as the backend sees it."""

    container_id: str
    ifname: str
    netns: str
    network: str
    conf: IpamConf
    pod: PodMeta
    # With `match_master_subnet`, the NIC's master and its addresses (master.py; ADD only).
    master: Master | None = None


@dataclass(frozen=True)
class Address:
    """One address the backend holds for one interface, with its gateway and routes."""

    interface: str
    address: str
    gateway: str | None
    routes: tuple[tuple[str, str], ...] = ()


class Backend(Protocol):
    """Where addresses come from. Each method raises the allocator's AllocationError or a
    BackendError (errors.py); the plugin answers with their CNI errors."""

    def allocate(self, call: IpamCall) -> Sequence[Address]:
        """The addresses of the call's pod (every NIC; the same ones on a repeated ADD)."""
        ...

    def release(self, call: IpamCall) -> None:
        """Free the addresses of this container and interface; nothing held is success."""
        ...

    def lookup(self, call: IpamCall) -> Sequence[Address]:
        """The addresses recorded for this container and interface (empty if none)."""
        ...

    def gc(self, network: str, keep: Sequence[Attachment]) -> None:
        """Free every address of `network` on this node not held by an attachment in `keep`."""
        ...

    def status(self) -> None:
        """Raise NoEnabledPool when no ADD could succeed now."""
        ...


def call_of(
    args: CallArgs, masters: MasterReader | None = None, *, adding: bool = False
) -> IpamCall:
    """The backend call for a CNI call (config checked, pod facts gathered; for an ADD with
    `match_master_subnet`, the master's addresses read through `masters`)."""
    conf = parse_ipam(args.conf.ipam)
    master = resolve(args.conf.raw, masters) if adding and conf.match_master_subnet else None
    return IpamCall(
        container_id=args.env.container_id,
        ifname=args.env.ifname,
        netns=args.env.netns,
        network=args.conf.name,
        conf=conf,
        pod=pod_meta(args),
        master=master,
    )


def result_for(ifname: str, addresses: Sequence[Address], version: str) -> Result:
    """The CNI IPAM result for `ifname`: its addresses with gateways, and its routes."""
    mine = [a for a in addresses if a.interface == ifname]
    if not mine:
        raise CNIError(Code.INTERNAL, f"no address for interface {ifname!r} in the allocation")
    ips = tuple(
        IPConfig(
            address=ipaddress.ip_interface(a.address),
            gateway=ipaddress.ip_address(a.gateway) if a.gateway else None,
        )
        for a in mine
    )
    routes = tuple(
        Route(dst=ipaddress.ip_network(dst), gw=ipaddress.ip_address(gw))
        for a in mine
        for dst, gw in a.routes
    )
    return Result(cni_version=version, ips=ips, routes=routes)


@contextmanager
def answering() -> Iterator[None]:
    """The backend's failures inside as the CNI errors the runtime gets (errors.py)."""
    try:
        yield
    except (AllocationError, BackendError) as e:
        raise cni_error(e) from e


def make_plugin(backend: Backend, masters: MasterReader | None = None) -> Plugin:
    """spidernet-ipam over `backend`; `masters` reads a master link's addresses on the node
    (for `match_master_subnet`)."""

    def add(args: CallArgs) -> Result:
        call = call_of(args, masters, adding=True)
        with answering():
            addresses = backend.allocate(call)
        return result_for(call.ifname, addresses, args.conf.cni_version)

    def delete(args: CallArgs) -> None:
        call = call_of(args)
        with answering():
            backend.release(call)

    def check(args: CallArgs) -> None:
        call = call_of(args)
        with answering():
            recorded = backend.lookup(call)
        held = [a for a in recorded if a.interface == call.ifname]
        if not held:
            raise CNIError(
                Code.UNKNOWN_CONTAINER,
                f"no addresses recorded for container {call.container_id} {call.ifname}",
            )
        prev = args.conf.prev_result
        if prev is None:
            return
        given = {str(ip.address) for ip in prev.ips}
        missing = [a.address for a in held if a.address not in given]
        if missing:
            raise CNIError(
                Code.INVALID_NETWORK_CONFIG,
                f"prevResult lacks the recorded address {missing[0]} of {call.ifname}",
            )

    def gc(args: CallArgs) -> None:
        parse_ipam(args.conf.ipam)
        with answering():
            backend.gc(args.conf.name, args.conf.valid_attachments or ())

    def status(args: CallArgs) -> None:
        parse_ipam(args.conf.ipam)
        with answering():
            backend.status()

    return Plugin(
        name=NAME,
        add=add,
        delete=delete,
        check=check,
        status=status,
        gc=gc,
        about=f"{NAME}: IP addresses from SpiderIPPools, served by `spidernet serve`",
    )
