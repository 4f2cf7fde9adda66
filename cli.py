"""The `spidernet` command line. Subcommands import their machinery only when run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spidernet import __version__
from spidernet.control import cluster_cli

if TYPE_CHECKING:
    import ssl
    import threading

    from spidernet.control.client import Client
    from spidernet.control.controller.metrics import ControllerMetrics, MetricsServer
    from spidernet.control.controller.webhook import Options, WebhookThread
    from spidernet.control.store.kube import KubeStore

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


def _metrics_address(text: str) -> tuple[str, int] | None:
    """--metrics-address: (host, port), or None for 'off'; ValueError when malformed."""
    if text == "off":
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("--metrics-address must be HOST:PORT or 'off'")
    return host, int(port)


def _serve(args: argparse.Namespace) -> int:
    import os

    import trio

    from spidernet.cni.forward import TIMEOUT_S as FORWARD_TIMEOUT_S
    from spidernet.control.client import socket_path, state_dir
    from spidernet.node.agent import logs
    from spidernet.node.agent.conflicts import parse_link
    from spidernet.node.agent.detection import Settings
    from spidernet.node.agent.serve import ServeConfig, ServiceError, serve

    try:
        links = [parse_link(text) for text in args.watch_link]
    except ValueError as bad:
        print(f"spidernet: --watch-link: {bad}", file=sys.stderr)
        return EXIT_USAGE
    try:
        metrics = _metrics_address(args.metrics_address)
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
    from spidernet.control import cluster_cli, commands

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


def _delete(args: argparse.Namespace) -> int:
    from spidernet.control import commands

    return commands.delete(_client(args), args.kind, args.name, args.namespace)


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
        _metrics_address(args.metrics_address)  # refused here; _controller_serve uses it
        hook_address = hook.check()
        hook_context = hook.file_context() if hook_address is not None else None
    except ValueError as e:
        print(f"spidernet: {e}", file=sys.stderr)
        return EXIT_USAGE
    from spidernet.node.agent import logs

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
    return _controller_serve(args, store, hook, hook_address, hook_context)


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


def _controller_serve(
    args: argparse.Namespace,
    store: KubeStore,
    hook: Options,
    hook_address: tuple[str, int] | None,
    hook_context: ssl.SSLContext | None,
) -> int:
    """Run the controller on `store` until SIGTERM or SIGINT; its exit status."""
    import os
    import signal
    import socket
    import threading

    from spidernet.control.controller import gc
    from spidernet.control.controller.metrics import ControllerMetrics
    from spidernet.control.controller.run import Elector, reconcilers, run
    from spidernet.control.controller.webhook import WebhookError
    from spidernet.control.store.base import StoreError

    metrics_at = _metrics_address(args.metrics_address)
    identity = args.identity or f"{socket.gethostname()}-{os.getpid()}"
    elector = Elector(
        store, args.lease_namespace, args.lease_name, identity, duration_s=args.lease_duration
    )
    policy = gc.Policy(margin_s=args.gc_margin, orphan_grace_s=args.orphan_grace)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _n, _f: stop.set())
    metrics = ControllerMetrics()
    exporter = None
    try:
        try:
            exporter = _controller_metrics(metrics, metrics_at)
        except OSError as e:
            where = args.metrics_address
            print(f"spidernet: failed to serve metrics on {where}: {e}", file=sys.stderr)
            return EXIT_FAILURE
        server = None
        if hook_address is not None:
            try:
                server = _webhook(hook, hook_address, hook_context, store, stop, metrics=metrics)
            except (WebhookError, StoreError, ValueError, OSError) as e:
                print(f"spidernet: webhook: {e}", file=sys.stderr)
                return EXIT_FAILURE
        try:
            parts = reconcilers(policy, metrics)
            run(elector, parts, interval_s=args.gc_interval, stop=stop, metrics=metrics)
        finally:
            if server is not None:
                server.stop()
    finally:
        if exporter is not None:
            exporter.stop()
        store.close()
    return EXIT_FAILURE if server is not None and server.failed else EXIT_OK


def _controller_metrics(
    metrics: ControllerMetrics, address: tuple[str, int] | None
) -> MetricsServer | None:
    """Serve the controller's metrics at `address` (None: not at all); raises OSError."""
    if address is None:
        return None
    exporter = metrics.serve(*address)
    where = f"http://{address[0]}:{exporter.port}/metrics"
    print(f"spidernet controller: metrics on {where}", file=sys.stderr, flush=True)
    return exporter


def _webhook(
    hook: Options,
    address: tuple[str, int],
    context: ssl.SSLContext | None,
    store: KubeStore,
    stop: threading.Event,
    *,
    metrics: ControllerMetrics,
) -> WebhookThread:
    """Start the admission webhook of `spidernet controller` (control/controller/webhook.py):
    its TLS material (`context`, from the files, or the Secret's), the caBundle published,
    then serving."""
    import functools
    import ssl

    from spidernet.control.controller import webhook
    from spidernet.control.store.base import NotFound
    from spidernet.control.store.kube_gateways import KubeAdmissionApi

    api = KubeAdmissionApi(store)
    if context is not None:
        ca = None
    else:
        namespace, name = hook.secret_key()
        bundle = webhook.tls_material(
            api,
            namespace=namespace,
            name=name,
            dns_names=hook.dns_names,
            ip_addresses=hook.ip_addresses,
            log=webhook.stderr_log,
        )
        try:
            context = webhook.server_context(bundle.tls_crt, bundle.tls_key)
        except ssl.SSLError as e:
            raise webhook.WebhookError(
                f"Secret '{hook.secret}': tls.crt and tls.key do not load: {e}"
            ) from e
        ca = bundle.ca_crt
    publish = None
    if hook.configuration is not None:
        assert ca is not None  # Options.check: the configuration goes with the Secret
        publish = functools.partial(
            webhook.publish_ca, api, hook.configuration, ca, webhook.stderr_log
        )
        try:
            publish()
        except NotFound:
            webhook.stderr_log(
                f"webhook: no ValidatingWebhookConfiguration '{hook.configuration}' yet; its "
                f"caBundle is set once it exists (checked every {webhook.CA_RECHECK_S:.0f}s)"
            )
    server = webhook.WebhookThread(
        store,
        context,
        address,
        log=webhook.stderr_log,
        on_failure=stop.set,
        publish_ca=publish,
        count=metrics.reviewed,
    )
    server.start()
    return server


def _add_socket(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket",
        help="service socket (default: $SPIDERNET_SOCKET or /run/spidernet/spidernet.sock)",
    )


GET_KINDS = (
    "sp (pools, spiderippools), ss (subnets), sr (reservedips), se (endpoints), "
    "scc (coordinators), smc (multusconfigs)"
)


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
    _add_socket(get)
    get.add_argument("--kubeconfig", help=cluster_cli.KUBECONFIG_HELP + "; reads the API server")
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
    _add_socket(gc)
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


def _migrate_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    mig.add_argument("--kubeconfig", help=cluster_cli.KUBECONFIG_HELP)
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


def _controller_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ctl = sub.add_parser(
        "controller",
        help="the cluster's controller: IP garbage collection and pool status, on a Lease",
        description="Reclaim the addresses of pods that are gone, finished, past their deletion "
        "grace or on a node that is gone (StatefulSet pods are kept while wanted), and keep "
        "each SpiderIPPool's allocatedIPCount current. Only the holder of the Lease acts.",
    )
    ctl.add_argument("--kubeconfig", help=cluster_cli.KUBECONFIG_HELP)
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
    ctl.set_defaults(func=_controller)


def _resource_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the control service (IPAM) on its unix socket",
        description="Serve IPAM and resources on a unix socket; state in a SQLite file, or "
        "with --kube in the Kubernetes API server.",
    )
    _add_socket(serve)
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

    apply = sub.add_parser("apply", help="create or update resources from a YAML/JSON file")
    _add_socket(apply)
    apply.add_argument(
        "-f", "--filename", required=True, help="file with one or more documents, or -"
    )
    apply.set_defaults(func=_apply)

    kinds = "pools|subnets|reservedips|endpoints|coordinators|pods|namespaces|nodes|statefulsets"
    _get_command(sub)

    delete = sub.add_parser(
        "delete", help="delete a resource", description=f"KIND is one of {kinds}."
    )
    _add_socket(delete)
    delete.add_argument("kind", metavar="KIND", help=f"the resource type: {GET_KINDS}")
    delete.add_argument("name", metavar="NAME", help="its name (NAMESPACE/NAME also works)")
    delete.add_argument("-n", "--namespace", help="its namespace, for namespaced kinds")
    delete.set_defaults(func=_delete)

    _gc_command(sub)

    _controller_command(sub)

    _migrate_command(sub)

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
    _add_socket(diag)
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
    _add_socket(watch)
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
