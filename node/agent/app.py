"""The service's HTTP routes over the IPAM core and the store.

Routes (JSON unless noted):
- `GET  /v1/healthz`
- `POST /v1/cni/spidernet-ipam`, `/v1/cni/spidernet-coordinator`, `/v1/cni/spidernet-ifacer`:
  a forwarded CNI call (see `cni/forward.py`); the host side of the coordinator and
  the ifacer is the caller's namespace, and CNI_NETNS is opened as the caller sees it, in
  its mount namespace (`node/access/callers.py`)
- `POST /v1/ipam/allocate`, `POST /v1/ipam/release`: the same operations as typed JSON
- `GET  /v1/endpoints/NAMESPACE/NAME`: a pod's SpiderEndpoint
- `GET  /v1/gc`, `POST /v1/gc[?grace=SECONDS]`: the embedded GC's verdicts and releases,
  and a pass now (orphans.py)
- `GET  /v1/coordinator/config?podNamespace=NS&podName=NAME`: SpiderCoordinator settings,
  and the pod's `ipam.spidernet.io/default-route-nic` under `podAnnotations`
- `GET  /v1/resources/KIND[/NAMESPACE]/NAME`, `GET /v1/resources/KIND`: get and list
- `POST /v1/resources`: apply one document; `DELETE /v1/resources/KIND[/NAMESPACE]/NAME`

Store calls block, so every handler body runs in one worker thread at a time
(`trio.to_thread.run_sync` with a limiter of one): SQLite writes are serialised anyway, and
one writer never waits on a lock held by another thread of its own. `GET /v1/healthz` is
answered in the event loop, never behind that queue: it says the socket is served, which is
what the probes ask. The queue is bounded (`max_pending`): a request beyond it is answered at
once with 503 and CNI error 11 ("try again later"), which a runtime retries, instead of
waiting until its caller has given up.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from spidernet.cni.env import parse_cni_args
from spidernet.cni.errors import CNIError, Code, Deferred
from spidernet.cni.skel import error_version, plugin_main
from spidernet.control.allocator.errors import AllocationError
from spidernet.control.http import Request, Response
from spidernet.control.model.documents import parse, to_document
from spidernet.control.model.resources import Coordinator
from spidernet.control.store.base import Key, NotFound, Store, StoreError
from spidernet.netconf.coordinator.config import (
    ANNO_DEFAULT_ROUTE_NIC,
    ClusterSettings,
    cluster_settings,
)
from spidernet.node.access.base import Namespaces
from spidernet.node.access.callers import caller_view
from spidernet.node.access.spawn import Spawning
from spidernet.node.coordinator.commands import NAME as COORDINATOR
from spidernet.node.ifacer.commands import NAME as IFACER
from spidernet.node.ipam.conf import IpamConf, PodMeta
from spidernet.node.ipam.errors import BackendError, cni_error
from spidernet.node.ipam.plugin import IpamCall
from spidernet.node.plugins import PerCall, for_agent

from . import endpoints as ep
from . import orphans, resources
from .ipam import IpamCore

# The SpiderCoordinator status lists handed to the coordinator beside the spec.
STATUS_CIDR_KEYS = ("overlayPodCIDR", "serviceCIDR")
_log = logging.getLogger("spidernet.cni")
# Requests queued or in work at once before more are refused with error 11: far above what
# a node's runtimes send (a kubelet starts a few pods at a time), far below what would make
# the last of them wait past the forwarders' 100 s.
MAX_PENDING = 1024


def _json(status: int, obj: object) -> Response:
    return Response(status, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class App:
    """Routes requests to the IPAM core and the store."""

    def __init__(
        self,
        store: Store,
        core: IpamCore,
        *,
        allowed_uids: frozenset[int],
        state_dir: Path | None = None,
        access: Namespaces | None = None,
        max_pending: int = MAX_PENDING,
        collector: orphans.Collector | None = None,
        plugins: Mapping[str, PerCall] | None = None,
    ) -> None:
        self.store = store
        # The embedded GC's memory (orphans.py); None in Kubernetes mode.
        self.collector = collector
        self.core = core
        self.allowed_uids = allowed_uids
        self.state_dir = state_dir
        self.limiter = trio.CapacityLimiter(1)
        # Coordinator calls do netlink work in pods and take longer; they run beside the
        # store's single worker, a few at a time.
        self.node_limiter = trio.CapacityLimiter(4)
        # The plugins this agent serves, wired in one place (node/plugins.py); serve passes
        # its broker process as the way into pods' namespaces.
        self.plugins = plugins or for_agent(
            core,
            state_dir=state_dir,
            settings=self._cluster_settings,
            access=access or Spawning(),
        )
        self.max_pending = max_pending
        self.pending = 0

    async def __call__(self, request: Request) -> Response:
        if request.peer.uid not in self.allowed_uids:
            return _error(403, f"uid {request.peer.uid} may not use this socket")
        if request.path == "/v1/healthz" and request.method == "GET":
            health: dict[str, object] = {"ok": True, "node": self.core.node}
            if self.state_dir is not None:
                health["stateDir"] = str(self.state_dir)  # where diag finds the saved plans
            return _json(200, health)
        if self.pending >= self.max_pending:
            self.core.metrics.busy.inc()
            return _busy(request, self.pending)
        self.pending += 1
        try:
            return await self._queued(request)
        finally:
            self.pending -= 1

    async def _queued(self, request: Request) -> Response:
        limiter = self.limiter
        if request.path in (f"/v1/cni/{COORDINATOR}", f"/v1/cni/{IFACER}"):
            limiter = self.node_limiter
        try:
            while True:
                try:
                    return await trio.to_thread.run_sync(self._route, request, limiter=limiter)
                except Deferred as later:
                    # An ADD waiting for its auto pool: the worker serves other calls
                    # meanwhile (IpamCore.auto_pool_wait bounds the wait).
                    await trio.sleep(later.after_s)
        except resources.Rejected as e:
            return _error(422, str(e))
        except NotFound as e:
            return _error(404, str(e))
        except StoreError as e:
            return _error(409, str(e))
        except (ValueError, KeyError, TypeError) as e:
            return _error(400, f"bad request: {e}")

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts[:1] != ["v1"] or len(parts) < 2:
            return _error(404, f"no route {request.path}")
        route = parts[1:]
        if route[:1] == ["cni"] and len(route) == 2 and method == "POST":
            return self._cni(route[1], request)
        if route[:1] == ["ipam"] and len(route) == 2 and method == "POST":
            return self._ipam(route[1], json.loads(request.body), request.peer.pid)
        if route[:1] == ["endpoints"] and len(route) == 3 and method == "GET":
            return _json(200, dict(self.store.get(ep.key_of(route[1], route[2])).body))
        if route == ["gc"] and method in ("GET", "POST"):
            return self._gc(method == "POST", request.query)
        if route == ["coordinator", "config"] and method == "GET":
            return self._coordinator(request.query)
        if route[:1] == ["resources"]:
            return self._resources(method, route[1:], request.body)
        return _error(404, f"no route {method} {request.path}")

    def _cni(self, plugin: str, request: Request) -> Response:
        make = self.plugins.get(plugin)
        if make is None:
            return _error(404, f"the service does not serve plugin {plugin!r}")
        # The host side is the caller's namespace: a plugin run in a test's "host"
        # namespace acts there, exactly as on a real node (DESIGN.md).
        cni = make(caller_netns(request.peer.pid))
        environ: dict[str, str] = {}
        for value in request.header("cni-env"):
            name, _, val = value.partition("=")
            environ[name] = val
        out, err = io.StringIO(), io.StringIO()
        # CNI_NETNS names a namespace in the caller's mount namespace, which need not be
        # ours: for this call, every opener opens it as the caller sees it (callers.py).
        # The handler runs in a worker thread; the view is set and reset in its context.
        start = time.perf_counter()
        with caller_view(request.peer.pid, [environ.get("CNI_NETNS", "")]):
            status = plugin_main(
                cni, environ=environ, stdin=io.BytesIO(request.body), stdout=out, stderr=err
            )
        seconds = time.perf_counter() - start
        outcome = "ok" if status == 0 else "error"
        self.core.metrics.cni_seconds.labels(
            plugin, environ.get("CNI_COMMAND", ""), outcome
        ).observe(seconds)
        _log_cni(plugin, environ, status, out=out.getvalue(), err=err.getvalue(), seconds=seconds)
        headers = [("Cni-Exit", str(status))]
        return Response(200, out.getvalue().encode(), headers=headers)

    def _ipam(self, verb: str, body: Mapping[str, Any], pid: int) -> Response:
        call = IpamCall(
            container_id=str(body["containerID"]),
            ifname=str(body["ifName"]),
            netns=str(body.get("netNamespace", "")),
            network=str(body.get("network", "")),
            conf=IpamConf(
                default_ipv4_ippool=tuple(body.get("defaultIPv4IPPool", [])),
                default_ipv6_ippool=tuple(body.get("defaultIPv6IPPool", [])),
                clean_gateway=bool(body.get("cleanGateway", False)),
            ),
            pod=PodMeta(
                namespace=str(body.get("podNamespace", "")),
                name=str(body.get("podName", "")),
                uid=str(body.get("podUID", "")),
            ),
        )
        if verb not in ("allocate", "release"):
            return _error(404, f"no IPAM operation {verb!r}")
        try:
            # netNamespace is the caller's path, as CNI_NETNS is (ADD-time probes open it).
            with caller_view(pid, [call.netns]):
                if verb == "release":
                    self.core.release(call)
                    return _json(200, {"released": True})
                addresses = self.core.allocate(call)
        except (AllocationError, BackendError) as e:
            # The typed route's answer for the same CNI error the plugin would give.
            error = cni_error(e)
            return _json(409, {"error": error.msg, "code": error.code})
        return _json(
            200,
            {
                "ips": [
                    {"nic": a.interface, "address": a.address, "gateway": a.gateway}
                    for a in addresses
                ],
                "routes": [
                    {"ifName": a.interface, "dst": dst, "gw": gw}
                    for a in addresses
                    for dst, gw in a.routes
                ],
            },
        )

    def _settings(self, ns: str, name: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The `default` SpiderCoordinator's spec (defaults filled in) with its status's
        overlayPodCIDR and serviceCIDR, and the pod's default-route-nic annotation, which
        travels apart: it beats the NAD as well as the SpiderCoordinator, and only the plugin
        sees the NAD."""
        status: Mapping[str, Any] = {}
        try:
            obj = self.store.get(Key(Coordinator.KIND, "", "default"))
            coord = parse(obj.body)
            status = obj.body.get("status") or {}
        except NotFound:
            coord = Coordinator(name="default")
        spec = dict(to_document(coord).get("spec", {}))
        # The cluster's pod and service CIDRs, as the controller found them (its
        # coordinator-status reconciler), are the defaults a NAD's own lists override.
        # Spiderpool refuses every call while the phase is not Synced; the CIDRs found so far
        # are used instead, and none found means the plugin's own default (no routes).
        for key in STATUS_CIDR_KEYS:
            if isinstance(status.get(key), list):
                spec[key] = list(status[key])
        annotations: dict[str, str] = {}
        if ns and name:
            try:
                pod = self.store.get(Key("Pod", ns, name)).body
                nic = pod.get("metadata", {}).get("annotations", {}).get(ANNO_DEFAULT_ROUTE_NIC)
                if isinstance(nic, str) and nic:
                    annotations[ANNO_DEFAULT_ROUTE_NIC] = nic
            except NotFound:
                pass
        return spec, annotations

    def _cluster_settings(self, ns: str, name: str) -> ClusterSettings:
        """What the coordinator plugin gets in this process: the settings of `_settings`,
        checked once into the typed record."""
        spec, annotations = self._settings(ns, name)
        return cluster_settings(spec, annotations.get(ANNO_DEFAULT_ROUTE_NIC, ""))

    def _coordinator(self, query: Mapping[str, list[str]]) -> Response:
        ns = query.get("podNamespace", [""])[0]
        name = query.get("podName", [""])[0]
        spec, annotations = self._settings(ns, name)
        return _json(200, {**spec, "podAnnotations": annotations})

    def _gc(self, release: bool, query: Mapping[str, list[str]]) -> Response:
        """GET: what the embedded GC thinks of each endpoint now and what it released; POST:
        a pass now (`?grace=SECONDS` instead of the configured grace)."""
        collector = self.collector
        if collector is None:
            return _error(
                404,
                "the embedded GC runs only with the embedded store; in Kubernetes mode the "
                "controller releases the addresses of deleted pods",
            )
        grace = None
        if "grace" in query:
            grace = float(query["grace"][0])
            if grace < 0:
                raise ValueError("grace must be 0 or more seconds")
        try:
            verdicts = self.core.collect(collector, release=release, grace_s=grace)
        except BackendError as e:
            error = cni_error(e)
            return _json(503, {"error": error.msg, "code": error.code})
        history = [
            {"time": _iso(when), **verdict.to_dict()}
            for when, verdict in reversed(collector.released)
        ]
        return _json(
            200,
            {
                "intervalSeconds": collector.interval_s,
                "graceSeconds": collector.grace_s if grace is None else grace,
                "ran": release,
                "endpoints": [v.to_dict() for v in verdicts],
                "released": history,
            },
        )

    def _resources(self, method: str, route: list[str], body: bytes) -> Response:
        if method == "POST" and not route:
            applied = resources.apply(self.store, json.loads(body))
            return _json(200, {"key": _key_dict(applied.key), "action": applied.action})
        if not route or route[0] not in resources.kinds():
            return _error(404, f"unknown kind; known: {', '.join(resources.kinds())}")
        kind = route[0]
        if method == "GET" and len(route) == 1:
            items = self.store.list(kind).items
            return _json(200, {"items": [resources.with_status(self.store, o) for o in items]})
        key = _key(kind, route[1:])
        if method == "GET":
            return _json(200, resources.with_status(self.store, self.store.get(key)))
        if method == "DELETE":
            resources.delete(self.store, key)
            return _json(200, {"deleted": _key_dict(key)})
        return _error(405, f"{method} not allowed here")


def _log_cni(
    plugin: str, environ: Mapping[str, str], status: int, *, out: str, err: str, seconds: float
) -> None:
    """One line per forwarded CNI call: who, what, how it ended, how long it took; what the
    plugin wrote on stderr follows, a line each."""
    try:
        args = dict(parse_cni_args(environ.get("CNI_ARGS", "")))
    except CNIError:
        args = {}  # (the plugin refused the call for it: error 4, logged below)
    fields: dict[str, object] = {
        "plugin": plugin,
        "command": environ.get("CNI_COMMAND", ""),
        "container": environ.get("CNI_CONTAINERID", ""),
        "ifname": environ.get("CNI_IFNAME", ""),
        "netns": environ.get("CNI_NETNS", ""),
    }
    if args.get("K8S_POD_NAME"):
        fields["pod"] = f"{args.get('K8S_POD_NAMESPACE', '')}/{args['K8S_POD_NAME']}"
    fields["ms"] = round(seconds * 1000, 1)
    verb = f"cni {fields['command']} {plugin}"
    msg = ""
    if status == 0:
        _log.info("%s: ok", verb, extra={"fields": {**fields, "outcome": "ok"}})
    else:
        try:
            error = json.loads(out)
        except ValueError:
            error = {}
        code = error.get("code", "") if isinstance(error, dict) else ""
        msg = str(error.get("msg", out.strip())) if isinstance(error, dict) else out.strip()
        _log.warning(
            "%s: error %s: %s",
            verb,
            code,
            msg,
            extra={"fields": {**fields, "outcome": "error", "code": code}},
        )
    for line in err.splitlines():
        # (The skel repeats the error on stderr: logged once, above.)
        if line.strip() and not (msg and line.endswith(msg)):
            _log.warning("%s (stderr): %s", verb, line, extra={"fields": fields})


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _busy(request: Request, pending: int) -> Response:
    """503 for a request over the queue's bound: a CNI error 11 a forwarder passes on as
    its answer (exit 1), or the typed routes' error with the same code."""
    msg = "try again later: the spidernet service is busy"
    details = f"{pending} requests are queued or in work, its limit"
    if request.path.startswith("/v1/cni/"):
        error = CNIError(Code.TRY_AGAIN_LATER, msg, details)
        body = error.to_json(error_version(request.body)).encode()
        return Response(503, body, headers=[("Cni-Exit", "1")])
    return _json(503, {"error": f"{msg}: {details}", "code": int(Code.TRY_AGAIN_LATER)})


def caller_netns(pid: int) -> str | None:
    """The caller's network namespace as a path, or None when it is the service's own (the
    usual case on a node): a netlink socket for this process's own namespace is opened
    without the fork a socket in another namespace costs."""
    path = f"/proc/{pid}/ns/net"
    try:
        theirs, ours = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return path  # gone or unreadable: let the netlink layer say so
    same = (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
    return None if same else path


def _key(kind: str, rest: list[str]) -> Key:
    if len(rest) == 1:
        return Key(kind, "", rest[0])
    if len(rest) == 2:
        return Key(kind, rest[0], rest[1])
    raise ValueError("expected NAME or NAMESPACE/NAME")


def _key_dict(key: Key) -> dict[str, str]:
    return {"kind": key.kind, "namespace": key.namespace, "name": key.name}


def default_uids() -> frozenset[int]:
    """Callers allowed on the socket: root and the service's own user."""
    return frozenset({0, os.getuid()})
