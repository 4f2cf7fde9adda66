"""`spidernet controller` and `spidernet migrate`: their parsers (cli.py calls `register`),
their options' checks and the connection to the API server. The controller's run is
command.py's `serve`, the adoption migrate.py's; each is imported only when its command
runs."""

from __future__ import annotations

import argparse
import sys

from spidernet.control.options import KUBECONFIG_HELP, metrics_address

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `controller` and `migrate` to the subcommands."""
    _controller_parser(sub)
    _migrate_parser(sub)


def _controller_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ctl = sub.add_parser(
        "controller",
        help="the cluster's controller: IP garbage collection and pool status, on a Lease",
        description="Reclaim the addresses of pods that are gone, finished, past their deletion "
        "grace or on a node that is gone (StatefulSet pods are kept while wanted), and keep "
        "each SpiderIPPool's allocatedIPCount current. Only the holder of the Lease acts.",
    )
    ctl.add_argument("--kubeconfig", help=KUBECONFIG_HELP)
    ctl.add_argument(
        "--gc-interval", type=float, default=30.0, help="seconds between full scans (30)"
    )
    ctl.add_argument(
        "--gc-margin",
        type=float,
        default=30.0,
        help="seconds past a terminating pod's grace period before its addresses go (30)",
    )
    ctl.add_argument(
        "--orphan-grace",
        type=float,
        default=60.0,
        help="seconds a claim no endpoint lists is left before it is reclaimed (60)",
    )
    ctl.add_argument("--lease-name", default="spidernet-controller", help="the Lease's name")
    ctl.add_argument("--lease-namespace", default="kube-system", help="the Lease's namespace")
    ctl.add_argument(
        "--lease-duration", type=int, default=15, help="seconds a Lease holds unrenewed (15)"
    )
    ctl.add_argument("--identity", help="this candidate's name (default: host name and pid)")
    ctl.add_argument(
        "--owner-deployment",
        metavar="NAME",
        help="the Deployment (in the Lease's namespace) that owns the Lease and the webhook "
        "Secret this controller creates, so that deleting it deletes them (the manifests set "
        "spidernet-controller)",
    )
    ctl.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="info: a line per reclaim and per webhook refusal; warning: only failures "
        "(default: info)",
    )
    ctl.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines, or one JSON object a line (default: text)",
    )
    ctl.add_argument(
        "--metrics-address",
        default="off",
        metavar="HOST:PORT",
        help="serve Prometheus /metrics here (port 0: any free one, printed), or 'off' "
        "(default: off; the manifests set 0.0.0.0:5721)",
    )
    _add_webhook_options(ctl)
    ctl.set_defaults(func=_controller)


def _add_webhook_options(ctl: argparse.ArgumentParser) -> None:
    """The admission webhook's group of `spidernet controller`."""
    hook = ctl.add_argument_group(
        "admission webhook",
        "Validate Spider* objects at admission (every replica serves it; docs/webhook.md).",
    )
    hook.add_argument(
        "--webhook-address", metavar="HOST:PORT", help="serve HTTPS /validate here (default: off)"
    )
    hook.add_argument(
        "--webhook-secret",
        metavar="NAMESPACE/NAME",
        help="the kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt); made when missing",
    )
    hook.add_argument(
        "--webhook-dns",
        metavar="NAME",
        action="append",
        default=[],
        help="a DNS name of the serving certificate (repeatable)",
    )
    hook.add_argument(
        "--webhook-ip",
        metavar="ADDR",
        action="append",
        default=[],
        help="an IP address of the serving certificate (repeatable)",
    )
    hook.add_argument(
        "--webhook-configuration",
        metavar="NAME",
        help="the ValidatingWebhookConfiguration whose caBundle is set to the Secret's ca.crt",
    )
    hook.add_argument("--webhook-cert", metavar="FILE", help="serving certificate (PEM)")
    hook.add_argument("--webhook-key", metavar="FILE", help="its private key (PEM)")


def _migrate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mig = sub.add_parser(
        "migrate",
        help="adopt what Spiderpool's records hold, before spidernet serves a cluster it ran",
        description="Every address in a SpiderIPPool's status.allocatedIPs or a SpiderEndpoint "
        "becomes an IPClaim naming the same pod (unless claimed already), so no address "
        "Spiderpool gave out is given again; Spiderpool's finalizer is removed from its "
        "endpoints and pools. Idempotent. Exits 1 when an address is claimed by another pod "
        "or a record cannot be read (listed; the rest is still adopted). "
        "docs/migrate-from-spiderpool.md.",
    )
    mig.add_argument("--kubeconfig", help=KUBECONFIG_HELP)
    mig.add_argument(
        "--dry-run", action="store_true", help="print what would be adopted; change nothing"
    )
    mig.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="NAME",
        help="only this SpiderIPPool's addresses (repeatable; default: every pool)",
    )
    mig.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="a report or JSON"
    )
    mig.set_defaults(func=_migrate)


def _controller(args: argparse.Namespace) -> int:
    from spidernet.control.controller.webhook import Options
    from spidernet.control.store.base import Unavailable
    from spidernet.control.store.kube import KubeStore

    hook = Options(
        args.webhook_address,
        args.webhook_secret,
        tuple(args.webhook_dns),
        tuple(args.webhook_ip),
        args.webhook_configuration,
        args.webhook_cert,
        args.webhook_key,
    )
    try:
        if args.gc_interval <= 0 or args.lease_duration <= 0:
            raise ValueError("--gc-interval and --lease-duration must be positive")
        metrics_address(args.metrics_address)  # refused here; command.serve uses it
        hook_address = hook.check()
        hook_context = hook.file_context() if hook_address is not None else None
    except ValueError as e:
        print(f"spidernet: {e}", file=sys.stderr)
        return EXIT_USAGE
    from spidernet.control import logs

    # Every reclaim with its reason, every webhook refusal with its field (info).
    logs.configure(args.log_level, args.log_format)
    try:
        store = KubeStore.connect(args.kubeconfig)
    except Unavailable as e:
        print(f"spidernet: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if args.owner_deployment:
        from spidernet.control.store.base import StoreError

        try:
            store.own_by_deployment(args.lease_namespace, args.owner_deployment)
        except StoreError as e:  # the objects are made all the same, unowned
            print(f"spidernet: --owner-deployment: {e}; the Lease and Secret stay", file=sys.stderr)
    from spidernet.control.controller.command import serve

    return serve(args, store, hook, hook_address, hook_context)


def _migrate(args: argparse.Namespace) -> int:
    import json

    from spidernet.control.controller import adopt, migrate
    from spidernet.control.store.base import StoreError
    from spidernet.control.store.kube import KubeStore

    try:
        store = KubeStore.connect(args.kubeconfig)
        with store:
            only = frozenset(args.pool) if args.pool else None
            out = migrate.migrate(store, dry_run=args.dry_run, only=only)
    except StoreError as e:
        print(f"spidernet migrate: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if args.output == "json":
        doc = adopt.summary(out.plan)
        if not args.dry_run:
            doc["adopted"] = len(out.adopted)
            doc["finalizersRemoved"] = len(out.unfinalized)
            doc["conflicts"] += [adopt.contested_doc(c) for c in out.lost]
        print(json.dumps(doc, indent=2))
    else:
        print(migrate.report(out, dry_run=args.dry_run), end="")
    troubled = out.plan.conflicts or out.plan.problems or out.lost
    return EXIT_FAILURE if troubled else 0
