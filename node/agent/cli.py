"""`spidernet serve`: its parser (cli.py calls `register`), its options' checks, and the
node service's run (node/agent/serve.py) until SIGTERM or SIGINT. Imports the service only
when the command runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from spidernet.control.options import add_socket, metrics_address

if TYPE_CHECKING:
    from spidernet.node.agent.serve import ServeConfig

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve` to the subcommands."""
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
    _add_kube_options(serve)
    _add_detection_options(serve)
    _add_running_options(serve)
    serve.set_defaults(func=_serve)


def _add_kube_options(serve: argparse.ArgumentParser) -> None:
    """--kube and what goes with it."""
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
        "--no-kubevirt-static-ip",
        dest="kubevirt_static_ip",
        action="store_false",
        help="a KubeVirt VM's launcher pods get addresses of their own, freed with each pod, "
        "instead of the VM's, kept until the VM is deleted (docs/kubevirt.md)",
    )


def _add_detection_options(serve: argparse.ArgumentParser) -> None:
    """ARP/NDP probes at ADD and the conflict watch."""
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


def _add_running_options(serve: argparse.ArgumentParser) -> None:
    """The log, the queue, the embedded store's GC and the probes' timing."""
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
        help="probe timing: fast (3 tries in 140 ms) or rfc (RFC 5227 / RFC 4862)",
    )


def _serve(args: argparse.Namespace) -> int:
    from spidernet.control import logs

    try:
        config = _config(args)
    except ValueError as bad:
        print(f"spidernet: {bad}", file=sys.stderr)
        return EXIT_USAGE
    _raise_open_files()
    # A line per CNI call (info), the accept loops' and the GC's warnings (logs.py).
    logs.configure(args.log_level, args.log_format)
    return _run(config)


def _config(args: argparse.Namespace) -> ServeConfig:
    """The service's configuration from `serve`'s options; ValueError (a usage error, its
    message the line to print) when they do not fit."""
    import os

    from spidernet.control.client import socket_path, state_dir
    from spidernet.node.agent.conflicts import parse_link
    from spidernet.node.agent.detection import Settings
    from spidernet.node.agent.serve import ServeConfig

    try:
        links = [parse_link(text) for text in args.watch_link]
    except ValueError as bad:
        raise ValueError(f"--watch-link: {bad}") from bad
    metrics = metrics_address(args.metrics_address)
    _check_bounds(args)
    node = args.node
    if args.kube and not node:
        # In a DaemonSet the downward API gives the node's name (spec.nodeName) as NODE_NAME.
        node = os.environ.get("NODE_NAME") or None
    return ServeConfig(
        socket=Path(socket_path(args.socket)),
        state_dir=state_dir(args.state_dir),
        metrics=metrics,
        node=node,
        kube=args.kube,
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        auto_pool_retries=args.auto_pool_retries,
        auto_pool_interval_s=args.auto_pool_interval,
        kubevirt_static_ip=args.kubevirt_static_ip,
        detection=Settings(
            args.ip_conflict_detection, args.gateway_detection, args.detection_profile
        ),
        watch_links=tuple(links),
        max_pending=args.max_pending,
        gc_interval_s=args.gc_interval,
        gc_grace_s=args.gc_grace,
    )


def _check_bounds(args: argparse.Namespace) -> None:
    """ValueError when an option is out of its range or needs another."""
    from spidernet.cni.forward import TIMEOUT_S as FORWARD_TIMEOUT_S

    if args.kubeconfig and not args.kube:
        raise ValueError("--kubeconfig needs --kube")
    if args.auto_pool_retries < 0 or args.auto_pool_interval <= 0:
        raise ValueError("--auto-pool-retries must be >= 0 and --auto-pool-interval positive")
    if args.auto_pool_retries * args.auto_pool_interval >= FORWARD_TIMEOUT_S:
        # The CNI forwarders wait this long for the service's answer (cni/forward.py).
        raise ValueError(
            "--auto-pool-retries x --auto-pool-interval must stay below the CNI "
            f"plugins' {FORWARD_TIMEOUT_S:.0f} s wait for the service"
        )
    if args.gc_interval < 0 or args.gc_grace < 0:
        raise ValueError("--gc-interval and --gc-grace must be 0 or more")
    if args.max_pending < 1:
        raise ValueError("--max-pending must be at least 1")


def _run(config: ServeConfig) -> int:
    """Serve until SIGTERM or SIGINT; the exit status (1 when the service failed)."""
    import signal

    import trio

    from spidernet.node.agent.serve import AgentStartError, serve

    async def main() -> None:
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
    except* AgentStartError as group:
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
