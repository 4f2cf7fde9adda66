"""The k8s lane's build recipe and command lines, as data (spidernet.testbed.kubespec)."""

from __future__ import annotations

from pathlib import Path

from spidernet.testbed.kubespec import (
    ADMIN_GROUP,
    NODE_COMPONENTS,
    ClusterFiles,
    Layout,
    Ports,
    Versions,
    apiserver_argv,
    apiserver_gomod,
    cache_root,
    component_package,
    etcd_argv,
    etcd_gomod,
    go_build_argv,
    go_build_into_argv,
    go_env,
    kubeconfig,
    kubectl_argv,
    kubectl_env,
    kubernetes_gomod,
    openssl_commands,
    reported_version,
    staging_modules,
    version_argv,
    version_ldflags,
)

# The shape of k8s.io/kubernetes's go.mod: staging modules required at v0.0.0 and replaced
# with directories; some replaced but not required; real dependencies at real versions.
KUBERNETES_GOMOD = """\
module k8s.io/kubernetes

go 1.26.0

require (
\tgithub.com/spf13/cobra v1.10.2
\tk8s.io/api v0.0.0
\tk8s.io/apiserver v0.0.0
\tk8s.io/kube-openapi v0.0.0-20260101000000-abcdef012345
)

require (
\tk8s.io/cri-streaming v0.0.0 // indirect
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apiserver => ./staging/src/k8s.io/apiserver
\tk8s.io/cri-streaming => ./staging/src/k8s.io/cri-streaming
\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller
)
"""

V = Versions("v1.37.2", "v3.7.3")
PORTS = Ports(etcd_client=40001, etcd_peer=40002, apiserver=40003)


def test_versions() -> None:
    assert V.staging == "v0.37.2"
    assert V.minor == "37"


def test_staging_modules_are_the_required_and_replaced_ones() -> None:
    assert staging_modules(KUBERNETES_GOMOD) == [
        "k8s.io/api",
        "k8s.io/apiserver",
        "k8s.io/cri-streaming",
    ]


def test_apiserver_gomod_replaces_each_staging_module_with_its_release() -> None:
    text = apiserver_gomod(V, ["k8s.io/api", "k8s.io/apiserver"])
    assert "require k8s.io/kubernetes v1.37.2\n" in text
    assert "\tk8s.io/api => k8s.io/api v0.37.2\n" in text
    assert "\tk8s.io/apiserver => k8s.io/apiserver v0.37.2\n" in text
    assert "go 1.26.0\n" in text
    assert "godebug default=go1.26\n" in text
    assert "require go.etcd.io/etcd/server/v3 v3.7.3\n" in etcd_gomod(V)


def test_node_module_is_the_apiserver_module_under_another_name() -> None:
    staging = ["k8s.io/api", "k8s.io/kubelet"]
    node = kubernetes_gomod(V, staging, "node")
    assert node.startswith("module spidernet.test/node-build\n")
    assert node.split("\n", 1)[1] == apiserver_gomod(V, staging).split("\n", 1)[1]
    assert "\tk8s.io/kubelet => k8s.io/kubelet v0.37.2\n" in node


def test_node_components_are_main_packages_of_kubernetes() -> None:
    assert NODE_COMPONENTS == (
        "kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager", "kubectl",
    )  # fmt: skip
    assert component_package("kubelet") == "k8s.io/kubernetes/cmd/kubelet"
    assert component_package("kubectl") == "k8s.io/kubernetes/cmd/kubectl"


def test_version_is_stamped_where_component_base_reads_it() -> None:
    flags = version_ldflags(V, "2026-10-27T12:01:04Z").split(" -X ")
    assert flags[0] == "-s -w"
    assert "k8s.io/component-base/version.gitVersion=v1.37.2" in flags
    assert "k8s.io/component-base/version.gitMinor=37" in flags
    assert "k8s.io/component-base/version.buildDate=2026-10-27T12:01:04Z" in flags
    # kubectl's `version --client` reads client-go's copy
    assert "k8s.io/client-go/pkg/version.gitVersion=v1.37.2" in flags


def test_reported_version() -> None:
    assert reported_version("kube-apiserver", "Kubernetes v1.37.2\n") == "v1.37.2"
    etcd_out = "etcd Version: 3.7.3\nGit SHA: Not provided\nGo Version: go1.26.8\n"
    assert reported_version("etcd", etcd_out) == "v3.7.3"
    assert reported_version("kube-apiserver", "Kubernetes v0.0.0-master+$Format:%H$") != "v1.37.2"
    assert reported_version("etcd", "bash: etcd: not found") is None


def test_reported_version_of_the_node_binaries() -> None:
    for name in ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"):
        assert reported_version(name, "Kubernetes v1.37.2\n") == "v1.37.2"
    kubectl_out = "Client Version: v1.37.2\nKustomize Version: v5.8.1\n"
    assert reported_version("kubectl", kubectl_out) == "v1.37.2"
    # an unstamped kubectl; and a kubectl that is not asked with `version --client`
    assert reported_version("kubectl", "Client Version: v0.0.0-master+$Format:%H$\n") != "v1.37.2"
    assert reported_version("kubectl", "Kubernetes v1.37.2\n") is None
    assert reported_version("kubelet", "Client Version: v1.37.2\n") is None


def test_version_argv() -> None:
    assert version_argv(Path("/b/kubectl")) == ["/b/kubectl", "version", "--client"]
    assert version_argv(Path("/b/kubelet")) == ["/b/kubelet", "--version"]
    assert version_argv(Path("/b/etcd")) == ["/b/etcd", "--version"]


def test_cache_and_go_env() -> None:
    assert cache_root({}) == Path("/var/cache/spidernet")
    assert cache_root({"SPIDERNET_CACHE": "/c"}) == Path("/c")
    layout = Layout(Path("/c"), V)
    assert layout.apiserver == Path("/c/k8s/v1.37.2/bin/kube-apiserver")
    assert layout.binary("kubelet") == Path("/c/k8s/v1.37.2/bin/kubelet")
    assert layout.kubectl == layout.binary("kubectl") == Path("/c/k8s/v1.37.2/bin/kubectl")
    assert layout.stage_dir.parent == layout.lock.parent == layout.release_dir
    assert layout.stage_dir != layout.bin_dir  # binaries move in only once checked
    env = go_env(layout, {"PATH": "/bin", "GOCACHE": "/mine"})
    assert env["GOMODCACHE"] == "/c/go/mod"
    assert env["GOCACHE"] == "/mine"  # a GOCACHE already set is kept
    assert env["GOTOOLCHAIN"] == "local"
    assert env["CGO_ENABLED"] == "0"
    assert env["PATH"] == "/bin"


def test_go_build_argv_keeps_a_path_with_spaces_whole() -> None:
    argv = go_build_argv("/go/bin/go", "k8s.io/x", Path("/a b/out"), "-s -w -X p.v=1")
    assert argv == [
        "nice", "-n", "19", "/go/bin/go", "build", "-trimpath", "-ldflags=-s -w -X p.v=1",
        "-o", "/a b/out", "k8s.io/x",
    ]  # fmt: skip


def test_go_build_into_argv_builds_every_package_into_one_directory() -> None:
    argv = go_build_into_argv("/go/bin/go", ["k8s.io/a", "k8s.io/b"], Path("/s d/stage"), "-s")
    assert argv == [
        "nice", "-n", "19", "/go/bin/go", "build", "-trimpath", "-ldflags=-s",
        "-o", "/s d/stage/", "k8s.io/a", "k8s.io/b",
    ]  # fmt: skip
    # the trailing slash makes `go` write into the directory for a single package too
    assert go_build_into_argv("go", ["k8s.io/a"], Path("/s"), "-s")[-2:] == ["/s/", "k8s.io/a"]


def test_kubectl_names_its_kubeconfig_and_keeps_its_cache_beside_it() -> None:
    argv = kubectl_argv(Path("/b/kubectl"), Path("/t d/kubeconfig"), ["apply", "-k", "deploy/"])
    assert argv == [
        "/b/kubectl", "--kubeconfig=/t d/kubeconfig", "--cache-dir=/t d/kubectl-cache",
        "apply", "-k", "deploy/",
    ]  # fmt: skip


def test_kubectl_env_ignores_the_users_kubeconfig_and_kuberc() -> None:
    env = kubectl_env({"PATH": "/bin", "KUBECONFIG": "/home/u/.kube/config", "KUBERC": "/x"})
    assert env == {"PATH": "/bin", "KUBERC": "off"}


def test_openssl_makes_the_ca_then_signs_server_and_admin() -> None:
    files = ClusterFiles(Path("/t d"))
    cmds = openssl_commands(files, [11, 22])
    assert cmds[0][:2] == ["openssl", "genpkey"]
    assert cmds[0][-1] == "/t d/pki/ca.key"
    signed = [c for c in cmds if c[1] == "x509"]
    assert [c[c.index("-extensions") + 1] for c in signed] == ["server", "client"]
    assert [c[c.index("-set_serial") + 1] for c in signed] == ["11", "22"]
    subjects = [c[c.index("-subj") + 1] for c in cmds if "-subj" in c]
    assert f"/O={ADMIN_GROUP}/CN=spidernet-test-admin" in subjects
    assert cmds[-1] == ["openssl", "pkey", "-in", "/t d/pki/sa.key", "-pubout", "-out",
                        "/t d/pki/sa.pub"]  # fmt: skip


def test_etcd_listens_on_loopback_only() -> None:
    argv = etcd_argv(Path("/b/etcd"), ClusterFiles(Path("/t")), PORTS)
    urls = [a.split("=", 1)[1] for a in argv if "-urls=" in a]
    assert len(urls) == 4
    assert all(u.startswith("http://127.0.0.1:") for u in urls)
    assert "--data-dir=/t/etcd" in argv


def test_apiserver_serves_tls_on_loopback_with_rbac_and_service_accounts() -> None:
    argv = apiserver_argv(Path("/b/kube-apiserver"), ClusterFiles(Path("/t")), PORTS)
    flags = dict(a.split("=", 1) for a in argv[1:])
    assert flags["--etcd-servers"] == "http://127.0.0.1:40001"
    assert flags["--bind-address"] == "127.0.0.1"
    assert flags["--secure-port"] == "40003"
    assert flags["--authorization-mode"] == "RBAC"
    assert flags["--client-ca-file"] == "/t/pki/ca.crt"
    assert flags["--tls-cert-file"] == "/t/pki/server.crt"
    assert flags["--service-account-signing-key-file"] == "/t/pki/sa.key"
    assert flags["--service-account-key-file"] == "/t/pki/sa.pub"
    assert flags["--service-account-issuer"].startswith("https://")


def test_kubeconfig_names_the_admin_certificate_and_the_ca() -> None:
    doc = kubeconfig("https://127.0.0.1:40003", ClusterFiles(Path("/t")))
    (cluster,) = doc["clusters"]
    (user,) = doc["users"]
    assert cluster["cluster"] == {
        "server": "https://127.0.0.1:40003",
        "certificate-authority": "/t/pki/ca.crt",
    }
    assert user["user"] == {"client-certificate": "/t/pki/admin.crt",
                            "client-key": "/t/pki/admin.key"}  # fmt: skip
    assert doc["current-context"] == doc["contexts"][0]["name"]
