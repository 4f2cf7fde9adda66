"""`spidernet diag`: its parser (cli.py calls `register`); the command is command.py's,
imported only when it runs."""

from __future__ import annotations

import argparse

from spidernet.control.options import add_socket


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `diag` to the subcommands."""
    diag = sub.add_parser(
        "diag",
        help="explain a pod's data path and name what is wrong",
        description="Read the pod's and the host's interfaces, rules, routes, neighbours and "
        "sysctls; ask the kernel's route lookup for each request and its reply (gateways, "
        "host, cluster CIDRs, neighbours, --to); probe gateways and addresses with ARP/NDP; "
        "compare with the IPAM records and the coordinator's saved ADD plan. Exit 0: no "
        "findings, 1: findings, 2: usage error.",
    )
    diag.add_argument(
        "target",
        metavar="TARGET",
        help="a network namespace (name or path), a container ID, or NAMESPACE/POD",
    )
    diag.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="ADDR[:PORT]",
        help="also analyse the path to ADDR (repeatable; [V6ADDR]:PORT for IPv6 with a port)",
    )
    diag.add_argument(
        "--host-netns",
        metavar="NETNS",
        help="the host side's namespace (default: this process's own, the node's)",
    )
    diag.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="findings as text, or JSON (docs/diag.schema.json)",
    )
    diag.add_argument("--no-probe", action="store_true", help="send no ARP/NDP probes")
    diag.add_argument(
        "--state-dir",
        help="where the service keeps the coordinator's saved ADD plans, compared with the "
        "kernel (default: $SPIDERNET_STATE_DIR, else the service's own, else "
        "/var/lib/spidernet)",
    )
    add_socket(diag)
    diag.set_defaults(func=_diag)


def _diag(args: argparse.Namespace) -> int:
    from spidernet.node.diag import command

    return command.main(
        args.target,
        host_netns=args.host_netns,
        to=args.to,
        output=args.output,
        probe=not args.no_probe,
        socket=args.socket,
        state=args.state_dir,
    )
