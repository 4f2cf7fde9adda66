"""The node lane's node as data, its PKI: the certificates its CA signs, the openssl command
lines that make them, and each identity's kubeconfig (the node itself: nodespec.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spidernet.testbed.kubespec import kubeconfig
from spidernet.testbed.nodespec import (
    KUBERNETES_SERVICE_IP,
    NODE_IP,
    NODE_NAME,
    NodeFiles,
    server_url,
)


@dataclass(frozen=True)
class Cert:
    """One certificate the node's CA signs: a server's (with its subject alternative names)
    or a client's (its CN is the user, each O a group)."""

    name: str
    subject: str
    server: bool = False
    sans: tuple[str, ...] = ()


# The API server serves the names in-cluster clients dial: the `kubernetes` Service's
# ClusterIP and DNS names, the node's address, loopback.
CERTS = (
    Cert(
        "apiserver",
        "/CN=kube-apiserver",
        server=True,
        sans=(
            "IP:127.0.0.1",
            f"IP:{NODE_IP}",
            f"IP:{KUBERNETES_SERVICE_IP}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ),
    ),
    Cert("admin", "/O=system:masters/CN=spidernet-node-admin"),
    Cert("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"),
    Cert("controller-manager", "/CN=system:kube-controller-manager"),
    Cert("scheduler", "/CN=system:kube-scheduler"),
    Cert("kube-proxy", "/CN=system:kube-proxy"),
    Cert("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}"),
    Cert("multus", "/CN=spidernet-node-multus"),
)
# The identities that get a kubeconfig (kube-apiserver itself and its kubelet client do not).
KUBECONFIG_USERS = ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet", "multus")


def openssl_cnf(certs: Sequence[Cert]) -> str:
    """openssl sections: the CA's, then one extension section per certificate (`ext_NAME`)."""
    out = [
        "[req]",
        "distinguished_name = dn",
        "prompt = no",
        "[dn]",
        "CN = unused",
        "[ca]",
        "basicConstraints = critical,CA:TRUE",
        "keyUsage = critical,keyCertSign,cRLSign",
        "subjectKeyIdentifier = hash",
    ]
    for cert in certs:
        out += [
            f"[ext_{cert.name}]",
            "basicConstraints = critical,CA:FALSE",
            "keyUsage = critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage = {'serverAuth' if cert.server else 'clientAuth'}",
        ]
        if cert.sans:
            out.append(f"subjectAltName = {','.join(cert.sans)}")
    return "\n".join(out) + "\n"


def _argv(template: str, **values: object) -> list[str]:
    """Split `template` on whitespace, then fill each word (a value stays one word)."""
    return [word.format(**values) for word in template.split()]


def pki_commands(
    files: NodeFiles, certs: Sequence[Cert], serials: Sequence[int]
) -> list[list[str]]:
    """openssl command lines: the CA, each certificate in `certs` and the service-account key
    pair (EC P-256 throughout, as Go's crypto/x509 and kubeadm accept)."""
    genkey = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key}"
    cnf = files.openssl_cnf
    cmds = [
        _argv(genkey, key=files.ca_key),
        _argv(
            "openssl req -x509 -new -config {cnf} -extensions ca -key {key}"
            " -subj /CN=spidernet-node-ca -days 7 -out {crt}",
            cnf=cnf,
            key=files.ca_key,
            crt=files.ca_crt,
        ),
    ]
    for cert, serial in zip(certs, serials, strict=True):
        csr = f"{files.crt(cert.name)}.csr"
        cmds += [
            _argv(genkey, key=files.key(cert.name)),
            _argv(
                "openssl req -new -config {cnf} -key {key} -subj {subject} -out {csr}",
                cnf=cnf,
                key=files.key(cert.name),
                subject=cert.subject,
                csr=csr,
            ),
            _argv(
                "openssl x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -set_serial {serial}"
                " -days 7 -extfile {cnf} -extensions ext_{name} -out {crt}",
                csr=csr,
                ca=files.ca_crt,
                ca_key=files.ca_key,
                serial=serial,
                cnf=cnf,
                name=cert.name,
                crt=files.crt(cert.name),
            ),
        ]
    cmds += [
        _argv(genkey, key=files.key("sa")),
        _argv("openssl pkey -in {key} -pubout -out {pub}", key=files.key("sa"), pub=files.sa_pub),
    ]
    return cmds


def node_kubeconfig(files: NodeFiles, user: str) -> dict[str, Any]:
    """The kubeconfig of `user` (its client certificate) for the node's API server."""
    doc = kubeconfig(server_url(), files)
    doc["users"][0]["user"] = {
        "client-certificate": str(files.crt(user)),
        "client-key": str(files.key(user)),
    }
    return doc


__all__ = ["CERTS", "KUBECONFIG_USERS", "Cert", "node_kubeconfig", "openssl_cnf", "pki_commands"]
