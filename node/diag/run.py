"""`spidernet diag`: find the pod, read both sides, ask the kernel, probe, and analyse.

Target selection: a network namespace (a path, or a name under /run/netns), a container ID
(or its first 12+ characters), or `namespace/pod`; the last two through the control
service's SpiderEndpoint records, which carry the sandbox's namespace. With the service
down a namespace still works, and the report says what could not be checked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path as FilePath

from spidernet.cni.errors import CNIError
from spidernet.node import netns
from spidernet.node.access.base import Namespaces
from spidernet.node.coordinator.check import Drift, drift, saved_plans
from spidernet.node.detect import probe as arp
from spidernet.node.errors import NodeError
from spidernet.node.netlink.client import Netlink
from spidernet.node.netlink.errors import NetlinkFailure
from spidernet.node.nft import NftError
from spidernet.node.plan.apply import Target
from spidernet.node.plan.ops import AddRoute, Op

from . import plan
from .analyze import Answers, findings
from .gather import Service, host_view, lookup, read_side, run_probe
from .model import (
    Answer,
    Finding,
    IPAddress,
    IPNetwork,
    LookupSpec,
    Path,
    ProbeResult,
    Record,
    Side,
)


class TargetError(NodeError):
    """The target names no namespace, container or pod that can be found."""


@dataclass(frozen=True)
class Options:
    target: str
    # The host side. None: the namespace that holds the far end of the pod's veth0 (the
    # coordinator's host veth), found by its namespace id; else this process's own.
    host_netns: str | None = None
    to: tuple[tuple[IPAddress, int], ...] = ()
    probe: bool = True
    timing: arp.Timing = field(default_factory=arp.Timing)
    # Where the coordinator saved its ADD plans (the service's state directory); None: the
    # plans are not compared.
    state_dir: FilePath | None = None


@dataclass(frozen=True)
class PathResult:
    path: Path
    request: Answer
    reply_spec: LookupSpec | None
    reply: Answer | None


@dataclass(frozen=True)
class Report:
    netns: str
    record: Record | None
    pod: Side
    host: Side | None
    paths: tuple[PathResult, ...]
    host_lookups: tuple[tuple[LookupSpec, Answer], ...]
    probes: tuple[ProbeResult, ...]
    expected_default_nic: str
    findings: tuple[Finding, ...]
    unchecked: tuple[str, ...]


def resolve_target(text: str, service: Service) -> tuple[str, Record | None]:
    """The namespace path of `text`, and the pod's record when the target named one."""
    if not text:
        raise TargetError("no target given")
    if text.startswith(("/", ".")):
        try:
            netns.check(text)
        except (netns.NetnsGone, netns.NotANetns) as e:
            raise TargetError(str(e)) from e
        return os.path.abspath(text), None
    if "/" not in text and (netns.RUN_DIR / text).exists():
        return netns.path_of(text), None
    if text.count("/") == 1:
        namespace, name = text.split("/")
        record = service.by_pod(namespace, name)
        if record is None:
            why = service.problem or "the control service has no SpiderEndpoint for it"
            raise TargetError(f"pod '{text}' not found: {why}")
        return _netns_of(record), record
    found = service.by_container(text)
    if len(found) == 1:
        return _netns_of(found[0]), found[0]
    if len(found) > 1:
        raise TargetError(f"container ID '{text}' is ambiguous: {len(found)} sandboxes match")
    why = f" ({service.problem})" if service.problem else ""
    raise TargetError(f"no network namespace, container or pod called '{text}'{why}")


def _netns_of(record: Record) -> str:
    if not record.netns:
        raise TargetError(
            f"the record of {record.namespace}/{record.name} names no network namespace "
            "(an ADD made before records kept it); give the namespace instead"
        )
    try:
        netns.check(record.netns)
    except netns.NetnsGone as e:
        # The path is a name in the mount namespace of the runtime that made the pod, which
        # need not be this process's (docs/diag.md).
        raise TargetError(
            f"{record.namespace}/{record.name}: {e} in this process's mount namespace (the "
            "pod is gone, or its runtime sees other mounts: give the pod's namespace as "
            "/proc/PID/ns/net of one of its processes)"
        ) from e
    return record.netns


OWN_NETNS = "/proc/self/ns/net"
PROBES_AT_ONCE = 8


def find_host(pod_nl: Netlink, pod: Side, link: str | None) -> str | None:
    """The namespace that holds the peer of the pod's host link (veth0, or an overlay
    CNI's eth0; IFLA_LINK_NETNSID names it by an id the pod's namespace gave it;
    RTM_GETNSID asks which id each candidate has): this process's own namespace, or one
    under /run/netns. None when the pod has no host link or its peer is in neither; the
    caller then uses this process's namespace."""
    veth = pod.link(link) if link else None
    if veth is None or veth.link_netnsid is None:
        return None
    candidates = [OWN_NETNS, *sorted(netns.path_of(name) for name in netns.names())]
    for path in candidates:
        try:
            nsid = pod_nl.nsid_of(path)
        except (netns.NetnsGone, netns.NotANetns, NetlinkFailure):
            continue
        if nsid == veth.link_netnsid:
            return path
    return None


def _same_namespace(a: str | None, b: str | None) -> bool:
    def ident(path: str | None) -> tuple[int, int]:
        st = os.stat(path or "/proc/self/ns/net")
        return st.st_dev, st.st_ino

    return ident(a) == ident(b)


def _host_path(
    options: Options, pod_nl: Netlink, pod: Side, link: str | None, unchecked: list[str]
) -> str | None:
    if options.host_netns is not None:
        return options.host_netns
    found = find_host(pod_nl, pod, link)
    if found is None and link is not None:
        unchecked.append(
            f"where {link}'s peer lives: not in this namespace nor under /run/netns; "
            "the host side is this process's namespace (--host-netns chooses)"
        )
    return None if found in (None, OWN_NETNS) else found


def _saved(
    options: Options, record: Record | None, unchecked: list[str]
) -> dict[str, tuple[Op, ...]]:
    """The coordinator's saved ADD plans of the pod's container, by interface."""
    if options.state_dir is None:
        return {}
    if record is None or not record.container_id:
        unchecked.append("the coordinator's saved plan: no IPAM record names the container")
        return {}
    try:
        found = saved_plans(options.state_dir, record.container_id)
    except CNIError as e:
        unchecked.append(f"the coordinator's saved plan: {e.msg}")
        return {}
    if not found:
        unchecked.append(
            f"the coordinator's saved plan: none for container {record.container_id[:12]} "
            f"under {options.state_dir} (no coordinator in its chain, or another --state-dir)"
        )
    return found


def _drifts(
    saved: dict[str, tuple[Op, ...]], target: Target, access: Namespaces, unchecked: list[str]
) -> list[tuple[str, Drift]]:
    """What of each saved plan the kernel no longer holds (CNI CHECK's comparison)."""
    out: list[tuple[str, Drift]] = []
    for ifname, ops in saved.items():
        try:
            out += [(ifname, d) for d in drift(ops, target, access)]
        except (NftError, NetlinkFailure, OSError) as e:
            unchecked.append(f"the coordinator's saved plan for {ifname}: {e}")
    return out


def _planned(saved: dict[str, tuple[Op, ...]], link: str | None) -> list[IPNetwork]:
    """What the saved plans route to the pod's host link."""
    return [
        op.dst
        for ops in saved.values()
        for op in ops
        if isinstance(op, AddRoute) and op.side == "pod" and link and op.dev == link
    ]


def _paths(
    pod_nl: Netlink,
    pod: Side,
    record: Record | None,
    options: Options,
    planned: Sequence[IPNetwork] = (),
) -> list[PathResult]:
    results: list[PathResult] = []
    for p in plan.paths(pod, record, plan.targets(pod, record, options.to, planned)):
        request = lookup(pod_nl, p.request)
        reply_spec = p.reply if p.direction == "inbound" else plan.outbound_reply(p, request)
        reply = lookup(pod_nl, reply_spec) if reply_spec is not None else None
        results.append(PathResult(p, request, reply_spec, reply))
    return results


def _probes(
    access: Namespaces, path: str, pod: Side, record: Record | None, options: Options
) -> tuple[list[ProbeResult], list[str]]:
    if not options.probe:
        return [], ["ARP/NDP probes of gateways and addresses (--no-probe)"]
    specs = plan.probes(pod, record)
    # At once: a probe nobody answers waits out all its tries (0.6 s by default), and the
    # healthy answer to "does anyone else hold this address?" is silence. Each probe has
    # its own socket and keeps only answers about its own address.
    with ThreadPoolExecutor(max_workers=max(1, min(PROBES_AT_ONCE, len(specs)))) as pool:
        results = list(pool.map(lambda spec: run_probe(access, path, spec, options.timing), specs))
    errors = [f"probe of {r.spec.address} on {r.spec.nic}: {r.error}" for r in results if r.error]
    return results, errors


def diagnose(options: Options, access: Namespaces, service: Service) -> Report:
    """Everything `spidernet diag` reports about one pod (see the module's doc). Probes
    run from several threads at once: `access` must be safe for that (the broker is)."""
    path, record = resolve_target(options.target, service)
    unchecked: list[str] = []
    if options.host_netns is not None:
        try:
            netns.check(options.host_netns)
        except (netns.NetnsGone, netns.NotANetns) as e:
            raise TargetError(f"--host-netns: {e}") from e
    host: Side | None = None
    host_answers: list[tuple[LookupSpec, Answer]] = []
    with ExitStack() as stack:
        pod_nl = stack.enter_context(access.netlink(path))
        pod = read_side(access, path, "pod", pod_nl)
        if record is None:
            record = service.by_addresses(pod)
        link = plan.host_link(pod, record)
        host_path = _host_path(options, pod_nl, pod, link, unchecked)
        if service.problem:
            unchecked.append(f"IPAM records and SpiderCoordinator settings: {service.problem}")
        elif record is None:
            unchecked.append("IPAM records: no SpiderEndpoint holds the pod's addresses")
        if _same_namespace(path, host_path):
            unchecked.append("the host side: the pod's namespace is the host's")
        else:
            host_nl = stack.enter_context(access.netlink(host_path))
            whole = read_side(access, host_path, "host", host_nl)
            host = host_view(whole, pod, link, [ip for _, ip in plan.all_pod_ips(pod, record)])
            host_answers = [(s, lookup(host_nl, s)) for s in plan.host_lookups(pod, record)]
        if link is None:
            unchecked.append(
                "the host and cluster paths: the pod has no veth0, nor an overlay eth0 beside "
                "NICs of its IPAM record (no coordinator)"
            )
        saved = _saved(options, record, unchecked)
        results = _paths(pod_nl, pod, record, options, _planned(saved, link))
    drifts = _drifts(saved, Target(path, host_path), access, unchecked)
    probes, probe_errors = _probes(access, path, pod, record, options)
    unchecked += probe_errors
    expected = plan.default_nic(pod, service.default_route_nic(record))
    lookups = {r.path.request: r.request for r in results}
    lookups |= {r.reply_spec: r.reply for r in results if r.reply_spec and r.reply}
    answers = Answers(
        lookups=lookups,
        replies={r.path: r.reply_spec for r in results if r.reply_spec is not None},
        host=dict(host_answers),
        probes=probes,
    )
    found = findings(pod, host, record, [r.path for r in results], answers, expected, drifts)
    return Report(
        netns=path,
        record=record,
        pod=pod,
        host=host,
        paths=tuple(results),
        host_lookups=tuple(host_answers),
        probes=tuple(probes),
        expected_default_nic=expected,
        findings=tuple(found),
        unchecked=tuple(unchecked),
    )


__all__: Sequence[str] = ["Options", "Report", "TargetError", "diagnose", "resolve_target"]
