"""The deploy tests' helpers (tests/k8s/test_deploy.py): `kustomize build`, TokenRequest
kubeconfigs of the rendered ServiceAccounts, SubjectAccessReviews, the rendered workloads'
command lines, dry-run applies, and the controller's Lease, pool status and webhook health."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from spidernet.testbed.gotools import ensure_kustomize
from spidernet.testbed.kubecluster import Cluster
from spidernet.testbed.kubeobjects import GROUP, VERSION

SYSTEM = "kube-system"
LEASE = "spidernet-controller"
WEBHOOK_SECRET = "spidernet-webhook-tls"


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build DIRECTORY` renders."""
    done = subprocess.run(
        [str(ensure_kustomize()), "build", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def token_kubeconfig(
    core: client.CoreV1Api, cluster: Cluster, account: str, directory: Path
) -> Path:
    """A kubeconfig with a TokenRequest token of kube-system/`account` (one hour)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    answer = core.create_namespaced_service_account_token(account, SYSTEM, request)
    assert answer.status is not None
    token = answer.status.token
    assert token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.files.ca_crt),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": account}}],
        "current-context": "c",
    }
    path = directory / f"{account}.kubeconfig"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def allowed(
    authz: client.AuthorizationV1Api,
    account: str,
    verb: str,
    resource: str,
    *,
    group: str = "",
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> bool:
    """Whether kube-system/`account` may do `verb` on `resource` (a SubjectAccessReview)."""
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{SYSTEM}:{account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{SYSTEM}"],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb,
                group=group,
                resource=resource,
                namespace=namespace,
                name=name,
                subresource=subresource,
            ),
        )
    )
    status = authz.create_subject_access_review(review).status
    assert status is not None
    return bool(status.allowed)


def manifest_command(rendered: list[dict[str, Any]], kind: str, container: str) -> list[str]:
    """The command of `container` in the rendered `kind`."""
    (workload,) = [d for d in rendered if d["kind"] == kind]
    (found,) = [
        c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == container
    ]
    command: list[str] = found["command"]
    return command


def without(argv: list[str], *flags: str) -> list[str]:
    """`argv` less each `FLAG VALUE` pair of `flags`."""
    out: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in flags:
            skip = True
        else:
            out.append(word)
    return out


def replaced(argv: list[str], flag: str, value: str) -> list[str]:
    """`argv` with the value of `flag` replaced."""
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def webhook_healthz(port: int, core: client.CoreV1Api) -> int:
    """The status of GET /healthz on the webhook, verified against the Secret's CA (0: none)."""
    try:
        secret = core.read_namespaced_secret(WEBHOOK_SECRET, SYSTEM)
    except ApiException as e:
        if e.status == 404:
            return 0
        raise
    assert secret.data is not None
    context = ssl.create_default_context(cadata=base64.b64decode(secret.data["ca.crt"]).decode())
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def ident(doc: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of a rendered object."""
    return (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])


def dry_apply(dyn: dynamic.DynamicClient, doc: dict[str, Any], namespace: str | None = None) -> Any:  # noqa: ANN401 - the dynamic client's answers have no annotations
    """A server-side apply that the API server checks in full and does not persist."""
    res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    ns = (namespace or doc["metadata"].get("namespace")) if res.namespaced else None
    return res.server_side_apply(
        body=doc,
        name=doc["metadata"]["name"],
        namespace=ns,
        field_manager="spidernet-test",
        force_conflicts=True,
        dry_run="All",
        query_params=[("fieldValidation", "Strict")],
    )


def controller_argv(
    rendered: list[dict[str, Any]], kubeconfig: Path, port: int, metrics_port: int, identity: str
) -> list[str]:
    """The Deployment's controller command line, on loopback ports, with `kubeconfig`'s token
    and the test's timings."""
    ctl_argv = manifest_command(rendered, "Deployment", "controller")
    assert ctl_argv[:2] == ["spidernet", "controller"]
    ctl_argv = replaced(ctl_argv, "--metrics-address", f"127.0.0.1:{metrics_port}")
    return [
        sys.executable,
        "-m",
        *replaced(ctl_argv, "--webhook-address", f"127.0.0.1:{port}"),
        *("--webhook-ip", "127.0.0.1"),
        *("--kubeconfig", str(kubeconfig)),
        *("--gc-interval", "0.5", "--gc-margin", "0", "--lease-duration", "3"),
        *("--identity", identity),
    ]


def lease_holder(coord: client.CoordinationV1Api) -> str | None:
    """Who holds the controller's Lease (None: no Lease)."""
    try:
        lease = coord.read_namespaced_lease(LEASE, SYSTEM)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return lease.spec.holder_identity if lease.spec else None


def allocated_count(custom: client.CustomObjectsApi, pool: str) -> object:
    """The pool's status.allocatedIPCount (None: not written yet)."""
    doc = custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", pool)
    assert isinstance(doc, dict)
    return doc.get("status", {}).get("allocatedIPCount")
