"""`spidernet detect probe` and `spidernet detect watch`.

probe: is an address free on a pod's link, and does its gateway answer?

    spidernet detect probe --netns NS --iface IF --ip IP [--gateway GW] [--profile fast|rfc]

The address is probed the RFC 5227 / RFC 4862 way (ARP from 0.0.0.0, NS from ::), so no
neighbour's cache changes; the gateway is asked from the address. Exit status: 0 free (and
the gateway answered), 1 a conflict or a silent gateway (who answered is printed), 2 usage
errors and probes that could not be sent (missing namespace or link, link down).

watch: keep watching a link (the underlay master, or a pod's) for ARP replies, gratuitous
ARPs and Neighbor Advertisements that claim a watched address from another MAC: eBPF (a tc
ingress program, bcc) where it can run, a packet socket otherwise (it says which and why).
The watched set is `--watch IP=MAC` plus every address of the control service's
SpiderEndpoint records, each owned by the MAC of its pod's interface. It first prints the
conflicts the node service's own watch (`serve --watch-link`) recorded on those records.
"""

from __future__ import annotations

import ipaddress
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from spidernet.control.client import Client, ServiceError, ServiceUnreachable, socket_path
from spidernet.control.model.endpoint_doc import conflicts_of, entries_of, interfaces_of, netns_of
from spidernet.node import netns
from spidernet.node.access.base import Namespaces
from spidernet.node.access.broker import Broker
from spidernet.node.access.spawn import Spawning
from spidernet.node.netlink.errors import NetlinkFailure

from .announce import IPAddress
from .probe import ProbeError, profile, resolve
from .watch import WatchError, normal_mac, open_watcher

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


def probe_main(
    netns_ref: str,
    iface: str,
    ip: str,
    *,
    gateway: str | None = None,
    profile_name: str = "fast",
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run the probes and print one line each; returns the exit status."""
    try:
        address = ipaddress.ip_address(ip)
        gw = ipaddress.ip_address(gateway) if gateway else None
        if gw is not None and gw.version != address.version:
            raise ValueError(f"gateway {gw} and address {address} are of different families")
        timing = profile(profile_name, address.version)
    except ValueError as e:
        err.write(f"spidernet detect probe: {e}\n")
        return EXIT_USAGE
    path = netns.path_of(netns_ref)
    access = Spawning()  # one process, two sockets: no broker to start
    try:
        holders = resolve(access, path, iface, address, timing=timing)
        status = EXIT_OK
        if holders:
            macs = ", ".join(a.mac for a in holders)
            out.write(f"{address} on {iface}: conflict, held by {macs}\n")
            status = EXIT_FOUND
        else:
            out.write(f"{address} on {iface}: free\n")
        if gw is not None:
            answers = resolve(access, path, iface, gw, src=address, timing=timing, until_first=True)
            if answers:
                out.write(f"gateway {gw}: reachable, answered by {answers[0].mac}\n")
            else:
                out.write(f"gateway {gw}: unreachable, no answer from {iface}\n")
                status = EXIT_FOUND
    except (ProbeError, netns.NetnsGone, netns.NotANetns) as e:
        err.write(f"spidernet detect probe: {e}\n")
        return EXIT_USAGE
    return status


# -- spidernet detect watch ------------------------------------------------------------------


def _owners_from_records(
    access: Namespaces, records: Sequence[Mapping[str, Any]], err: TextIO
) -> dict[IPAddress, str]:
    """Address -> owner MAC for every address of every SpiderEndpoint, the MAC read from
    the pod's own interface in the namespace its record names (`spidernet.io/netns`)."""
    owners: dict[IPAddress, str] = {}
    for doc in records:
        meta = doc.get("metadata", {})
        path = netns_of(doc)
        name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        if not path:
            err.write(f"spidernet detect watch: {name}: its record names no netns; skipped\n")
            continue
        try:
            with access.netlink(path) as nl:
                macs = {link.name: link.mac for link in nl.links()}
        except (netns.NetnsGone, NetlinkFailure) as e:
            err.write(f"spidernet detect watch: {name}: {e}; skipped\n")
            continue
        for entry in entries_of(doc):
            mac = macs.get(str(entry.get("interface", "")))
            if mac:
                owners.update({address.ip: mac for address in interfaces_of(entry)})
    return owners


def recorded_conflicts(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The conflicts the node service's watch recorded on SpiderEndpoints (annotation
    `spidernet.io/conflicts`), one line each, oldest first per pod."""
    lines = []
    for doc in records:
        meta = doc.get("metadata", {})
        pod = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        for e in conflicts_of(doc):
            lines.append(
                f"{e.get('seenAt', '?')} {e.get('address', '?')} claimed by {e.get('mac', '?')} "
                f"on {e.get('link', '?')} (recorded for {pod})"
            )
    return lines


def watch_main(
    iface: str,
    *,
    netns_ref: str | None = None,
    watch: Sequence[str] = (),
    records: bool = True,
    backend: str = "auto",
    duration_s: float | None = None,
    socket: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Watch `iface` for claims on watched addresses from other MACs until `duration_s`
    (None: until interrupted); print one line per conflict. Exit 0 none seen, 1 conflicts
    seen, 2 usage errors."""
    owners: dict[IPAddress, str] = {}
    try:
        for item in watch:
            text, sep, mac = item.partition("=")
            if not sep:
                raise ValueError(f"--watch '{item}' is not IP=MAC")
            owners[ipaddress.ip_address(text)] = normal_mac(mac)
    except ValueError as e:
        err.write(f"spidernet detect watch: {e}\n")
        return EXIT_USAGE
    path = netns.path_of(netns_ref) if netns_ref else None
    broker = Broker()
    try:
        if records:
            client = Client(socket_path(socket), timeout=5)
            try:
                found = client.request("GET", "/v1/resources/SpiderEndpoint")
            except (ServiceUnreachable, ServiceError) as e:
                err.write(f"spidernet detect watch: no SpiderEndpoint records: {e}\n")
                found = {}
            items = found.get("items", []) if isinstance(found, dict) else []
            owners = {**_owners_from_records(broker, items, err), **owners}
            for line in recorded_conflicts(items):
                out.write(f"{line}\n")
        if not owners:
            err.write("spidernet detect watch: nothing to watch (no --watch, no records)\n")
            return EXIT_USAGE
        try:
            watcher = open_watcher(
                broker, path, iface, prefer=backend, log=lambda m: err.write(f"{m}\n")
            )
        except (WatchError, netns.NetnsGone, ValueError) as e:
            err.write(f"spidernet detect watch: {e}\n")
            return EXIT_USAGE
        seen = 0
        try:
            for address, mac in owners.items():
                watcher.watch(address, mac)
            where = f" in {path}" if path else ""
            err.write(f"watching {len(owners)} addresses on {iface}{where} ({watcher.backend})\n")
            end = None if duration_s is None else time.monotonic() + duration_s
            while end is None or (left := end - time.monotonic()) > 0:
                step = 0.5 if end is None else min(0.5, left)
                for c in watcher.poll(step):
                    seen += 1
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(c.seen_at))
                    out.write(
                        f"{stamp} {c.address} claimed by {c.rogue_mac} on {c.link} "
                        f"(owner {c.owner_mac})\n"
                    )
                    out.flush()
        except KeyboardInterrupt:
            pass
        finally:
            watcher.close()
    finally:
        broker.close()
    return EXIT_FOUND if seen else EXIT_OK
