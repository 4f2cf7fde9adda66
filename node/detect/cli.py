"""`spidernet detect probe|watch`: its parser (cli.py calls `register`); the commands are
command.py's, imported only when one runs."""

from __future__ import annotations

import argparse

from spidernet.control.options import add_socket


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `detect` (probe, watch) to the subcommands."""
    detect = sub.add_parser(
        "detect",
        help="ARP/NDP probes: address conflicts and gateway reachability",
        description="probe: is an address free on a pod's link, and does its gateway answer? "
        "Exit 0 free, 1 conflict or gateway silent, 2 usage error.",
    )
    detect_sub = detect.add_subparsers(dest="detect_command", metavar="ACTION", required=True)
    probe = detect_sub.add_parser("probe", help="probe an address (and a gateway) once")
    probe.add_argument("--netns", required=True, help="the pod's namespace (name or path)")
    probe.add_argument("--iface", required=True, help="the pod's link to probe on")
    probe.add_argument("--ip", required=True, help="the address to check")
    probe.add_argument("--gateway", help="also ask whether this gateway answers")
    probe.add_argument(
        "--profile",
        choices=["fast", "rfc"],
        default="fast",
        help="fast: 3 tries 20 ms apart, 100 ms after the last; rfc: RFC 5227 / RFC 4862 timings",
    )
    probe.set_defaults(func=_detect_probe)
    watch = detect_sub.add_parser(
        "watch",
        help="report claims on watched addresses from other MACs as they happen",
        description="Watch a link for ARP replies, gratuitous ARPs and Neighbor "
        "Advertisements that claim a watched address from another MAC (eBPF tc program; "
        "a packet socket where eBPF cannot run). Exit 0 none seen, 1 seen, 2 usage.",
    )
    watch.add_argument("--iface", required=True, help="the link to watch (the underlay master)")
    watch.add_argument("--netns", help="the link's namespace (default: this one)")
    watch.add_argument(
        "--watch",
        action="append",
        default=[],
        metavar="IP=MAC",
        help="an address and its owner's MAC (repeatable)",
    )
    watch.add_argument(
        "--no-records", action="store_true", help="do not watch the SpiderEndpoint records"
    )
    watch.add_argument(
        "--backend",
        choices=["auto", "ebpf", "scapy"],
        default="auto",
        help="eBPF tc program, packet socket (scapy), or eBPF where it can run (auto)",
    )
    watch.add_argument("--duration", type=float, help="stop after this many seconds")
    add_socket(watch)
    watch.set_defaults(func=_detect_watch)


def _detect_probe(args: argparse.Namespace) -> int:
    from spidernet.node.detect import command

    return command.probe_main(
        args.netns, args.iface, args.ip, gateway=args.gateway, profile_name=args.profile
    )


def _detect_watch(args: argparse.Namespace) -> int:
    from spidernet.node.detect import command

    return command.watch_main(
        args.iface,
        netns_ref=args.netns,
        watch=args.watch,
        records=not args.no_records,
        backend=args.backend,
        duration_s=args.duration,
        socket=args.socket,
    )
