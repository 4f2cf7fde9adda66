"""The webhook's certificates, flags, start-up against an in-memory API, and one HTTPS round
trip on loopback (tests/k8s/test_webhook.py runs it behind a real API server)."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from spidernet import cli
from spidernet.control.controller import certs, webhook
from spidernet.control.controller.webhook import Options
from spidernet.control.store.base import AlreadyExists, Key, NotFound
from spidernet.control.store.embedded import EmbeddedStore

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def test_generated_certificate_is_signed_by_the_ca_for_the_names() -> None:
    bundle = certs.generate(["svc.kube-system.svc"], ["127.0.0.1"], NOW)
    ca = x509.load_pem_x509_certificate(bundle.ca_crt)
    cert = x509.load_pem_x509_certificate(bundle.tls_crt)
    assert cert.issuer == ca.subject
    hash_algorithm = cert.signature_hash_algorithm
    assert hash_algorithm is not None
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_algorithm))
    assert certs.covers(bundle.tls_crt, ["svc.kube-system.svc"], ["127.0.0.1"]) == []
    assert certs.covers(bundle.tls_crt, ["other.svc"], ["::1"]) == ["other.svc", "::1"]


def test_a_key_that_is_not_the_certificates_does_not_load() -> None:
    bundle = certs.generate(["a.example"], [], NOW)
    with pytest.raises(ssl.SSLError):
        webhook.server_context(bundle.tls_crt, certs.generate(["b"], [], NOW).tls_key)


def test_ca_bundle_patch_only_where_it_differs() -> None:
    ca = b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
    b64 = base64.b64encode(ca).decode()
    conf: dict[str, Any] = {
        "webhooks": [
            {"name": "a.spidernet.io", "clientConfig": {"caBundle": b64}},
            {"name": "b.spidernet.io", "clientConfig": {"url": "https://127.0.0.1:1/validate"}},
        ]
    }
    assert certs.ca_bundle_patch(conf, ca) == [
        {"op": "test", "path": "/webhooks/1/name", "value": "b.spidernet.io"},
        {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": b64},
    ]
    conf["webhooks"][1]["clientConfig"]["caBundle"] = b64
    assert certs.ca_bundle_patch(conf, ca) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (Options(secret="ns/s"), "--webhook-secret needs --webhook-address"),
        (Options(address="127.0.0.1"), "--webhook-address: '127.0.0.1' is not HOST:PORT"),
        (Options(address="h:70000", secret="a/b"), "--webhook-address: 'h:70000'"),
        (Options(address="h:1"), "needs --webhook-secret NAMESPACE/NAME"),
        (Options(address="h:1", secret="nons", ip_addresses=("::1",)), "expected NAMESPACE/NAME"),
        (Options(address="h:1", secret="a/b"), "needs the serving certificate's names"),
        (Options(address="h:1", secret="a/b", ip_addresses=("x",)), "--webhook-ip: 'x'"),
        (Options(address="h:1", cert_file="c"), "go together"),
        (Options(address="h:1", secret="a/b", cert_file="c", key_file="k"), "exclude each other"),
    ],
)
def test_flag_errors_name_the_flag(options: Options, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        options.check()


def test_flags_accepted() -> None:
    assert Options().check() is None
    assert Options(address="[::1]:9443", cert_file="c", key_file="k").check() == ("::1", 9443)
    opts = Options(address="0.0.0.0:9443", secret="kube-system/tls", dns_names=("a.svc",))
    assert opts.check() == ("0.0.0.0", 9443)
    assert opts.secret_key() == ("kube-system", "tls")


class FakeApi:
    """Secrets and webhook configurations in memory, with the API server's answers."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.race: dict[str, bytes] | None = None  # a Secret another replica creates first
        self.patches: list[list[Mapping[str, Any]]] = []

    def read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        if (namespace, name) not in self.secrets:
            raise NotFound(Key("Secret", namespace, name), "not found")
        return dict(self.secrets[namespace, name])

    def create_secret(
        self, namespace: str, name: str, secret_type: str, data: Mapping[str, bytes]
    ) -> None:
        assert secret_type == "kubernetes.io/tls"
        if self.race is not None:
            self.secrets[namespace, name] = self.race
        if (namespace, name) in self.secrets:
            raise AlreadyExists(Key("Secret", namespace, name), "already exists")
        self.secrets[namespace, name] = dict(data)

    def read_webhook_configuration(self, name: str) -> dict[str, Any]:
        if name not in self.configs:
            raise NotFound(Key("ValidatingWebhookConfiguration", "", name), "not found")
        return self.configs[name]

    def patch_webhook_configuration(self, name: str, ops: Sequence[Mapping[str, Any]]) -> None:
        self.patches.append(list(ops))
        for op in ops:
            if op["op"] == "add":
                i = int(op["path"].split("/")[2])
                self.configs[name]["webhooks"][i]["clientConfig"]["caBundle"] = op["value"]


def material(api: FakeApi, log: list[str]) -> certs.Bundle:
    return webhook.tls_material(
        api, namespace="ns", name="tls", dns_names=["a.svc"], ip_addresses=[], log=log.append
    )


def test_the_secret_is_made_once_and_then_read() -> None:
    api, log = FakeApi(), list[str]()
    first = material(api, log)
    assert api.secrets["ns", "tls"] == first.as_secret_data()
    assert log == ["webhook: created Secret 'ns/tls' with a new CA and serving certificate"]
    assert material(api, log) == first
    assert len(log) == 1


def test_a_replica_that_loses_the_race_serves_the_winners_secret() -> None:
    api, log = FakeApi(), list[str]()
    winner = certs.generate(["a.svc"], [], NOW)
    api.race = winner.as_secret_data()
    assert material(api, log) == winner
    assert log == []


def test_a_secret_without_a_key_is_an_error_naming_it() -> None:
    api = FakeApi()
    api.secrets["ns", "tls"] = {"tls.crt": b"x", "ca.crt": b"y"}
    with pytest.raises(webhook.WebhookError, match=r"Secret 'ns/tls': data\.tls\.key: missing"):
        material(api, [])


def test_publish_ca_patches_once() -> None:
    api, log = FakeApi(), list[str]()
    api.configs["v"] = {"webhooks": [{"name": "w", "clientConfig": {"url": "https://x"}}]}
    assert webhook.publish_ca(api, "v", b"CA", log.append) == 1
    assert webhook.publish_ca(api, "v", b"CA", log.append) == 0
    assert len(api.patches) == 1
    with pytest.raises(NotFound):
        webhook.publish_ca(api, "missing", b"CA", log.append)


def review_of(obj: dict[str, Any]) -> bytes:
    req = {
        "uid": "u-9",
        "kind": {"group": "spiderpool.spidernet.io", "version": "v2beta1", "kind": obj["kind"]},
        "operation": "CREATE",
        "name": obj["metadata"]["name"],
        "object": obj,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}
    ).encode()


async def exchange(
    stream: trio.abc.Stream, conn: h11.Connection, method: str, path: str, body: bytes
) -> tuple[int, bytes]:
    """One request on a kept-alive connection, parsed with h11's client side."""
    headers = [("Host", "127.0.0.1"), ("Content-Length", str(len(body)))]
    request = h11.Request(method=method, target=path, headers=headers)
    await stream.send_all(
        conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    )
    status, data = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            data += event.data
        elif isinstance(event, h11.EndOfMessage):
            conn.start_next_cycle()
            return status, data
        else:
            raise AssertionError(f"unexpected {event!r}")


async def test_https_round_trip_keeps_the_connection_alive(tmp_path: Path) -> None:
    bundle = certs.generate([], ["127.0.0.1"], datetime.datetime.now(datetime.UTC))
    context = webhook.server_context(bundle.tls_crt, bundle.tls_key)
    store = EmbeddedStore(tmp_path / "db")
    coordinator = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderCoordinator",
        "metadata": {"name": "default"},
        "spec": {"vethMTU": 0},
    }
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(webhook.serve, store, context, "127.0.0.1", 0, log.append)
        client_ctx = ssl.create_default_context(cadata=bundle.ca_crt.decode())
        stream = await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=client_ctx, https_compatible=True
        )
        conn = h11.Connection(h11.CLIENT)
        health = await exchange(stream, conn, "GET", "/healthz", b"")
        answer = await exchange(stream, conn, "POST", "/validate", review_of(coordinator))
        missing = await exchange(stream, conn, "POST", "/other", b"")
        junk = await exchange(stream, conn, "POST", "/validate", b"{}")
        await stream.aclose()
        nursery.cancel_scope.cancel()
    store.close()
    assert health == (200, b"ok\n")
    assert (missing[0], junk[0]) == (404, 400)
    assert answer[0] == 200
    doc = json.loads(answer[1])
    assert doc["response"]["uid"] == "u-9"
    assert doc["response"]["allowed"] is False
    assert doc["response"]["status"]["code"] == 422
    message = doc["response"]["status"]["message"]
    assert "SpiderCoordinator 'default': spec.vethMTU: 0 is out of range 1..65535" in message
    assert any("denied CREATE SpiderCoordinator 'default'" in line for line in log)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--webhook-address", "nope"], "--webhook-address: 'nope' is not HOST:PORT"),
        (["--webhook-address", "127.0.0.1:9443", "--webhook-secret", "tls"], "NAMESPACE/NAME"),
        (["--webhook-dns", "a.svc"], "--webhook-dns needs --webhook-address"),
        (
            ["--webhook-address", "127.0.0.1:9443", "--webhook-cert", "/nonexistent/c"],
            "go together",
        ),
        (
            [
                *("--webhook-address", "127.0.0.1:9443"),
                *("--webhook-cert", "/nonexistent/c", "--webhook-key", "/nonexistent/k"),
            ],
            "--webhook-cert/--webhook-key: cannot read: ",
        ),
        (
            [
                *("--webhook-address", "127.0.0.1:9443", "--webhook-cert", "c"),
                *("--webhook-key", "k", "--webhook-configuration", "v"),
            ],
            "--webhook-configuration needs --webhook-secret",
        ),
    ],
)
def test_controller_usage_errors_exit_2_before_connecting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No kubeconfig is given: a flag error must come first.
    assert cli.main(["controller", *argv]) == 2
    assert message in capsys.readouterr().err


def test_controller_refuses_files_that_are_not_a_certificate_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = certs.generate(["a"], [], NOW)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(bundle.tls_crt)
    key.write_bytes(bundle.ca_crt)  # a certificate where the key should be
    argv = ["--webhook-address", "127.0.0.1:9443", "--webhook-cert", str(cert)]
    assert cli.main(["controller", *argv, "--webhook-key", str(key)]) == 2
    assert "not a PEM certificate and its key" in capsys.readouterr().err


def test_thread_serves_then_stops_leaving_no_thread_or_socket(tmp_path: Path) -> None:
    bundle = certs.generate([], ["127.0.0.1"], NOW)
    context = webhook.server_context(bundle.tls_crt, bundle.tls_key)
    store = EmbeddedStore(tmp_path / "db")
    log: list[str] = []
    failed: list[bool] = []
    server = webhook.WebhookThread(
        store, context, ("127.0.0.1", 0), log=log.append, on_failure=lambda: failed.append(True)
    )
    host, port = server.start()
    # Another server on the same port cannot start, and says why.
    busy = webhook.WebhookThread(store, context, (host, port), log=log.append)
    with pytest.raises(webhook.WebhookError, match=f"failed to listen on 127.0.0.1:{port}"):
        busy.start()
    with socket.create_connection((host, port), timeout=5):
        pass
    server.stop()
    store.close()
    assert not server.failed
    assert failed == []
    assert [t.name for t in threading.enumerate() if t.name == "webhook"] == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5).close()
