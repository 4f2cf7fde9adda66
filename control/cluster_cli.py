"""`spidernet ip who|release` and `spidernet gc --kubeconfig`: a cluster's addresses through
its API server (a kubeconfig), not a node's socket. Registers its own parsers (cli.py calls
`register`); the work is control/controller/addresses.py."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from spidernet.control.options import KUBECONFIG_HELP

EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ip` (who, release) to the subcommands."""
    ip = sub.add_parser(
        "ip",
        help="who holds an address in the cluster; give one back by hand",
        description="Kubernetes mode: read (and for release, write) the cluster's IPClaims and "
        "SpiderEndpoints through the API server.",
    )
    ip_sub = ip.add_subparsers(dest="ip_command", metavar="COMMAND", required=True)
    who = ip_sub.add_parser(
        "who",
        help="the pod, pool, node and time an address was given, and who lists it",
        description="Every pool's record of ADDR: its IPClaim (pod, pod uid, node, interface, "
        "since when) and whether that pod still runs, and the SpiderEndpoints that list it. "
        "Exit 1 when nothing holds it.",
    )
    who.add_argument("address", metavar="ADDR", type=_address, help="an IPv4 or IPv6 address")
    who.add_argument("--kubeconfig", help=KUBECONFIG_HELP)
    who.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="lines or JSON"
    )
    who.set_defaults(func=_who)
    rel = ip_sub.add_parser(
        "release",
        help="give an address back to its pool (refused while its pod runs)",
        description="Delete ADDR's IPClaim and take it out of every SpiderEndpoint that lists "
        "it (an endpoint left with no address is deleted), in one commit at the versions "
        "read. Refused while the pod its claim names still runs, unless --force.",
    )
    rel.add_argument("address", metavar="ADDR", type=_address, help="an IPv4 or IPv6 address")
    rel.add_argument("--pool", help="the pool, when several hold the address")
    rel.add_argument(
        "--force", action="store_true", help="release it even though its pod still runs"
    )
    rel.add_argument("--kubeconfig", help=KUBECONFIG_HELP)
    rel.set_defaults(func=_release)


def _address(text: str) -> str:
    """ADDR, canonical; argparse's usage error (exit 2) when it is no address."""
    from spidernet.control.controller.addresses import canonical

    try:
        return canonical(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address (no prefix)") from None


def _connect(kubeconfig: str | None) -> Any:  # noqa: ANN401 (a KubeStore; imported late, the CLI starts fast)
    from spidernet.control.store.kube import KubeStore

    return KubeStore.connect(kubeconfig)


def _who(args: argparse.Namespace) -> int:
    from spidernet.control.controller import addresses
    from spidernet.control.store.base import StoreError

    try:
        with _connect(args.kubeconfig) as store:
            holders = addresses.who(store, args.address)
    except StoreError as e:
        print(f"spidernet ip who: {e}", file=sys.stderr)
        return EXIT_FAILURE
    rows = [_holder_doc(h) for h in holders]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"{args.address}: no pool holds it")
    for row in rows if args.output == "table" else []:
        claim = (
            f"pod {row['pod']} ({row['podState']}), node {row['node'] or '-'}, "
            f"interface {row['interface'] or '-'}, since {row['since'] or '-'}"
            if row["claimed"]
            else "NO CLAIM (an endpoint lists it, nothing holds it)"
        )
        listed = ", ".join(row["listedBy"]) or "no endpoint"
        print(f"{row['pool']}/{row['address']}: {claim}; listed by {listed}")
    return 0 if rows else EXIT_FAILURE


def _holder_doc(h: Any) -> dict[str, Any]:  # noqa: ANN401 (an addresses.Holder)
    body = h.claim.body if h.claim is not None else {}
    return {
        "pool": h.pool,
        "address": h.address,
        "claimed": h.claim is not None,
        "pod": h.pod,
        "podUid": body.get("podUid", ""),
        "podState": h.pod_state,
        "node": body.get("node", ""),
        "interface": body.get("interface", ""),
        "since": body.get("since", ""),
        "listedBy": [f"{e.key.namespace}/{e.key.name}" for e in h.listed_by],
    }


def _release(args: argparse.Namespace) -> int:
    from spidernet.control.controller import addresses
    from spidernet.control.store.base import StoreError

    try:
        with _connect(args.kubeconfig) as store:
            h = addresses.release(store, args.address, args.pool, args.force)
    except addresses.Refused as e:
        print(f"spidernet ip release: {args.address}: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except StoreError as e:
        print(f"spidernet ip release: {e} (nothing changed; try again)", file=sys.stderr)
        return EXIT_FAILURE
    listed = "".join(f", taken out of {e.key.namespace}/{e.key.name}" for e in h.listed_by)
    print(f"released {h.pool}/{h.address} of pod {h.pod}{listed}")
    return 0


def gc_preview(args: argparse.Namespace) -> int:
    """`spidernet gc --kubeconfig`: the controller's verdicts now; nothing changes."""
    from spidernet.control.controller import addresses, gc
    from spidernet.control.store.base import StoreError

    policy = gc.Policy(
        margin_s=args.gc_margin if args.gc_margin is not None else gc.DEFAULT_MARGIN_S,
        orphan_grace_s=args.grace if args.grace is not None else gc.DEFAULT_ORPHAN_GRACE_S,
    )
    try:
        with _connect(args.kubeconfig) as store:
            verdicts = addresses.gc_preview(store, policy)
    except StoreError as e:
        print(f"spidernet gc: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if args.output == "json":
        print(
            json.dumps([v.__dict__ | {"addresses": list(v.addresses)} for v in verdicts], indent=2)
        )
        return 0
    if not verdicts:
        print("the GC would reclaim nothing now")
    for v in verdicts:
        held = ", ".join(v.addresses) or "no address"
        print(f"{v.kind} {v.name} of pod {v.pod} ({held}): {v.reason}")
    return 0


def get(args: argparse.Namespace) -> int:
    """`spidernet get` on the API server (cli.py decides the side: listing.source)."""
    from spidernet.control import cluster_get
    from spidernet.control.model import listing
    from spidernet.control.model.printing import resolve_kind
    from spidernet.control.store.base import NotFound, StoreError
    from spidernet.control.store.kube_api import context_namespace
    from spidernet.control.store.kube_get import KubeGetApi
    from spidernet.control.store.kube_names import SPIDER_KINDS

    try:
        kind = resolve_kind(args.kind)
        selector = listing.parse_selector(args.selector) if args.selector else None
    except ValueError as e:
        print(f"spidernet get: {e}", file=sys.stderr)
        return EXIT_USAGE
    name, namespace = args.name, args.namespace
    if name and "/" in name and namespace is None:
        namespace, _, name = name.partition("/")
    if name and args.all_namespaces:
        print("spidernet get: a resource cannot be retrieved by name across all namespaces "
              "(-A)", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if not SPIDER_KINDS[kind].namespaced:
        namespace = None  # (kubectl ignores -n for a cluster-scoped kind)
    elif args.all_namespaces:
        namespace = None
    elif namespace is None:
        namespace = context_namespace(args.kubeconfig)
    req = cluster_get.Request(
        kind, name, namespace, selector, args.output, args.watch, args.output_watch_events
    )
    try:
        with _connect(args.kubeconfig) as store:
            return cluster_get.get(KubeGetApi(store), req)
    except NotFound:
        if name is None:  # (a list is 404 only when the resource type itself is missing)
            print(f"spidernet get: the API server has no {kind} resource type (deploy/chart/crds "
                  "not installed?)", file=sys.stderr)  # fmt: skip
        else:
            where = f" in namespace {namespace}" if namespace else ""
            print(f'spidernet get: {kind} "{name}" not found{where}', file=sys.stderr)
        return EXIT_FAILURE
    except StoreError as e:
        print(f"spidernet get: {e}", file=sys.stderr)
        return EXIT_FAILURE
