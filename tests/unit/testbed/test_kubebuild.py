"""testbed/kubebuild.py and kubecluster.kubectl with stand-in binaries: what is found in the
cache, what is refused, how kubectl is called (no Go, no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spidernet.testbed.kubebuild import (
    BuildFailed,
    NodeBinaries,
    ensure_node_binaries,
    version_of,
)
from spidernet.testbed.kubecluster import Cluster, KubectlFailed, kubectl
from spidernet.testbed.kubespec import NODE_COMPONENTS, ClusterFiles, Layout, Versions

V = Versions("v1.37.2", "v3.7.3")


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _fake_node(layout: Layout, version: str) -> None:
    """Stand-ins that answer as the real binaries do when asked their version."""
    for name in NODE_COMPONENTS:
        if name == "kubectl":
            body = f'[ "$*" = "version --client" ] && echo "Client Version: {version}"'
        else:
            body = f'[ "$*" = "--version" ] && echo "Kubernetes {version}"'
        _script(layout.binary(name), body)


def test_version_of_asks_each_binary_its_own_way(tmp_path: Path) -> None:
    layout = Layout(tmp_path, V)
    _fake_node(layout, "v1.37.2")
    assert version_of(layout.kubectl) == "v1.37.2"
    assert version_of(layout.binary("kube-proxy")) == "v1.37.2"
    assert version_of(tmp_path / "missing") is None
    assert version_of(_script(tmp_path / "kubelet", "exit 1")) is None


def test_node_binaries_found_in_the_cache_are_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout(tmp_path, V)
    _fake_node(layout, "v1.37.2")
    monkeypatch.setenv("PATH", str(tmp_path / "no-go-here"))  # a build would fail
    said: list[str] = []
    found = ensure_node_binaries(layout, said.append)
    assert found == NodeBinaries(
        kubelet=layout.binary("kubelet"),
        kube_proxy=layout.binary("kube-proxy"),
        kube_scheduler=layout.binary("kube-scheduler"),
        kube_controller_manager=layout.binary("kube-controller-manager"),
        kubectl=layout.kubectl,
        versions=V,
    )
    assert said == []


def test_a_node_binary_of_another_version_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout(tmp_path, V)
    _fake_node(layout, "v1.37.2")
    _script(layout.binary("kube-scheduler"), 'echo "Kubernetes v1.36.0"')
    monkeypatch.setenv("PATH", str(tmp_path / "no-go-here"))
    with pytest.raises(BuildFailed, match=r"failed to build the node's .*: no `go` on PATH"):
        ensure_node_binaries(layout, lambda msg: None)


def _cluster(tmp_path: Path) -> Cluster:
    files = ClusterFiles(tmp_path / "cluster")
    files.dir.mkdir()
    return Cluster(
        server="https://127.0.0.1:1",
        kubeconfig=files.kubeconfig,
        files=files,
        versions=V,
        etcd_pid=0,
        apiserver_pid=0,
        ready_seconds=0.0,
    )


def test_kubectl_runs_the_given_binary_with_the_clusters_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _script(tmp_path / "kubectl", 'echo "$@"; echo "${KUBECONFIG-unset} $KUBERC"; cat')
    cluster = _cluster(tmp_path)
    monkeypatch.setenv("KUBECONFIG", "/home/u/.kube/config")
    done = kubectl(binary, cluster, ["apply", "-f", "-"], stdin="kind: Pod\n")
    assert done.stdout == (
        f"--kubeconfig={cluster.kubeconfig} --cache-dir={cluster.files.dir}/kubectl-cache"
        " apply -f -\nunset off\nkind: Pod\n"
    )


def test_kubectl_failure_says_what_it_ran_and_what_kubectl_said(tmp_path: Path) -> None:
    binary = _script(tmp_path / "kubectl", 'echo "error: no objects passed to apply" >&2; exit 1')
    cluster = _cluster(tmp_path)
    with pytest.raises(KubectlFailed) as e:
        kubectl(binary, cluster, ["apply", "-k", "deploy/"])
    assert str(e.value) == (
        "failed to run 'kubectl apply -k deploy/' (exit 1): error: no objects passed to apply"
    )
    assert kubectl(binary, cluster, ["get", "pods"], check=False).returncode == 1
