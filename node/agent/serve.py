"""`spidernet serve`: the control service on its unix socket, metrics on loopback (trio).

`serve(config, task_status=...)` signals readiness with the bound addresses (STYLE.md §7).
Shutdown is graceful: when `stop` is set the listeners close, requests in flight get
`DRAIN_S` to finish, then the store is closed and the socket file removed.

Under overload the service keeps answering (control/http.py): at its connection limit it
sheds the connections still waiting for a request, accept()'s capacity errors (EMFILE and
kin) are logged and retried (trio's serve_listeners), a request must arrive whole within
`READ_TIMEOUT_S`, and requests beyond `ServeConfig.max_pending` get error 11 at once
(app.py). `GET /healthz` on the metrics port asks the CNI socket itself (`GET /v1/healthz`
within `HEALTH_TIMEOUT_S`): the liveness probe fails when the socket the plugins use stops
answering, not only when the process dies.

The store is the embedded SQLite file in the state directory, or, with `ServeConfig.kube`
(`spidernet serve --kube`), the Kubernetes API server (control/store/kube.py): pools and
endpoints in their CRDs, one IPClaim object per address, and pod facts from the cluster's own
Pods, Namespaces, Nodes and StatefulSets (docs/kube-store.md, "Kubernetes mode").
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import trio

from spidernet.control.client import DEFAULT_SOCKET, DEFAULT_STATE_DIR, Client, ServiceUnreachable
from spidernet.control.client import ServiceError as ClientError
from spidernet.control.http import Connections, Handler, Request, Response, serve_listener
from spidernet.control.store.base import Store, StoreError
from spidernet.control.store.embedded import open_store
from spidernet.node.access.broker import Broker, BrokerError
from spidernet.node.detect.watch import WatchError
from spidernet.node.errors import NodeError
from spidernet.node.ipam.errors import BackendError
from spidernet.node.netns import NetnsGone

from . import orphans
from .app import MAX_PENDING, App, default_uids
from .conflicts import ConflictWatch
from .detection import Detector, Settings
from .events import PodEvents
from .ipam import AutoPoolWait, IpamCore

DEFAULT_METRICS = ("127.0.0.1", 5711)
DRAIN_S = 10.0
POLL_S = 0.5
# A forwarder sends its whole request at once; a connection still incomplete after this long
# is dropped (its file descriptor is what the next CNI call needs).
READ_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 3.0

_log = logging.getLogger("spidernet.serve")
# Kubernetes mode: how long a mirror's watch waits for more events before it counts as caught
# up (KubeStore `watch_idle`). Every allocation syncs its mirrors, and a kind that is quiet
# while others are written (pools, while claims are) waits this long; a stale mirror only
# costs a lost claim, which the API server refuses and the core retries.
KUBE_WATCH_IDLE_S = 0.05


class AgentStartError(NodeError):
    """The service cannot start (socket in use, state directory unusable, ...)."""


@dataclass(frozen=True)
class ServeConfig:
    """Where the service listens and keeps its state."""

    socket: Path = Path(DEFAULT_SOCKET)
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    metrics: tuple[str, int] | None = DEFAULT_METRICS
    node: str | None = None
    # ADD-time probes, unless a network's ipam section says otherwise (detection.py).
    detection: Settings = field(default_factory=Settings)
    # Links to watch for conflicting claims on pods' addresses: (netns path or None, link).
    watch_links: tuple[tuple[str | None, str], ...] = ()
    # Kubernetes mode: the store is the API server (kubeconfig None: $KUBECONFIG, else the
    # in-cluster service account); the state directory keeps only the coordinator's state.
    kube: bool = False
    kubeconfig: Path | None = None
    # Kubernetes mode: how long an ADD waits for its SpiderSubnet auto pool (ipam.py).
    auto_pool_retries: int = 25
    auto_pool_interval_s: float = 2.0
    # A KubeVirt VM's launcher pods share the VM's addresses (ipam.py, docs/kubevirt.md).
    kubevirt_static_ip: bool = True
    # Requests queued or in work before more are refused with CNI error 11 (app.py).
    max_pending: int = MAX_PENDING
    # The embedded store's GC of addresses whose sandbox's namespace is gone (orphans.py):
    # a pass every `gc_interval_s` (0: only when asked, `spidernet gc --now`), releasing
    # what has been gone for `gc_grace_s`. Not in Kubernetes mode (the controller's GC).
    gc_interval_s: float = orphans.DEFAULT_INTERVAL_S
    gc_grace_s: float = orphans.DEFAULT_GRACE_S


@dataclass(frozen=True)
class Ready:
    """What `serve` reports once it accepts calls."""

    socket: Path
    metrics_port: int | None


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket file; refuse when a live service answers on it."""
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise AgentStartError(f"failed to check socket '{path}': {e.strerror}") from e
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise AgentStartError(f"a service already listens on '{path}'")


async def _unix_listener(path: Path) -> trio.SocketListener:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    _claim_socket_path(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Created 0600 from the start: no window in which another user could connect.
    old = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old)
    # The kernel's own cap (net.core.somaxconn): a node's burst of CNI calls waits in the
    # queue instead of blocking in connect().
    sock.listen(socket.SOMAXCONN)
    return trio.SocketListener(sock)


def _metrics_handler(core: IpamCore, limiter: trio.CapacityLimiter, socket_path: Path) -> Handler:
    async def handle(request: Request) -> Response:
        if request.method == "GET" and request.path == "/metrics":
            body = await trio.to_thread.run_sync(core.scrape, limiter=limiter)
            return Response(200, body, content_type="text/plain; version=0.0.4")
        if request.method == "GET" and request.path == "/healthz":
            failure = await _ask_socket(socket_path)
            if failure:
                return Response(503, f"{failure}\n".encode(), content_type="text/plain")
            return Response(200, b"ok\n", content_type="text/plain")
        return Response(404, b"not found\n", content_type="text/plain")

    return handle


async def _ask_socket(path: Path) -> str:
    """Ask the service's own CNI socket `GET /v1/healthz` as a plugin would (the CLI's
    client, in a worker thread): "" when it answers within `HEALTH_TIMEOUT_S`, else what
    went wrong."""
    ask = Client(path, timeout=HEALTH_TIMEOUT_S).request
    try:
        await trio.to_thread.run_sync(ask, "GET", "/v1/healthz")
    except ServiceUnreachable as e:
        return f"the CNI socket {path} cannot be reached: {e}"
    except ClientError as e:
        return f"the CNI socket {path} answered {e.status}: {e.message}"
    return ""


async def _start_watch(
    config: ServeConfig, broker: Broker, store: Store, core: IpamCore, stack: ExitStack
) -> ConflictWatch:
    """The conflict watch on `config.watch_links` (inactive when there are none), told of
    every SpiderEndpoint's addresses and hooked to the IPAM core; closed with `stack`."""
    watch = ConflictWatch(broker, store, core.metrics)
    stack.callback(watch.close)
    try:
        await trio.to_thread.run_sync(watch.open, config.watch_links)
    except (WatchError, NetnsGone) as e:
        raise AgentStartError(f"failed to watch for conflicts: {e}") from e
    if watch.active:
        await trio.to_thread.run_sync(watch.sync)
        core.watch = watch
    return watch


async def _poll_conflicts(watch: ConflictWatch) -> None:
    """Read the conflict watchers until cancelled (each poll waits at most POLL_S)."""
    while True:
        await trio.to_thread.run_sync(watch.poll, POLL_S)


async def _collect_orphans(
    core: IpamCore, collector: orphans.Collector, limiter: trio.CapacityLimiter
) -> None:
    """The embedded GC's passes, every `collector.interval_s`, in the store's worker (each
    release is logged where it happens, IpamCore.collect); a failed pass is logged and the
    next one tries again."""
    while True:
        await trio.sleep(collector.interval_s)
        try:
            await trio.to_thread.run_sync(core.collect, collector, limiter=limiter)
        except BackendError as e:
            _log.warning("gc: pass failed: %s", e.message)


def open_config_store(config: ServeConfig) -> Store:
    """The store `config` names: the API server's, or the state directory's SQLite file."""
    if config.kube:
        from spidernet.control.store.kube import KubeStore

        kubeconfig = str(config.kubeconfig) if config.kubeconfig is not None else None
        try:
            return KubeStore.connect(kubeconfig, watch_idle=KUBE_WATCH_IDLE_S)
        except StoreError as e:
            raise AgentStartError(f"failed to connect to the Kubernetes API server: {e}") from e
    try:
        return open_store(config.state_dir)
    except OSError as e:
        raise AgentStartError(f"failed to open state directory '{config.state_dir}': {e}") from e
    except StoreError as e:
        # A damaged file, another program's database, or one from a newer release: refused
        # as it is, naming the file; nothing in it was changed (schema.py).
        raise AgentStartError(str(e)) from e


async def _open_listeners(
    config: ServeConfig, app: App, core: IpamCore
) -> list[tuple[trio.SocketListener, Handler]]:
    """The CNI socket, then the metrics port when `config` asks for one."""
    unix = await _unix_listener(config.socket)
    if config.metrics is None:
        return [(unix, app)]
    host, port = config.metrics
    try:
        tcp = (await trio.open_tcp_listeners(port, host=host))[0]
    except OSError as e:
        await unix.aclose()
        config.socket.unlink(missing_ok=True)
        raise AgentStartError(f"failed to listen for metrics on {host}:{port}: {e}") from e
    return [(unix, app), (tcp, _metrics_handler(core, app.limiter, config.socket))]


async def serve(
    config: ServeConfig,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[Ready] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until `stop` is set, then drain and clean up."""
    store = open_config_store(config)
    # The namespace broker: a helper process that opens sockets in pods' namespaces for the
    # coordinator (node/access/); started before the first call, stopped on the way out.
    broker = Broker()
    stack = ExitStack()  # what closes with the service: the conflict watchers
    try:
        try:
            await trio.to_thread.run_sync(broker.ping)
        except (BrokerError, OSError) as e:
            raise AgentStartError(f"failed to start the namespace broker: {e}") from e
        core = _ipam_core(config, store, broker, stack)
        app = _app(config, store, core, broker)
        try:
            await trio.to_thread.run_sync(core.view.sync)
        except StoreError as e:
            raise AgentStartError(f"failed to read pools and claims: {e}") from e
        watch = await _start_watch(config, broker, store, core, stack)
        listeners = await _open_listeners(config, app, core)
        metrics_port = listeners[1][0].socket.getsockname()[1] if len(listeners) > 1 else None
        try:
            background = _background(config, app, core, watch)
            ready = Ready(config.socket, metrics_port)
            await _accept(listeners, background, stop, ready, task_status)
        finally:
            config.socket.unlink(missing_ok=True)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stack.close)
            await trio.to_thread.run_sync(broker.close)
        store.close()


def _ipam_core(config: ServeConfig, store: Store, broker: Broker, stack: ExitStack) -> IpamCore:
    """The IPAM core on `store`; in Kubernetes mode its failed ADDs become Events on their
    pods, posted by a thread that `stack` closes."""
    core = IpamCore(
        store,
        node=config.node,
        detector=Detector(broker, config.detection),
        parallel_sync=config.kube,
        auto_pool_wait=AutoPoolWait(
            config.kube, config.auto_pool_retries, config.auto_pool_interval_s
        ),
        kubevirt=config.kubevirt_static_ip,
    )
    if config.kube:
        from spidernet.control.store.kube import KubeStore
        from spidernet.control.store.kube_gateways import KubeIpamClaimApi

        if isinstance(store, KubeStore):
            # The claims kept current by a live watch rather than caught up per ADD.
            core.view.follow(store.follow)
            stack.callback(core.view.close)
            # Failed ADDs as Events on their pods, posted by a thread of their own.
            pod_events = PodEvents(store.post_event, core.node)
            stack.callback(pod_events.close)
            core.events = pod_events.add_failed
            core.claim_status = KubeIpamClaimApi(store).write_ips
    return core


def _app(config: ServeConfig, store: Store, core: IpamCore, broker: Broker) -> App:
    """The routes; the embedded store's orphan collector with them (the controller collects
    in Kubernetes mode)."""
    return App(
        store,
        core,
        allowed_uids=default_uids(),
        state_dir=config.state_dir,
        access=broker,
        max_pending=config.max_pending,
        collector=None
        if config.kube
        else orphans.Collector(grace_s=config.gc_grace_s, interval_s=config.gc_interval_s),
    )


def _background(
    config: ServeConfig, app: App, core: IpamCore, watch: ConflictWatch
) -> list[Callable[[], Awaitable[None]]]:
    """The tasks that run beside the accept loops: the conflict poller, the orphan GC."""
    tasks: list[Callable[[], Awaitable[None]]] = []
    if watch.active:
        tasks.append(functools.partial(_poll_conflicts, watch))
    if app.collector is not None and config.gc_interval_s > 0:
        tasks.append(functools.partial(_collect_orphans, core, app.collector, app.limiter))
    return tasks


async def _accept(
    listeners: list[tuple[trio.SocketListener, Handler]],
    background: list[Callable[[], Awaitable[None]]],
    stop: trio.Event,
    ready: Ready,
    task_status: trio.TaskStatus[Ready],
) -> None:
    """Accept on every listener (and run `background`) until `stop`; then close the
    listeners and let the requests in flight finish for up to DRAIN_S."""
    async with trio.open_nursery() as conns:
        async with trio.open_nursery() as accepting:
            # One count for both listeners: they share the process's descriptors.
            connections = Connections()
            for listener, handler in listeners:
                accepting.start_soon(
                    functools.partial(
                        serve_listener,
                        listener,
                        handler,
                        conns,
                        connections=connections,
                        read_timeout_s=READ_TIMEOUT_S,
                    )
                )
            for task in background:
                accepting.start_soon(task)
            task_status.started(ready)
            await stop.wait()
            # The accept loops close their listeners as they end; the conflict poller and
            # the GC end with them.
            accepting.cancel_scope.cancel()
        # Requests in flight finish; stragglers are cancelled after DRAIN_S.
        conns.cancel_scope.deadline = trio.current_time() + DRAIN_S
