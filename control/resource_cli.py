"""`spidernet apply`, `get`, `delete` and `gc`: their parsers (cli.py calls `register`) and
which side answers: the node service's socket (control/commands.py) or, for `get` and `gc`
when asked, the API server (cluster_cli.py). Imports its machinery only when a command
runs."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from spidernet.control import cluster_cli
from spidernet.control.options import KUBECONFIG_HELP, add_socket

if TYPE_CHECKING:
    from spidernet.control.client import Client

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT

GET_KINDS = (
    "sp (pools, spiderippools), ss (subnets), sr (reservedips), se (endpoints), "
    "scc (coordinators), smc (multusconfigs)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `apply`, `get`, `delete` and `gc` to the subcommands."""
    apply = sub.add_parser("apply", help="create or update resources from a YAML/JSON file")
    add_socket(apply)
    apply.add_argument(
        "-f", "--filename", required=True, help="file with one or more documents, or -"
    )
    apply.set_defaults(func=_apply)

    kinds = "pools|subnets|reservedips|endpoints|coordinators|pods|namespaces|nodes|statefulsets"
    _get_command(sub)

    delete = sub.add_parser(
        "delete", help="delete a resource", description=f"KIND is one of {kinds}."
    )
    add_socket(delete)
    delete.add_argument("kind", metavar="KIND", help=f"the resource type: {GET_KINDS}")
    delete.add_argument("name", metavar="NAME", help="its name (NAMESPACE/NAME also works)")
    delete.add_argument("-n", "--namespace", help="its namespace, for namespaced kinds")
    delete.set_defaults(func=_delete)

    _gc_command(sub)


def _get_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    get = sub.add_parser(
        "get",
        help="show resources, from the API server or a node's service",
        description="Show Spider* resources with their CRDs' printer columns. The API server "
        "is read when --kubeconfig or --cluster is given, or when $KUBECONFIG is set and "
        "neither --socket nor $SPIDERNET_SOCKET is; otherwise the node's service on its unix "
        "socket (which also shows its records of pods, namespaces, nodes and statefulsets). "
        "-o yaml|json prints what `apply -f` takes back (a v1 List for several).",
    )
    get.add_argument("kind", metavar="KIND", help=f"the resource type: {GET_KINDS}")
    get.add_argument(
        "name", metavar="NAME", nargs="?", help="one object's name (NAMESPACE/NAME also works)"
    )
    get.add_argument(
        "-n",
        "--namespace",
        help="the namespace of namespaced kinds (default: the kubeconfig context's, else "
        "'default'; on the node socket: every namespace)",
    )
    get.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace (adds a NAMESPACE column for namespaced kinds)",
    )
    get.add_argument(
        "-l",
        "--selector",
        metavar="SELECTOR",
        help="label selector, e.g. 'app=web,tier!=db,env in (a,b),!legacy' (the API server "
        "filters; the node socket's answer is filtered here)",
    )
    get.add_argument(
        "-o",
        "--output",
        choices=["table", "wide", "json", "yaml", "name"],
        default="table",
        help="table (default), wide (more columns), json or yaml (apply-able), name (KIND/NAME)",
    )
    get.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="after the listing, print each change until Ctrl-C (API server only)",
    )
    get.add_argument(
        "--output-watch-events",
        action="store_true",
        help="with --watch: an EVENT column (ADDED, MODIFIED, DELETED)",
    )
    add_socket(get)
    get.add_argument("--kubeconfig", help=KUBECONFIG_HELP + "; reads the API server")
    get.add_argument(
        "--cluster",
        action="store_true",
        help="read the API server with $KUBECONFIG, else the in-cluster service account",
    )
    get.set_defaults(func=_get)


def _gc_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gc = sub.add_parser(
        "gc",
        help="show (or run) the embedded store's GC of addresses whose sandbox is gone",
        description="Each endpoint of this node with the GC's verdict and why (live, gone for "
        "less than the grace, orphan, kept), then what it released. The sandbox counts as gone "
        "when no process, mount or descriptor on the host holds its network namespace.",
    )
    add_socket(gc)
    gc.add_argument("--now", action="store_true", help="run a pass first, releasing orphans")
    gc.add_argument(
        "--grace",
        type=float,
        help="judge (and with --now release) with this grace in seconds, not the service's "
        "(with --kubeconfig: the controller's --orphan-grace, default 60)",
    )
    gc.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="table or JSON"
    )
    cluster = gc.add_argument_group(
        "Kubernetes mode",
        "With --kubeconfig (or --dry-run): what the controller's GC would reclaim now, and "
        "why, read through the API server; nothing changes (the controller reclaims).",
    )
    cluster.add_argument("--kubeconfig", help="the kubeconfig (default: $KUBECONFIG)")
    cluster.add_argument(
        "--dry-run", action="store_true", help="the cluster's GC verdicts, changing nothing"
    )
    cluster.add_argument(
        "--gc-margin", type=float, help="as the controller's --gc-margin (default 30)"
    )
    gc.set_defaults(func=_gc)


def _client(args: argparse.Namespace) -> Client:
    from spidernet.control.client import Client, socket_path

    return Client(socket_path(args.socket))


def _apply(args: argparse.Namespace) -> int:
    from spidernet.control import commands

    return commands.apply(_client(args), args.filename)


def _get(args: argparse.Namespace) -> int:
    import os

    from spidernet.control import commands
    from spidernet.control.model import listing

    try:
        side = listing.source(
            kubeconfig=args.kubeconfig, cluster=args.cluster, socket=args.socket, env=os.environ
        )
        selector = listing.parse_selector(args.selector) if args.selector else None
    except ValueError as e:
        print(f"spidernet get: {e}", file=sys.stderr)
        return EXIT_USAGE
    if side == listing.CLUSTER:
        try:
            return cluster_cli.get(args)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED  # Ctrl-C ends a --watch: quietly, as kubectl's
    if args.watch or args.output_watch_events:
        print("spidernet get: --watch reads the API server: give --kubeconfig or --cluster",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    namespace = None if args.all_namespaces else args.namespace
    return commands.get(
        _client(args), args.kind, args.name, namespace, output=args.output, selector=selector
    )


def _gc(args: argparse.Namespace) -> int:
    from spidernet.control import commands

    if args.grace is not None and args.grace < 0:
        print("spidernet: --grace must be 0 or more seconds", file=sys.stderr)
        return EXIT_USAGE
    if args.kubeconfig is not None or args.dry_run:
        if args.now:
            print("spidernet: gc --kubeconfig/--dry-run changes nothing; --now is for the "
                  "embedded store", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        return cluster_cli.gc_preview(args)
    return commands.gc(_client(args), now=args.now, grace=args.grace, output=args.output)


def _delete(args: argparse.Namespace) -> int:
    from spidernet.control import commands

    return commands.delete(_client(args), args.kind, args.name, args.namespace)
