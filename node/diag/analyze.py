"""From the kernel's answers to findings (pure). Each finding is one line that says what is
wrong, and a command an operator can run to see it for themselves.

| kind | when |
|---|---|
| asymmetric-reply | a request arriving on a NIC is answered through another link |
| rp-filter-drop | the kernel's input lookup refuses a packet, rp_filter on (EXDEV / EINVAL) |
| no-host-route | the host has no route to a pod address, or not through the pod's veth |
| gateway-silent | a NIC's gateway does not answer ARP / Neighbor Solicitation |
| address-conflict | another MAC answers for one of the pod's addresses |
| ipam-mismatch | the IPAM record and the interface's addresses differ |
| veth-mtu-mismatch | the two ends of the pod's veth pair have different MTUs |
| default-route-nic | the main table's default route leaves by another NIC than it should |
| misrouted | a request to the host or a cluster CIDR has no route or leaves by another link |
| plan-drift | something the coordinator's saved ADD plan made is gone (CHECK's comparison) |
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spidernet.node.coordinator.check import Drift
from spidernet.node.netlink.records import AF_INET6, RT_TABLE_MAIN
from spidernet.node.plan.ops import (
    AddAddress,
    AddNeighbour,
    AddRule,
    AddVeth,
    RouteSpec,
    SetMac,
    SetSysctl,
    SetTxQueueLen,
)

from .model import (
    VETH0,
    Answer,
    Finding,
    LookupSpec,
    Path,
    ProbeResult,
    Record,
    Side,
    sysctl_key,
)
from .plan import host_link

KINDS = (
    "asymmetric-reply",
    "rp-filter-drop",
    "no-host-route",
    "gateway-silent",
    "address-conflict",
    "ipam-mismatch",
    "veth-mtu-mismatch",
    "default-route-nic",
    "misrouted",
    "plan-drift",
)


def ip_command(side: Side, args: str) -> str:
    """`ip ARGS` as run in the side's namespace, for an operator to paste."""
    if side.netns is None:
        return f"ip {args}"
    if side.netns.startswith("/run/netns/") and side.netns.count("/") == 3:
        return f"ip -n {side.netns.rsplit('/', 1)[1]} {args}"
    return f"nsenter --net={shlex.quote(side.netns)} ip {args}"


def exec_command(side: Side, argv: str) -> str:
    """A command run inside the side's namespace, for an operator to paste."""
    if side.netns is None:
        return argv
    if side.netns.startswith("/run/netns/") and side.netns.count("/") == 3:
        return f"ip netns exec {side.netns.rsplit('/', 1)[1]} {argv}"
    return f"nsenter --net={shlex.quote(side.netns)} {argv}"


def route_get_args(spec: LookupSpec) -> str:
    args = f"route get {spec.dst}"
    if spec.src is not None:
        args += f" from {spec.src}"
    if spec.iif:
        args += f" iif {spec.iif}"
    if spec.port:
        args += f" ipproto tcp dport {spec.port}"
    return args


@dataclass(frozen=True)
class Answers:
    """The kernel's answers, by question."""

    lookups: Mapping[LookupSpec, Answer]
    replies: Mapping[Path, LookupSpec]  # the reply lookups made for outbound paths
    host: Mapping[LookupSpec, Answer]
    probes: Sequence[ProbeResult]


def _rp_filter(pod: Side, dev: str) -> str:
    values = [
        pod.sysctls.get(sysctl_key("net", "ipv4", "conf", n, "rp_filter"), "?")
        for n in ("all", dev)
    ]
    return f"rp_filter all={values[0]} {dev}={values[1]}"


def _filtered(pod: Side, answer: Answer | None, dev: str) -> bool:
    """True when an input lookup on `dev` failed the way the reverse-path filter fails it:
    EXDEV for a packet to be forwarded, EINVAL ("martian source") for one to be delivered
    (ip_route_input_slow), with rp_filter on for `dev` (the larger of `all` and the link's
    own value counts, ip-sysctl.rst)."""
    if answer is None or answer.error not in ("EXDEV", "EINVAL"):
        return False
    values = [
        pod.sysctls.get(sysctl_key("net", "ipv4", "conf", name, "rp_filter"), "0")
        for name in ("all", dev)
    ]
    return max(int(v) if v.isdigit() else 0 for v in values) > 0


def _misrouted(pod: Side, path: Path, request: Answer | None) -> Finding | None:
    """A request that must leave by the host link (to the host, a cluster CIDR) and has no
    route, or leaves by another link."""
    target = path.target
    if path.direction != "outbound" or not target.via_host_link or request is None:
        return None
    if request.error:
        said = f"has no route: {request.message or request.error}"
    elif request.dev != target.nic:
        said = f"leaves by {request.dev or 'no link'}, not {target.nic}"
    else:
        return None
    return Finding(
        "misrouted",
        f"the pod's request to {target.address} ({target.name}) {said}",
        ip_command(pod, route_get_args(path.request)),
    )


def _path_findings(pod: Side, paths: Sequence[Path], answers: Answers) -> list[Finding]:
    out: list[Finding] = []
    for path in paths:
        request = answers.lookups.get(path.request)
        reply_spec = path.reply if path.direction == "inbound" else answers.replies.get(path)
        reply = answers.lookups.get(reply_spec) if reply_spec is not None else None
        name = path.target.name
        wrong = _misrouted(pod, path, request)
        if wrong is not None:
            out.append(wrong)
            continue
        if path.direction == "inbound" and _filtered(pod, request, path.nic):
            out.append(
                Finding(
                    "rp-filter-drop",
                    f"a request from {path.target.address} ({name}) arriving on {path.nic} "
                    f"for {path.local} is dropped by the reverse-path filter "
                    f"({_rp_filter(pod, path.nic)})",
                    ip_command(pod, route_get_args(path.request)),
                )
            )
            continue
        if reply is None or reply_spec is None:
            continue
        if path.direction == "inbound" and reply.dev and reply.dev != path.nic:
            out.append(
                Finding(
                    "asymmetric-reply",
                    f"a request from {path.target.address} ({name}) arriving on "
                    f"{path.nic} for {path.local} is answered through {reply.dev}",
                    ip_command(pod, route_get_args(reply_spec)),
                )
            )
        if path.direction == "outbound" and _filtered(pod, reply, reply_spec.iif):
            out.append(
                Finding(
                    "rp-filter-drop",
                    f"the reply from {path.target.address} ({name}) to {reply_spec.dst}, "
                    f"arriving on {reply_spec.iif}, is dropped by the reverse-path filter "
                    f"({_rp_filter(pod, reply_spec.iif)})",
                    ip_command(pod, route_get_args(reply_spec)),
                )
            )
    return out


def _host_peer(pod: Side, host: Side | None, link: str | None) -> str:
    """The host end of the pod's host link (by the peer index the link names), or ""."""
    veth = pod.link(link) if link else None
    if veth is None or host is None or veth.link is None:
        return ""
    return next(
        (peer.name for peer in host.state.links if peer.index == veth.link and peer.kind == "veth"),
        "",
    )


def _host_findings(
    pod: Side, host: Side | None, record: Record | None, answers: Answers
) -> list[Finding]:
    if host is None:
        return []
    out: list[Finding] = []
    link = host_link(pod, record)
    peer = _host_peer(pod, host, link)
    # An overlay CNI's host end may be a bridge port: the host routes through the bridge.
    bridged = {
        m.name
        for p in host.state.links
        if p.name == peer and p.master
        for m in host.state.links
        if m.index == p.master
    }
    for spec, answer in answers.host.items():
        confirm = ip_command(host, route_get_args(spec))
        if answer.error:
            out.append(
                Finding(
                    "no-host-route",
                    f"the host has no route to the pod's {spec.dst}: {answer.message}",
                    confirm,
                )
            )
        elif link is not None and answer.dev not in {peer, *bridged}:
            want = f"its veth {peer}" if peer else "the pod's veth (its host end is missing)"
            out.append(
                Finding(
                    "no-host-route",
                    f"the host routes the pod's {spec.dst} through {answer.dev}, not {want}",
                    confirm,
                )
            )
    if pod.link(VETH0) is not None and peer:
        inner, outer = pod.link(VETH0), host.link(peer)
        if inner is not None and outer is not None and inner.mtu != outer.mtu:
            out.append(
                Finding(
                    "veth-mtu-mismatch",
                    f"the pod's {VETH0} has MTU {inner.mtu}, its host end {peer} {outer.mtu}",
                    ip_command(pod, f"link show {VETH0}")
                    + "; "
                    + ip_command(host, f"link show {peer}"),
                )
            )
    return out


def _probe_findings(pod: Side, probes: Sequence[ProbeResult]) -> list[Finding]:
    out: list[Finding] = []
    for result in probes:
        spec = result.spec
        if result.error:
            continue  # reported as unchecked by the caller
        v4 = spec.address.version == 4
        if spec.kind == "gateway" and not result.macs:
            tool = (
                f"arping -c 3 -I {spec.nic} {spec.address}"
                if v4
                else (f"ndisc6 {spec.address} {spec.nic}")
            )
            out.append(
                Finding(
                    "gateway-silent",
                    f"gateway {spec.address} of {spec.nic} does not answer "
                    f"{'ARP' if v4 else 'Neighbor Solicitation'}",
                    exec_command(pod, tool),
                )
            )
        if spec.kind == "conflict" and result.macs:
            tool = (
                f"arping -D -c 3 -I {spec.nic} {spec.address}"
                if v4
                else (f"ndisc6 -1 {spec.address} {spec.nic}")
            )
            out.append(
                Finding(
                    "address-conflict",
                    f"{spec.address} of {spec.nic} is also held by {', '.join(result.macs)}",
                    exec_command(pod, tool),
                )
            )
    return out


def _ipam_findings(pod: Side, record: Record | None) -> list[Finding]:
    if record is None:
        return []
    out: list[Finding] = []
    where = f"{record.namespace}/{record.name}"
    # Only the NICs the record holds: a pod's other NICs belong to other CNIs (Multus gives
    # eth0 to the cluster network), whose addresses IPAM never records.
    for nic in sorted(record.nics):
        recorded = sorted({str(a.ip) for a in record.nics[nic]})
        actual = sorted({str(a.ip) for a in pod.addresses_of(nic)})
        if recorded == actual:
            continue
        out.append(
            Finding(
                "ipam-mismatch",
                f"IPAM records {', '.join(recorded) or 'nothing'} for {nic} of {where}; "
                f"the interface has {', '.join(actual) or 'nothing'}",
                f"spidernet get spiderendpoint {record.name} -n {record.namespace} -o yaml; "
                + ip_command(pod, f"address show dev {nic}"),
            )
        )
    return out


def _default_route_findings(pod: Side, expected: str) -> list[Finding]:
    out: list[Finding] = []
    if not expected:
        return out
    for route in pod.state.routes:
        if route.table != RT_TABLE_MAIN or route.dst.prefixlen != 0:
            continue
        dev = pod.name_of(route.oif)
        if dev and dev != expected:
            family = f"IPv{route.dst.version}"
            out.append(
                Finding(
                    "default-route-nic",
                    f"the {family} default route leaves by {dev}, not {expected}",
                    ip_command(pod, f"-{route.dst.version} route show default"),
                )
            )
    return out


def _drift_confirm(pod: Side, host: Side | None, drift: Drift) -> str:
    """The command that shows where the drifted operation's result should be."""
    op = drift.op
    side = host if host is not None and getattr(op, "side", "pod") == "host" else pod
    if isinstance(op, RouteSpec):
        return ip_command(side, f"-{op.dst.version} route show table {op.table}")
    if isinstance(op, AddRule):
        return ip_command(side, f"-{6 if op.family == AF_INET6 else 4} rule show")
    if isinstance(op, AddAddress):
        return ip_command(side, f"address show dev {op.name}")
    if isinstance(op, AddNeighbour):
        return ip_command(side, f"neigh show dev {op.dev}")
    if isinstance(op, AddVeth):
        return ip_command(host or pod, f"link show {op.host_name}")
    if isinstance(op, SetMac | SetTxQueueLen):
        return ip_command(side, f"link show {op.name}")
    if isinstance(op, SetSysctl):
        return exec_command(side, f"sysctl {op.key}")
    return exec_command(pod, "nft list ruleset")


def plan_findings(
    pod: Side, host: Side | None, drifts: Sequence[tuple[str, Drift]]
) -> list[Finding]:
    """One `plan-drift` finding per difference between a saved plan (by interface) and the
    kernel."""
    return [
        Finding(
            "plan-drift",
            f"the coordinator's ADD for {ifname}: {drift.message}",
            _drift_confirm(pod, host, drift),
        )
        for ifname, drift in drifts
    ]


def findings(  # noqa: PLR0917 - the analysis's inputs, each its own thing
    pod: Side,
    host: Side | None,
    record: Record | None,
    paths: Sequence[Path],
    answers: Answers,
    expected_default_nic: str,
    drifts: Sequence[tuple[str, Drift]] = (),
) -> list[Finding]:
    """Every finding, in the order of KINDS, without repeats."""
    found = [
        *plan_findings(pod, host, drifts),
        *_path_findings(pod, paths, answers),
        *_host_findings(pod, host, record, answers),
        *_probe_findings(pod, answers.probes),
        *_ipam_findings(pod, record),
        *_default_route_findings(pod, expected_default_nic),
    ]
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda f: KINDS.index(f.kind))
