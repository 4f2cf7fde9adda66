"""The `spidernet` command line. Subcommands import their machinery only when run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spidernet import __version__
from spidernet.control import cluster_cli, resource_cli
from spidernet.control.controller import cli as controller_cli
from spidernet.control.options import add_socket
from spidernet.node.agent import cli as agent_cli

if TYPE_CHECKING:
    pass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def _install_cni(args: argparse.Namespace) -> int:
    from spidernet.cni.launcher import LauncherError
    from spidernet.node.install import install_cni

    try:
        installed = install_cni(Path(args.bin_dir), args.python, forwarder=args.forwarder)
    except (LauncherError, OSError) as e:
        print(
            f"spidernet: failed to install CNI plugins into '{args.bin_dir}': {e}", file=sys.stderr
        )
        return EXIT_FAILURE
    for item in installed:
        print(f"installed {item.path} ({item.kind})")
        if item.note:
            print(f"spidernet: {item.path.name}: {item.note}", file=sys.stderr)
    return EXIT_OK


def _completion(args: argparse.Namespace) -> int:
    from spidernet import completion
    from spidernet.control.model.printing import CLI_NAMES

    # KIND of get and delete: the plural and short names, then the node records' kinds.
    kinds = [n for names in CLI_NAMES.values() for n in names if not n.startswith("spider")]
    kinds += ["pods", "namespaces", "nodes", "statefulsets"]
    words = {"get": kinds, "delete": kinds}
    make = completion.bash if args.shell == "bash" else completion.zsh
    print(make(build_parser(), words), end="")
    return EXIT_OK


def _lab_table(rows: list[Any]) -> None:
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    heads = ("POD", "NETNS", "IPV4", "IPV6", "GATEWAY", "REACHES GW/HOST/SVC", "IPV4 ROUTES")
    for head in heads:
        table.add_column(head, no_wrap=head != "IPV4 ROUTES")
    for r in rows:
        reach = "/".join(
            "yes" if ok else "NO" for ok in (r.reaches_gateway, r.reaches_host, r.reaches_service)
        )
        table.add_row(r.pod, r.netns, r.ipv4, r.ipv6, r.gateway, reach, "\n".join(r.routes))
    Console(width=250, highlight=False, soft_wrap=True).print(table)


def _lab(args: argparse.Namespace) -> int:
    from spidernet.node.lab import lab

    lab_dir = Path(args.lab_dir) if args.lab_dir else lab.DEFAULT_DIR
    if args.action == "up":
        if args.pods < 1:
            print("spidernet: --pods must be at least 1", file=sys.stderr)
            return EXIT_USAGE
        try:
            state = lab.up(
                args.pods, lab_dir, progress=lambda m: print(f"lab: {m}", file=sys.stderr)
            )
        except lab.LabError as e:
            print(f"spidernet: {e}", file=sys.stderr)
            return EXIT_FAILURE
    else:
        loaded = lab.load(lab_dir)
        if args.action == "down":
            errors = lab.down(lab_dir)
            for error in errors:
                print(f"spidernet: {error}", file=sys.stderr)
            print("lab: down" if loaded else "lab: no lab was up", file=sys.stderr)
            return EXIT_FAILURE if errors else EXIT_OK
        if loaded is None:
            print(f"spidernet: no lab is up (state dir {lab_dir})", file=sys.stderr)
            return EXIT_FAILURE
        state = loaded
    rows = lab.rows(state)
    _lab_table(rows)
    return EXIT_OK if all(r.healthy for r in rows) else EXIT_FAILURE


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


def _detect_probe(args: argparse.Namespace) -> int:
    from spidernet.node.detect import command

    return command.probe_main(
        args.netns, args.iface, args.ip, gateway=args.gateway, profile_name=args.profile
    )


def _ifacer_list(args: argparse.Namespace) -> int:
    from spidernet.node.ifacer import command

    return command.list_main(args.state_dir or "", output=args.output)


def _ifacer_prune(args: argparse.Namespace) -> int:
    from spidernet.node.ifacer import command

    return command.prune_main(args.state_dir or "", dry_run=args.dry_run)


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


def _resource_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent_cli.register(sub)
    resource_cli.register(sub)

    controller_cli.register(sub)

    lab = sub.add_parser(
        "lab",
        help="pods in network namespaces wired through macvlan + spidernet-ipam",
        description="up: start a service, a segment, a gateway and N pods; status: show them; "
        "down: remove all of it.",
    )
    lab.add_argument(
        "action", choices=["up", "status", "down"], help="start, show or remove the lab"
    )
    lab.add_argument("--pods", type=int, default=3, help="pods to create (up; default 3)")
    lab.add_argument("--lab-dir", help="where the lab keeps its state (default /run/spidernet-lab)")
    lab.set_defaults(func=_lab)


def _node_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`spidernet diag` and `spidernet detect`."""
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
        help="fast: 3 tries, 100 ms each (Spiderpool's); rfc: RFC 5227 / RFC 4862 timings",
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

    ifacer = sub.add_parser(
        "ifacer",
        help="the VLANs and bonds spidernet-ifacer made: list them, prune the unused",
        description="spidernet-ifacer's DEL leaves the VLANs and bonds it made (other pods "
        "may stand on them). list shows them with their users; prune removes those no pod "
        "uses, VLANs before their bond.",
    )
    ifacer_sub = ifacer.add_subparsers(dest="ifacer_command", metavar="ACTION", required=True)
    listing = ifacer_sub.add_parser("list", help="ifacer-made links and who uses them")
    listing.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="table or JSON"
    )
    pruning = ifacer_sub.add_parser("prune", help="remove ifacer-made links no pod uses")
    pruning.add_argument("--dry-run", action="store_true", help="only say what would go")
    for p in (listing, pruning):
        p.add_argument(
            "--state-dir",
            help="the ifacer's records (default: $SPIDERNET_IFACER_DIR or /run/spidernet/ifacer)",
        )
    listing.set_defaults(func=_ifacer_list)
    pruning.set_defaults(func=_ifacer_prune)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="spidernet",
        description="Kubernetes underlay pod networking: CNI plugins, probes and IPAM.",
    )
    parser.add_argument("--version", action="version", version=f"spidernet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    install = sub.add_parser(
        "install-cni",
        help="install the spidernet-ipam, -coordinator and -ifacer executables",
        description="Write the CNI plugin executables into a CNI bin directory.",
    )
    install.add_argument("--bin-dir", required=True, help="CNI bin directory, e.g. /opt/cni/bin")
    install.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter the plugins run under (default: this one)",
    )
    install.add_argument(
        "--forwarder",
        choices=["auto", "c", "python"],
        default="auto",
        help="spidernet-ipam as a compiled C forwarder (c), the Python one (python), or C when "
        "a compiler is present (auto, the default)",
    )
    install.set_defaults(func=_install_cni)
    _resource_commands(sub)
    cluster_cli.register(sub)
    _node_commands(sub)
    complete = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description='bash: eval "$(spidernet completion bash)" (or save it in '
        '/etc/bash_completion.d/spidernet); zsh: eval "$(spidernet completion zsh)" after '
        "compinit. Subcommands, options and their choices complete.",
    )
    complete.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")
    complete.set_defaults(func=_completion)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
