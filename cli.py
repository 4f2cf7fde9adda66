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
from spidernet.control.options import add_socket, metrics_address

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


def _serve(args: argparse.Namespace) -> int:
    import os

    import trio

    from spidernet.cni.forward import TIMEOUT_S as FORWARD_TIMEOUT_S
    from spidernet.control import logs
    from spidernet.control.client import socket_path, state_dir
    from spidernet.node.agent.conflicts import parse_link
    from spidernet.node.agent.detection import Settings
    from spidernet.node.agent.serve import ServeConfig, ServiceError, serve

    try:
        links = [parse_link(text) for text in args.watch_link]
    except ValueError as bad:
        print(f"spidernet: --watch-link: {bad}", file=sys.stderr)
        return EXIT_USAGE
    try:
        metrics = metrics_address(args.metrics_address)
    except ValueError as bad:
        print(f"spidernet: {bad}", file=sys.stderr)
        return EXIT_USAGE
    if args.kubeconfig and not args.kube:
        print("spidernet: --kubeconfig needs --kube", file=sys.stderr)
        return EXIT_USAGE
    if args.auto_pool_retries < 0 or args.auto_pool_interval <= 0:
        print(
            "spidernet: --auto-pool-retries must be >= 0 and --auto-pool-interval positive",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.auto_pool_retries * args.auto_pool_interval >= FORWARD_TIMEOUT_S:
        # The CNI forwarders wait this long for the service's answer (cni/forward.py).
        print(
            "spidernet: --auto-pool-retries x --auto-pool-interval must stay below the CNI "
            f"plugins' {FORWARD_TIMEOUT_S:.0f} s wait for the service",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.gc_interval < 0 or args.gc_grace < 0:
        print("spidernet: --gc-interval and --gc-grace must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    if args.max_pending < 1:
        print("spidernet: --max-pending must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    node = args.node
    if args.kube and not node:
        # In a DaemonSet the downward API gives the node's name (spec.nodeName) as NODE_NAME.
        node = os.environ.get("NODE_NAME") or None
    config = ServeConfig(
        socket=Path(socket_path(args.socket)),
        state_dir=state_dir(args.state_dir),
        metrics=metrics,
        node=node,
        kube=args.kube,
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        auto_pool_retries=args.auto_pool_retries,
        auto_pool_interval_s=args.auto_pool_interval,
        detection=Settings(
            args.ip_conflict_detection, args.gateway_detection, args.detection_profile
        ),
        watch_links=tuple(links),
        max_pending=args.max_pending,
        gc_interval_s=args.gc_interval,
        gc_grace_s=args.gc_grace,
    )
    _raise_open_files()
    # A line per CNI call (info), the accept loops' and the GC's warnings (logs.py).
    logs.configure(args.log_level, args.log_format)

    async def main() -> None:
        import signal

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            ready = await nursery.start(serve, config, stop)
            where = f", metrics on port {ready.metrics_port}" if ready.metrics_port else ""
            print(f"spidernet: serving on {ready.socket}{where}", file=sys.stderr, flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    stop.set()
                    break

    failures: list[BaseException] = []
    try:
        trio.run(main)
    except* ServiceError as group:
        failures.extend(group.exceptions)
    for e in failures:
        print(f"spidernet: {e}", file=sys.stderr)
    return EXIT_FAILURE if failures else EXIT_OK


def _raise_open_files() -> None:
    """The soft open-file limit up to the hard one, as Go programs do at start-up: every
    queued CNI call holds a connection, and 1024 (a common soft default) is a node's burst."""
    import contextlib
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        # When refused, the soft limit stays; the accept loop copes with running out.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


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
    serve = sub.add_parser(
        "serve",
        help="run the control service (IPAM) on its unix socket",
        description="Serve IPAM and resources on a unix socket; state in a SQLite file, or "
        "with --kube in the Kubernetes API server.",
    )
    add_socket(serve)
    serve.add_argument(
        "--state-dir", help="state directory (default: $SPIDERNET_STATE_DIR or /var/lib/spidernet)"
    )
    serve.add_argument(
        "--metrics-address",
        default="127.0.0.1:5711",
        help="Prometheus metrics HOST:PORT on loopback, or 'off' (default: 127.0.0.1:5711)",
    )
    serve.add_argument(
        "--node",
        help="this node's name (default: the host name; with --kube, $NODE_NAME first)",
    )
    serve.add_argument(
        "--kube",
        action="store_true",
        help="Kubernetes mode: pools, endpoints and IP claims in the API server "
        "(deploy/chart/crds), pod facts from its Pods, Namespaces and Nodes",
    )
    serve.add_argument(
        "--kubeconfig",
        help="with --kube: the kubeconfig (default: $KUBECONFIG, else in-cluster)",
    )
    serve.add_argument(
        "--auto-pool-retries",
        type=int,
        default=25,
        help="with --kube: how many more times an ADD looks for its SpiderSubnet auto pool "
        "while the controller makes or grows it (default: 25, as Spiderpool)",
    )
    serve.add_argument(
        "--auto-pool-interval",
        type=float,
        default=2.0,
        help="with --kube: seconds between those looks (default: 2)",
    )
    serve.add_argument(
        "--ip-conflict-detection",
        action="store_true",
        help="at ADD, probe each new address (ARP/NDP) and replace one another station holds "
        "(a network's ipam enableIPConflictDetection overrides)",
    )
    serve.add_argument(
        "--gateway-detection",
        action="store_true",
        help="at ADD, fail when the pool's gateway does not answer ARP/NDP "
        "(a network's ipam enableGatewayDetection overrides)",
    )
    serve.add_argument(
        "--watch-link",
        action="append",
        default=[],
        metavar="IF[@NETNS]",
        help="watch this link (the underlay master) for claims on pods' addresses from other "
        "MACs: eBPF where it can run, else a packet socket; repeatable",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="info: a line per CNI call; warning: only failures and overload (default: info)",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines, or one JSON object a line (default: text)",
    )
    serve.add_argument(
        "--max-pending",
        type=int,
        default=1024,
        help="requests queued or in work before more are answered with CNI error 11, "
        "try again later (default: 1024)",
    )
    serve.add_argument(
        "--gc-interval",
        type=float,
        default=60.0,
        help="embedded store: seconds between passes of the GC that releases addresses whose "
        "sandbox's network namespace is gone (0: only `spidernet gc --now`; default: 60)",
    )
    serve.add_argument(
        "--gc-grace",
        type=float,
        default=120.0,
        help="embedded store: how long a namespace must stay gone before its addresses are "
        "released (default: 120)",
    )
    serve.add_argument(
        "--detection-profile",
        choices=["fast", "rfc"],
        default="fast",
        help="probe timing: fast (3 x 100 ms, Spiderpool's) or rfc (RFC 5227 / RFC 4862)",
    )
    serve.set_defaults(func=_serve)

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
