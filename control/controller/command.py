"""`spidernet controller`'s run: the reconcilers on the Lease (run.py), the metrics
exporter and the admission webhook (webhook.py), until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import functools
import os
import signal
import socket
import ssl
import sys
import threading

from spidernet.control.controller import gc, webhook
from spidernet.control.controller.metrics import ControllerMetrics, MetricsServer
from spidernet.control.controller.run import Elector, reconcilers, run
from spidernet.control.controller.webhook import Options, WebhookError, WebhookThread
from spidernet.control.options import metrics_address
from spidernet.control.store.base import NotFound, StoreError
from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_gateways import KubeAdmissionApi

EXIT_OK = 0
EXIT_FAILURE = 1


def serve(
    args: argparse.Namespace,
    store: KubeStore,
    hook: Options,
    hook_address: tuple[str, int] | None,
    hook_context: ssl.SSLContext | None,
) -> int:
    """Run the controller on `store` until SIGTERM or SIGINT; its exit status."""
    metrics_at = metrics_address(args.metrics_address)
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
            exporter = _metrics(metrics, metrics_at)
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


def _metrics(metrics: ControllerMetrics, address: tuple[str, int] | None) -> MetricsServer | None:
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
