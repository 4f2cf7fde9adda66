"""The k8s test lanes' Kubernetes, as data: versions, go.mod files, command lines, file layout.

`kube-apiserver` and `etcd` (the k8s lane), and a node's kubelet, kube-proxy, kube-scheduler,
kube-controller-manager and kubectl (the node lane) are built with the machine's Go from the
module proxy, never from release tarballs. `go install k8s.io/kubernetes/cmd/kubelet@v1.x` is
refused because k8s.io/kubernetes's go.mod replaces its staging modules (k8s.io/api,
k8s.io/apiserver, ...) with directories of its own repository and requires them at v0.0.0. So
the build runs in a throw-away module that requires k8s.io/kubernetes and replaces each staging
module it requires with the published v0.<minor>.<patch> of the same release; etcd gets a
throw-away module too (its server module has `replace` directives of the same kind). Nothing
here runs a process: `kubebuild` builds, `kubecluster` runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The official Python client in pyproject (kubernetes==37.x) is generated for Kubernetes 1.37;
# k8s.io/kubernetes v1.37.x requires go.etcd.io/etcd/* v3.7.x.
KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.7.3"
GO_DIRECTIVE = "1.26.0"  # k8s.io/kubernetes v1.37's own `go` line
CACHE_ENV = "SPIDERNET_CACHE"
DEFAULT_CACHE_ROOT = Path("/var/cache/spidernet")
APISERVER_PACKAGE = "k8s.io/kubernetes/cmd/kube-apiserver"
# What a node runs beside the API server, each a main package k8s.io/kubernetes/cmd/<name>
# named as its binary; built together (one `go build` shares their compiled packages).
NODE_COMPONENTS = ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager", "kubectl")
ETCD_MODULE = "go.etcd.io/etcd/server/v3"  # its root package is etcd's main (server/main.go)
# Where component-base reads the version `kube-apiserver --version` prints; upstream's
# hack/lib/version.sh sets the same variables (and client-go's copy) with -X.
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
# A service-account issuer is mandatory since 1.20; the URL is only a name in issued tokens.
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Service ClusterIPs are only numbers the API server hands out; nothing routes them here.
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/24"
ADMIN_USER = "spidernet-test-admin"
ADMIN_GROUP = "system:masters"  # bound to cluster-admin by RBAC's bootstrap policy


def _argv(template: str, **values: object) -> list[str]:
    """Split `template` on whitespace, then fill each word: a value with spaces stays one word."""
    return [word.format(**values) for word in template.split()]


@dataclass(frozen=True)
class Versions:
    """The Kubernetes release and the etcd release built for it."""

    kubernetes: str = KUBERNETES_VERSION
    etcd: str = ETCD_VERSION

    @property
    def staging(self) -> str:
        """The staging modules' tag of this release: v1.37.2 -> v0.37.2."""
        return "v0." + self.kubernetes.removeprefix("v1.")

    @property
    def minor(self) -> str:
        """The minor version: v1.37.2 -> "37"."""
        return self.kubernetes.split(".")[1]


@dataclass(frozen=True)
class Layout:
    """Where the builds, binaries and Go caches live; all outside the repository."""

    root: Path
    versions: Versions = Versions()

    @property
    def release_dir(self) -> Path:
        """`<root>/k8s/<kubernetes version>`."""
        return self.root / "k8s" / self.versions.kubernetes

    @property
    def bin_dir(self) -> Path:
        """The cached binaries."""
        return self.release_dir / "bin"

    @property
    def apiserver(self) -> Path:
        """The kube-apiserver binary."""
        return self.bin_dir / "kube-apiserver"

    @property
    def etcd(self) -> Path:
        """The etcd binary."""
        return self.bin_dir / "etcd"

    def binary(self, name: str) -> Path:
        """The cached binary `name` (kube-apiserver, etcd, kubelet, kubectl, ...)."""
        return self.bin_dir / name

    @property
    def kubectl(self) -> Path:
        """The kubectl binary of this release (never a kubectl found on PATH)."""
        return self.binary("kubectl")

    @property
    def stage_dir(self) -> Path:
        """Where a multi-binary `go build` writes before each binary is checked and moved in."""
        return self.release_dir / "stage"

    @property
    def lock(self) -> Path:
        """Held while building, so two runs never build at once."""
        return self.release_dir / ".build.lock"

    def module_dir(self, name: str) -> Path:
        """The throw-away Go module that builds `name`."""
        return self.release_dir / "src" / name

    def build_log(self, name: str) -> Path:
        """What `go` printed while building `name`."""
        return self.release_dir / f"build-{name}.log"


def cache_root(env: Mapping[str, str]) -> Path:
    """$SPIDERNET_CACHE, else /var/cache/spidernet."""
    return Path(env[CACHE_ENV]) if env.get(CACHE_ENV) else DEFAULT_CACHE_ROOT


def go_env(layout: Layout, env: Mapping[str, str]) -> dict[str, str]:
    """The environment for `go`: caches under the cache root unless GOMODCACHE/GOCACHE are set,
    the machine's toolchain only, no cgo (upstream builds both binaries with CGO_ENABLED=0)."""
    out = dict(env)
    out.setdefault("GOMODCACHE", str(layout.root / "go" / "mod"))
    out.setdefault("GOCACHE", str(layout.root / "go" / "build"))
    # -mod=mod lets `go` complete the throw-away go.mod and go.sum itself; -buildvcs=false
    # because a cache root inside some repository must not stamp that repository's state.
    out.update(
        GOTOOLCHAIN="local", CGO_ENABLED="0", GOWORK="off", GOFLAGS="-mod=mod -buildvcs=false"
    )
    return out


_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", re.MULTILINE)
_REQUIRE_V0 = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+v0\.0\.0(?=\s|$)", re.MULTILINE)


def staging_modules(kubernetes_gomod: str) -> list[str]:
    """The staging modules k8s.io/kubernetes requires at v0.0.0 and replaces with a directory."""
    replaced = set(_REPLACE.findall(kubernetes_gomod))
    return sorted(m for m in set(_REQUIRE_V0.findall(kubernetes_gomod)) if m in replaced)


def component_package(name: str) -> str:
    """The main package of a Kubernetes component: kubelet -> k8s.io/kubernetes/cmd/kubelet."""
    return f"k8s.io/kubernetes/cmd/{name}"


def apiserver_gomod(versions: Versions, staging: list[str]) -> str:
    """The throw-away module that builds kube-apiserver from k8s.io/kubernetes."""
    return kubernetes_gomod(versions, staging, "kube-apiserver")


def kubernetes_gomod(versions: Versions, staging: list[str], purpose: str) -> str:
    """A throw-away module that requires k8s.io/kubernetes with its staging modules replaced by
    their releases; `purpose` only names the module (`spidernet.test/<purpose>-build`)."""
    replaces = "".join(f"\t{m} => {m} {versions.staging}\n" for m in staging)
    return (
        f"module spidernet.test/{purpose}-build\n\n"
        f"go {GO_DIRECTIVE}\n\n"
        f"godebug default=go{GO_DIRECTIVE.rsplit('.', 1)[0]}\n\n"
        f"require k8s.io/kubernetes {versions.kubernetes}\n\n"
        f"replace (\n{replaces})\n"
    )


def etcd_gomod(versions: Versions) -> str:
    """The throw-away module that builds etcd from its server module."""
    return (
        "module spidernet.test/etcd-build\n\n"
        f"go {GO_DIRECTIVE}\n\n"
        f"require {ETCD_MODULE} {versions.etcd}\n"
    )


def version_ldflags(versions: Versions, build_date: str) -> str:
    """-ldflags for every k8s.io/kubernetes binary: stripped, with the release's version stamped
    in (component-base's copy for `--version`, client-go's for `kubectl version --client`)."""
    flags = ["-s", "-w"]
    for pkg in VERSION_PACKAGES:
        flags += [
            f"-X {pkg}.gitVersion={versions.kubernetes}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={versions.minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={build_date}",
        ]
    return " ".join(flags)


def go_build_argv(go: str, package: str, output: Path, ldflags: str) -> list[str]:
    """`go build` at the lowest priority, with reproducible paths, into `output`."""
    return _argv(
        "nice -n 19 {go} build -trimpath -ldflags={ldflags} -o {output} {package}",
        go=go,
        ldflags=ldflags,
        output=output,
        package=package,
    )


def go_build_into_argv(go: str, packages: Sequence[str], out_dir: Path, ldflags: str) -> list[str]:
    """One `go build` of several main packages into directory `out_dir` (each binary named after
    its package's last element), so their shared packages are compiled, and looked up, once.
    The trailing slash makes `go` write into the directory even for a single package."""
    argv = _argv(
        "nice -n 19 {go} build -trimpath -ldflags={ldflags} -o {out_dir}/",
        go=go,
        ldflags=ldflags,
        out_dir=out_dir,
    )
    return argv + list(packages)


def version_argv(binary: Path) -> list[str]:
    """How a binary is asked its version: `kubectl version --client` (plain `kubectl version`
    also asks a server), `--version` for the others."""
    if binary.name == "kubectl":
        return [str(binary), "version", "--client"]
    return [str(binary), "--version"]


def reported_version(name: str, output: str) -> str | None:
    """The version binary `name` printed when asked (version_argv), as a tag (v1.37.2, v3.7.3),
    or None: `Kubernetes v1.37.2` from every component (component-base's verflag),
    `Client Version: v1.37.2` from kubectl, `etcd Version: 3.7.3` from etcd."""
    if name == "etcd":
        pattern = r"^etcd Version: (\S+)"
    elif name == "kubectl":
        pattern = r"^Client Version: (v\S+)"
    else:
        pattern = r"^Kubernetes (v\S+)"
    found = re.search(pattern, output, re.MULTILINE)
    if not found:
        return None
    return found.group(1) if found.group(1).startswith("v") else "v" + found.group(1)


@dataclass(frozen=True)
class Ports:
    """Loopback ports of one cluster."""

    etcd_client: int
    etcd_peer: int
    apiserver: int


@dataclass(frozen=True)
class ClusterFiles:
    """Everything one throw-away cluster writes, under one directory."""

    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "pki" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "pki" / "ca.key"

    def crt(self, name: str) -> Path:
        """A certificate signed by the cluster's CA (`server`, `admin`)."""
        return self.dir / "pki" / f"{name}.crt"

    def key(self, name: str) -> Path:
        """A private key (`server`, `admin`, `sa` for service-account tokens)."""
        return self.dir / "pki" / f"{name}.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "pki" / "sa.pub"

    @property
    def openssl_cnf(self) -> Path:
        return self.dir / "pki" / "openssl.cnf"

    @property
    def etcd_data(self) -> Path:
        return self.dir / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def log(self, name: str) -> Path:
        """Where a process's output goes."""
        return self.dir / f"{name}.log"


# openssl sections for the cluster's PKI; x509 v3 extensions as Go's crypto/x509 checks them.
OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
"""

# (name, subject, extension section) of each certificate the CA signs.
CERTIFICATES = (
    ("server", "/CN=kube-apiserver", "server"),
    ("admin", f"/O={ADMIN_GROUP}/CN={ADMIN_USER}", "client"),
)


def openssl_commands(files: ClusterFiles, serials: list[int]) -> list[list[str]]:
    """openssl command lines that make the CA, the signed certificates and the SA key pair."""
    genkey = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key}"
    cmds = [
        _argv(genkey, key=files.ca_key),
        _argv(
            "openssl req -x509 -new -config {cnf} -extensions ca -key {key}"
            " -subj /CN=spidernet-test-ca -days 7 -out {crt}",
            cnf=files.openssl_cnf,
            key=files.ca_key,
            crt=files.ca_crt,
        ),
    ]
    for (name, subject, section), serial in zip(CERTIFICATES, serials, strict=True):
        csr = Path(f"{files.crt(name)}.csr")
        cmds += [
            _argv(genkey, key=files.key(name)),
            _argv(
                "openssl req -new -config {cnf} -key {key} -subj {subject} -out {csr}",
                cnf=files.openssl_cnf,
                key=files.key(name),
                subject=subject,
                csr=csr,
            ),
            _argv(
                "openssl x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -set_serial {serial}"
                " -days 7 -extfile {cnf} -extensions {section} -out {crt}",
                csr=csr,
                ca=files.ca_crt,
                ca_key=files.ca_key,
                serial=serial,
                cnf=files.openssl_cnf,
                section=section,
                crt=files.crt(name),
            ),
        ]
    cmds += [
        _argv(genkey, key=files.key("sa")),
        _argv("openssl pkey -in {key} -pubout -out {pub}", key=files.key("sa"), pub=files.sa_pub),
    ]
    return cmds


def etcd_argv(binary: Path, files: ClusterFiles, ports: Ports) -> list[str]:
    """A one-member etcd on loopback, plain HTTP, no fsync (its data is thrown away)."""
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=test",
        f"--data-dir={files.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=test={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_argv(binary: Path, files: ClusterFiles, ports: Ports) -> list[str]:
    """kube-apiserver on the loopback secure port only, with the cluster's PKI and RBAC."""
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={files.dir / 'pki'}",
        f"--tls-cert-file={files.crt('server')}",
        f"--tls-private-key-file={files.key('server')}",
        f"--client-ca-file={files.ca_crt}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={files.sa_pub}",
        f"--service-account-signing-key-file={files.key('sa')}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--authorization-mode=RBAC",
        # As kubeadm and every CNI-capable cluster set it: a CNI agent's DaemonSet is
        # privileged (deploy/manifests/agent-daemonset.yaml); the default refuses it.
        "--allow-privileged=true",
        # The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoints validation
        # refuses (loopback); with no reconciler, nothing writes them.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


def kubeconfig(server: str, files: ClusterFiles) -> dict[str, Any]:
    """A kubeconfig for the admin identity (client certificate, group system:masters)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "spidernet-test",
                "cluster": {"server": server, "certificate-authority": str(files.ca_crt)},
            }
        ],
        "users": [
            {
                "name": ADMIN_USER,
                "user": {
                    "client-certificate": str(files.crt("admin")),
                    "client-key": str(files.key("admin")),
                },
            }
        ],
        "contexts": [
            {"name": "spidernet-test", "context": {"cluster": "spidernet-test", "user": ADMIN_USER}}
        ],
        "current-context": "spidernet-test",
    }


def kubectl_argv(kubectl: Path, kubeconfig: Path, args: Sequence[str]) -> list[str]:
    """`kubectl` of this release against one cluster: its kubeconfig named explicitly (never
    $KUBECONFIG or ~/.kube/config) and its discovery cache beside that kubeconfig, not in
    ~/.kube/cache."""
    return [
        str(kubectl),
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={kubeconfig.parent / 'kubectl-cache'}",
        *args,
    ]


def kubectl_env(env: Mapping[str, str]) -> dict[str, str]:
    """kubectl's environment: `env` with no KUBECONFIG (the flag names the cluster) and the
    user's ~/.kube/kuberc (aliases, default flags) turned off, as kubectl documents KUBERC=off."""
    out = {k: v for k, v in env.items() if k != "KUBECONFIG"}
    out["KUBERC"] = "off"
    return out
