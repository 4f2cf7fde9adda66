"""The validating admission webhook of `spidernet controller`: HTTPS, AdmissionReview v1.

Every controller replica serves it (not only the Lease holder): the API server may call any
of them through the Service. `POST /validate` answers an AdmissionReview with the verdict of
`admission.py` on the objects the store holds now (read in a worker thread: the store
blocks); `GET /healthz` answers `ok`. HTTP/1.1 is the node service's (control/http.py, h11),
on trio TLS streams, with keep-alive (the API server reuses its connections; a TLS handshake
per review would cost more than the review).

Start-up (`tls_material`, `publish_ca`), before serving: the TLS Secret is read; when missing,
a CA and a serving certificate are generated (`certs.py`) and the Secret created; if another
replica created it first (AlreadyExists), its Secret is read, so every replica serves the
same certificate. The named ValidatingWebhookConfiguration then gets the Secret's `ca.crt` as
every webhook's `clientConfig.caBundle` (a JSON patch, only where it differs).

`WebhookThread` runs the server in a trio loop of its own thread, beside the controller loop
(run.py), which stays a plain thread; `stop` cancels it and joins, closing the listeners.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import ipaddress
import json
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from spidernet.control.controller import admission, certs
from spidernet.control.errors import ControlError
from spidernet.control.http import Handler, Request, Response, serve_connection
from spidernet.control.model.resources import IPPool, Subnet
from spidernet.control.store.base import CLAIM, AlreadyExists, NotFound, Store, StoreError

SECRET_TYPE = "kubernetes.io/tls"
IDLE_TIMEOUT_S = 90.0  # a kept-alive connection with no request for this long is closed
START_TIMEOUT_S = 10.0
# How often the caBundle is checked again: a configuration created after the controller, or
# re-applied from a manifest without the caBundle, gets it within this time.
CA_RECHECK_S = 30.0

Log = Callable[[str], None]


class WebhookError(ControlError):
    """The webhook cannot start: the message says what and why."""


class AdmissionApi(Protocol):
    """The Kubernetes calls of the start-up (the Kubernetes store's KubeAdmissionApi)."""

    def read_secret(self, namespace: str, name: str) -> dict[str, bytes]: ...

    def create_secret(
        self, namespace: str, name: str, secret_type: str, data: Mapping[str, bytes]
    ) -> None: ...

    def read_webhook_configuration(self, name: str) -> dict[str, Any]: ...

    def patch_webhook_configuration(self, name: str, ops: Sequence[Mapping[str, Any]]) -> None: ...


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT (`[v6]:PORT` for IPv6) -> (host, port); ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{text}' is not HOST:PORT with a port of 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


@dataclass(frozen=True)
class Options:
    """The `--webhook-*` flags of `spidernet controller` (docs/webhook.md)."""

    address: str | None = None
    secret: str | None = None  # NAMESPACE/NAME
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    configuration: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def check(self) -> tuple[str, int] | None:
        """The address to serve on (None: no webhook); ValueError naming the flag that is
        wrong or missing (a usage error)."""
        if self.address is None:
            given = [
                flag
                for flag, value in (
                    ("--webhook-secret", self.secret),
                    ("--webhook-dns", self.dns_names),
                    ("--webhook-ip", self.ip_addresses),
                    ("--webhook-configuration", self.configuration),
                    ("--webhook-cert", self.cert_file),
                    ("--webhook-key", self.key_file),
                )
                if value
            ]
            if given:
                raise ValueError(f"{given[0]} needs --webhook-address HOST:PORT")
            return None
        try:
            host_port = parse_address(self.address)
        except ValueError as e:
            raise ValueError(f"--webhook-address: {e}") from e
        for ip in self.ip_addresses:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"--webhook-ip: '{ip}' is not an IP address") from None
        files = self.cert_file is not None or self.key_file is not None
        if files and self.secret is not None:
            raise ValueError("--webhook-cert/--webhook-key and --webhook-secret exclude each other")
        if files and (self.cert_file is None or self.key_file is None):
            raise ValueError("--webhook-cert and --webhook-key go together")
        if files and self.configuration is not None:
            raise ValueError(
                "--webhook-configuration needs --webhook-secret (its ca.crt is the caBundle)"
            )
        if not files and self.secret is None:
            raise ValueError(
                "--webhook-address needs --webhook-secret NAMESPACE/NAME, "
                "or --webhook-cert FILE and --webhook-key FILE"
            )
        if self.secret is not None:
            self.secret_key()
            if not self.dns_names and not self.ip_addresses:
                raise ValueError(
                    "--webhook-secret needs the serving certificate's names: "
                    "--webhook-dns NAME or --webhook-ip ADDR (repeatable)"
                )
        return host_port

    def file_context(self) -> ssl.SSLContext | None:
        """The server context of --webhook-cert/--webhook-key (None without them); ValueError
        naming the flags when the files cannot be read or are not a certificate and its key."""
        if self.cert_file is None or self.key_file is None:
            return None
        try:
            cert, key = Path(self.cert_file).read_bytes(), Path(self.key_file).read_bytes()
        except OSError as e:
            raise ValueError(f"--webhook-cert/--webhook-key: cannot read: {e}") from e
        try:
            return server_context(cert, key)
        except ssl.SSLError as e:
            raise ValueError(
                f"--webhook-cert/--webhook-key: not a PEM certificate and its key: {e}"
            ) from e

    def secret_key(self) -> tuple[str, str]:
        """(namespace, name) of --webhook-secret; ValueError when it is not NAMESPACE/NAME."""
        namespace, _, name = (self.secret or "").partition("/")
        if not namespace or not name or "/" in name:
            raise ValueError(f"--webhook-secret: expected NAMESPACE/NAME, got '{self.secret}'")
        return namespace, name


# -- TLS material ---------------------------------------------------------------------------------


def tls_material(
    api: AdmissionApi,
    *,
    namespace: str,
    name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    log: Log,
) -> certs.Bundle:
    """The Secret `namespace/name`'s bundle, creating the Secret first when it is missing."""
    where = f"Secret '{namespace}/{name}'"
    try:
        data = api.read_secret(namespace, name)
    except NotFound:
        bundle = certs.generate(dns_names, ip_addresses, datetime.datetime.now(datetime.UTC))
        try:
            api.create_secret(namespace, name, SECRET_TYPE, bundle.as_secret_data())
            log(f"webhook: created {where} with a new CA and serving certificate")
            return bundle
        except AlreadyExists:  # another replica won: serve its certificate
            data = api.read_secret(namespace, name)
    try:
        bundle = certs.Bundle.from_secret_data(data, where)
    except ValueError as e:
        raise WebhookError(str(e)) from e
    missing = certs.covers(bundle.tls_crt, dns_names, ip_addresses)
    if missing:
        log(
            f"webhook: the certificate of {where} does not name {', '.join(missing)}; "
            "delete the Secret to have it made again"
        )
    return bundle


def publish_ca(api: AdmissionApi, configuration: str, ca_crt: bytes, log: Log) -> int:
    """Set every webhook's caBundle of `configuration` to `ca_crt`; how many changed."""
    ops = certs.ca_bundle_patch(api.read_webhook_configuration(configuration), ca_crt)
    if ops:
        api.patch_webhook_configuration(configuration, ops)
        log(f"webhook: set the caBundle of {len(ops) // 2} webhook(s) of '{configuration}'")
    return len(ops) // 2


def server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the certificate and key (PEM); ssl.SSLError if they do
    not load."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # The ssl module loads certificates from files only: a private directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="spidernet-webhook-") as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


# -- serving ---------------------------------------------------------------------------------------


def read_facts(store: Store, needs: admission.Needs) -> admission.Facts:
    """The objects `needs` names, read from the store (blocking)."""
    pools: list[IPPool] = []
    subnets: list[Subnet] = []
    claimed: list[str] = []
    if needs.pools:
        pools = admission.records([s.body for s in store.list(IPPool.KIND).items], IPPool)
    if needs.subnets:
        subnets = admission.records([s.body for s in store.list(Subnet.KIND).items], Subnet)
    if needs.claims_of is not None:
        claimed = [c.key.name for c in store.list(CLAIM, namespace=needs.claims_of).items]
    return admission.Facts(pools, subnets, claimed)


def _json(status: int, doc: object) -> Response:
    return Response(status, json.dumps(doc).encode() + b"\n")


# Told of each review answered: the object's kind, and whether it was allowed (metrics).
ReviewCount = Callable[[str, bool], None]


def _uncounted(kind: str, allowed: bool) -> None:
    del kind, allowed


async def review(store: Store, body: bytes, log: Log, count: ReviewCount = _uncounted) -> Response:
    """The answer to one POST /validate."""
    try:
        rev = admission.read_review(json.loads(body))
    except (ValueError, UnicodeDecodeError) as e:
        return _json(400, {"error": f"not an AdmissionReview v1 request: {e}"})
    first = admission.triage(rev)
    if isinstance(first, admission.Verdict):
        verdict = first
    else:
        needs = first
        try:
            facts = await trio.to_thread.run_sync(read_facts, store, needs)
        except StoreError as e:
            verdict = admission.Verdict.deny(
                admission.UNAVAILABLE, f"failed to review {rev.kind} '{rev.name}': {e}"
            )
        else:
            verdict = admission.decide(rev, facts)
    count(rev.kind, verdict.allowed)
    if not verdict.allowed:
        where = f"{rev.namespace}/{rev.name}" if rev.namespace else rev.name
        log(f"webhook: denied {rev.operation} {rev.kind} '{where}': {verdict.message}")
    return _json(200, admission.response(rev.uid, verdict))


def _handler(store: Store, log: Log, count: ReviewCount) -> Handler:
    async def route(request: Request) -> Response:
        if request.path == "/healthz":
            return Response(200, b"ok\n", "text/plain")
        if request.path != "/validate":
            return _json(404, {"error": f"no such path {request.path}; use /validate"})
        if request.method != "POST":
            return _json(405, {"error": "use POST"})
        return await review(store, request.body, log, count)

    return route


async def serve(
    store: Store,
    context: ssl.SSLContext,
    host: str,
    port: int,
    log: Log,
    *,
    count: ReviewCount = _uncounted,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the webhook on `host:port` until cancelled; `task_status.started((host, port))`
    once listening (the port actually bound, for port 0)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    tls = [trio.SSLListener(lst, context, https_compatible=True) for lst in listeners]

    route = _handler(store, log, count)

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await serve_connection(stream, route, keep_alive=True, idle_timeout_s=IDLE_TIMEOUT_S)
        except Exception as e:  # one connection's bug must not end the server
            log(f"webhook: connection failed: {type(e).__name__}: {e}")

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, tls)
        bound = listeners[0].socket.getsockname()
        log(f"webhook: serving https://{host}:{bound[1]}/validate")
        task_status.started((host, int(bound[1])))


class WebhookThread:
    """`serve` in a trio loop of its own thread. `start` returns once it listens (or raises
    WebhookError); if the server dies, `on_failure` is called (the CLI stops the process)."""

    def __init__(
        self,
        store: Store,
        context: ssl.SSLContext,
        address: tuple[str, int],
        *,
        log: Log,
        on_failure: Callable[[], None] = lambda: None,
        publish_ca: Callable[[], object] | None = None,
        count: ReviewCount = _uncounted,
    ) -> None:
        self._args = (store, context, *address, log)
        self._count = count
        self._publish = publish_ca
        self._log = log
        self._on_failure = on_failure
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="webhook", daemon=True)
        self.address: tuple[str, int] | None = None

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                serving = functools.partial(serve, *self._args, count=self._count)
                self.address = await nursery.start(serving)
                self._ready.set()
                if self._publish is not None:
                    nursery.start_soon(self._republish, self._publish)

    async def _republish(self, publish: Callable[[], object]) -> None:
        while True:
            await trio.sleep(CA_RECHECK_S)
            try:
                await trio.to_thread.run_sync(publish)
            except NotFound:
                pass  # not (yet) there: looked at again next time
            except StoreError as e:
                self._log(f"webhook: caBundle not set: {e}")

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as e:  # reported to `start` or through on_failure
            self._error = e
            if self._ready.is_set():
                self._log(f"webhook: stopped: {type(e).__name__}: {e}")
                self._on_failure()
        finally:
            self._ready.set()

    def start(self) -> tuple[str, int]:
        """Start serving; the bound address."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise WebhookError(f"the webhook did not listen within {START_TIMEOUT_S:.0f}s")
        if self.address is None:
            self._thread.join()  # it ended: trio.run raised
            cause = self._error
            if isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
                cause = cause.exceptions[0]
            host, port = self._args[2:4]
            raise WebhookError(f"failed to listen on {host}:{port}: {cause}")
        return self.address

    @property
    def failed(self) -> bool:
        """Whether the server stopped on an error after it had started."""
        return self.address is not None and self._error is not None

    def stop(self) -> None:
        """Cancel the server (listeners and connections close) and wait for its thread."""
        token, scope = self._token, self._scope
        if token is not None and scope is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):  # it ended on its own
                trio.from_thread.run_sync(scope.cancel, trio_token=token)
        self._thread.join()


def stderr_log(line: str) -> None:
    """The webhook's log line, through the process's log handler (text or JSON)."""
    logging.getLogger("spidernet.controller.webhook").info(line)
