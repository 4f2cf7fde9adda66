"""A small JSON client of the test cluster's API server on loopback, for `bench.cluster`.

The bench is not the Kubernetes store and may not import the official client (only
control/store/kube_api.py does), so it speaks the few REST calls it needs itself: create and delete
Pods, Nodes, Namespaces and CRDs, list objects, and read `/metrics`. It authenticates with the
cluster's admin client certificate; one HTTPS connection per thread, kept alive.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from spidernet.testbed.kubecluster import Cluster

TIMEOUT_S = 30.0
ESTABLISHED_TIMEOUT_S = 60.0


class KubeApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status} {body[:300]}")
        self.status = status


class KubeApi:
    """JSON over HTTPS to one API server, as the cluster's admin."""

    def __init__(self, cluster: Cluster) -> None:
        self.port = int(cluster.server.rsplit(":", 1)[1])
        self.context = ssl.create_default_context(cafile=str(cluster.files.ca_crt))
        files = cluster.files
        self.context.load_cert_chain(str(files.crt("admin")), str(files.key("admin")))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[http.client.HTTPSConnection] = []

    def __enter__(self) -> KubeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection (threads of a finished pool leave theirs behind)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()

    def _conn(self) -> http.client.HTTPSConnection:
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=TIMEOUT_S, context=self.context
            )
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def raw(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        """One request; (status, body text). Reconnects once when the kept connection died."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read().decode(errors="replace")
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        ok: Iterable[int] = (),
    ) -> dict[str, Any]:
        """One request; its JSON. A status >= 400 not in `ok` raises KubeApiError."""
        status, text = self.raw(method, path, body)
        if status >= 400 and status not in set(ok):
            raise KubeApiError(method, path, status, text)
        doc: dict[str, Any] = json.loads(text) if text.startswith("{") else {}
        return doc

    def items(self, path: str) -> list[dict[str, Any]]:
        """Every item of a list (the loopback server answers a list in one piece here)."""
        doc = self.call("GET", path)
        items: list[dict[str, Any]] = doc.get("items") or []
        return items

    def apply_crd(self, doc: dict[str, Any]) -> str:
        """Create a CRD (kept when it exists); its name once Established."""
        name = str(doc["metadata"]["name"])
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        self.call("POST", base, doc, ok=(409,))
        deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
        while time.monotonic() < deadline:
            got = self.call("GET", f"{base}/{name}")
            status = got.get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            if conditions.get("Established") == "True":
                return name
            time.sleep(0.1)
        raise KubeApiError("GET", f"{base}/{name}", 0, "not Established in time")

    def metrics(self) -> str:
        status, text = self.raw("GET", "/metrics")
        if status != 200:
            raise KubeApiError("GET", "/metrics", status, text)
        return text


_REQUEST_TOTAL = re.compile(r"^apiserver_request_total\{([^}]*)\}\s+(\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def request_codes(metrics: str, codes: Iterable[str]) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total summed by (resource, verb, code) for the given codes."""
    wanted = set(codes)
    out: Counter[tuple[str, str, str]] = Counter()
    for labels, value in _REQUEST_TOTAL.findall(metrics):
        found = dict(_LABEL.findall(labels))
        if found.get("code") in wanted:
            key = (found.get("resource", ""), found.get("verb", ""), found["code"])
            out[key] += int(float(value))
    return out
