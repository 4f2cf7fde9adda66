"""`spidernet serve`: the control service on its unix socket, metrics on loopback (trio).

`serve(config, task_status=...)` signals readiness with the bound addresses (STYLE.md §7).
Shutdown is graceful: when `stop` is set the listeners close, requests in flight get
`DRAIN_S` to finish, then the store is closed and the socket file removed.

The store is the embedded SQLite file in the state directory, or, with `ServeConfig.kube`
(`spidernet serve --kube`), the Kubernetes API server (control/store/kube.py): pools and
endpoints in their CRDs, one IPClaim object per address, and pod facts from the cluster's own
Pods, Namespaces, Nodes and StatefulSets (docs/kube-store.md, "Kubernetes mode").
"""

from __future__ import annotations

import errno
import os
import socket
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import trio

from spidernet.control.client import DEFAULT_SOCKET, DEFAULT_STATE_DIR
from spidernet.control.http import Handler, Request, Response, serve_connection
from spidernet.control.store.base import Store, StoreError
from spidernet.control.store.embedded import open_store
from spidernet.node.access.broker import Broker, BrokerError
from spidernet.node.detect.watch import WatchError
from spidernet.node.netns import NetnsGone

from .app import App, default_uids
from .conflicts import ConflictWatch
from .detection import Detector, Settings
from .ipam import AutoPoolWait, IpamCore

DEFAULT_METRICS = ("127.0.0.1", 5711)
DRAIN_S = 10.0
POLL_S = 0.5
# Kubernetes mode: how long a mirror's watch waits for more events before it counts as caught
# up (KubeStore `watch_idle`). Every allocation syncs its mirrors, and a kind that is quiet
# while others are written (pools, while claims are) waits this long; a stale mirror only
# costs a lost claim, which the API server refuses and the core retries.
KUBE_WATCH_IDLE_S = 0.05


class ServiceError(Exception):
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
            raise ServiceError(f"failed to check socket '{path}': {e.strerror}") from e
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ServiceError(f"a service already listens on '{path}'")


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
    sock.listen(128)
    return trio.SocketListener(sock)


async def _accept(listener: trio.SocketListener, handler: Handler, conns: trio.Nursery) -> None:
    while True:
        try:
            stream = await listener.accept()
        except (trio.ClosedResourceError, OSError):
            return
        conns.start_soon(serve_connection, stream, handler)


def _metrics_handler(core: IpamCore, limiter: trio.CapacityLimiter) -> Handler:
    async def handle(request: Request) -> Response:
        if request.method == "GET" and request.path == "/metrics":
            body = await trio.to_thread.run_sync(core.scrape, limiter=limiter)
            return Response(200, body, content_type="text/plain; version=0.0.4")
        return Response(404, b"not found\n", content_type="text/plain")

    return handle


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
        raise ServiceError(f"failed to watch for conflicts: {e}") from e
    if watch.active:
        await trio.to_thread.run_sync(watch.sync)
        core.watch = watch
    return watch


async def _poll_conflicts(watch: ConflictWatch) -> None:
    """Read the conflict watchers until cancelled (each poll waits at most POLL_S)."""
    while True:
        await trio.to_thread.run_sync(watch.poll, POLL_S)


def open_config_store(config: ServeConfig) -> Store:
    """The store `config` names: the API server's, or the state directory's SQLite file."""
    if config.kube:
        from spidernet.control.store.kube import KubeStore

        kubeconfig = str(config.kubeconfig) if config.kubeconfig is not None else None
        try:
            return KubeStore.connect(kubeconfig, watch_idle=KUBE_WATCH_IDLE_S)
        except StoreError as e:
            raise ServiceError(f"failed to connect to the Kubernetes API server: {e}") from e
    try:
        return open_store(config.state_dir)
    except OSError as e:
        raise ServiceError(f"failed to open state directory '{config.state_dir}': {e}") from e


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
            raise ServiceError(f"failed to start the namespace broker: {e}") from e
        core = IpamCore(
            store,
            node=config.node,
            detector=Detector(broker, config.detection),
            parallel_sync=config.kube,
            auto_pool_wait=AutoPoolWait(
                config.kube, config.auto_pool_retries, config.auto_pool_interval_s
            ),
        )
        app = App(
            store, core, allowed_uids=default_uids(), state_dir=config.state_dir, access=broker
        )
        try:
            await trio.to_thread.run_sync(core.view.sync)
        except StoreError as e:
            raise ServiceError(f"failed to read pools and claims: {e}") from e
        watch = await _start_watch(config, broker, store, core, stack)
        listeners: list[tuple[trio.SocketListener, Handler]] = []
        unix = await _unix_listener(config.socket)
        listeners.append((unix, app))
        metrics_port = None
        if config.metrics is not None:
            host, port = config.metrics
            try:
                tcp = (await trio.open_tcp_listeners(port, host=host))[0]
            except OSError as e:
                await unix.aclose()
                config.socket.unlink(missing_ok=True)
                raise ServiceError(f"failed to listen for metrics on {host}:{port}: {e}") from e
            metrics_port = tcp.socket.getsockname()[1]
            listeners.append((tcp, _metrics_handler(core, app.limiter)))
        try:
            async with trio.open_nursery() as conns:
                async with trio.open_nursery() as accepting:
                    for listener, handler in listeners:
                        accepting.start_soon(_accept, listener, handler, conns)
                    if watch.active:
                        accepting.start_soon(_poll_conflicts, watch)
                    task_status.started(Ready(config.socket, metrics_port))
                    await stop.wait()
                    for listener, _ in listeners:
                        await listener.aclose()
                    accepting.cancel_scope.cancel()  # the conflict poller, too
                # Requests in flight finish; stragglers are cancelled after DRAIN_S.
                conns.cancel_scope.deadline = trio.current_time() + DRAIN_S
        finally:
            config.socket.unlink(missing_ok=True)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stack.close)
            await trio.to_thread.run_sync(broker.close)
        store.close()
