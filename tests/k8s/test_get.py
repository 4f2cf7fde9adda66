"""`spidernet get` on the real API server, as a user runs it (a process, a kubeconfig):
-A, -l sent to the server, AGE, the CRDs' columns, -o yaml that `kubectl apply -f` takes back,
and --watch seeing a create, ended by Ctrl-C (exit 130, no traceback)."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from spidernet.testbed.kubecluster import Cluster

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
KUBECTL = shutil.which("kubectl")


def spidernet(kubeconfig: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spidernet", *argv, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def multus_config(name: str, team: str) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderMultusConfig",
        "metadata": {"name": name, "labels": {"team": team}},
        "spec": {"cniType": "custom", "enableCoordinator": False},
    }


@pytest.fixture
def team(custom: client.CustomObjectsApi, store_crds: list[str]) -> Iterator[str]:
    """A label value of this test's own; its SpiderIPPools are removed afterwards."""
    value = f"t{uuid.uuid4().hex[:8]}"
    yield value
    pools: Any = custom.list_cluster_custom_object(
        GROUP, VERSION, "spiderippools", label_selector=f"team={value}"
    )
    for pool in pools["items"]:
        custom.delete_cluster_custom_object(
            GROUP, VERSION, "spiderippools", pool["metadata"]["name"]
        )


def test_get_all_namespaces_selected_and_applied_back(
    k8s_cluster: Cluster, custom: client.CustomObjectsApi, namespace: str, team: str
) -> None:
    kubeconfig = k8s_cluster.kubeconfig
    for name, label in (("mine", team), ("other", "nobody")):
        body = multus_config(name, label)
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "spidermultusconfigs", body
        )
    pool = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderIPPool",
        "metadata": {"name": f"{team}-p4", "labels": {"team": team}},
        "spec": {"subnet": "10.77.0.0/24", "ips": ["10.77.0.10-10.77.0.19"], "default": True},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", pool)

    # -A and -l: the server selects; a NAMESPACE column, the CRD's columns and AGE.
    shown = spidernet(kubeconfig, "get", "smc", "-A", "-l", f"team={team}")
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "CNI-TYPE", "COORDINATOR", "AGE"]
    (row,) = rows
    *cells, age = row.split()
    assert cells == [namespace, "mine", "custom", "false"]
    assert age.endswith("s")
    assert 0 <= int(age[:-1]) < 60
    # A cluster-scoped kind: no NAMESPACE column; -o wide adds the priority columns.
    wide = spidernet(kubeconfig, "get", "sp", "-l", f"team={team}", "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    header, row = wide.stdout.splitlines()
    assert header.split()[:6] == ["NAME", "VERSION", "SUBNET", "ALLOCATED-IP-COUNT",
                                  "TOTAL-IP-COUNT", "DEFAULT"]  # fmt: skip
    assert header.split()[-1] == "AGE"
    assert row.split()[0] == f"{team}-p4"
    assert "10.77.0.0/24" in row.split()
    named = spidernet(kubeconfig, "get", "smc", "-n", namespace, "-o", "name")
    assert named.stdout.splitlines() == [
        "spidermultusconfig.spiderpool.spidernet.io/mine",
        "spidermultusconfig.spiderpool.spidernet.io/other",
    ]
    # A selector the server would refuse is a usage error here, before anything is sent.
    bad = spidernet(kubeconfig, "get", "sp", "-l", "team in team")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert "Traceback" not in bad.stderr

    # -o yaml: a v1 List without the server's fields, which kubectl apply takes back.
    listed = spidernet(
        kubeconfig, "get", "smc", "-n", namespace, "-l", f"team={team}", "-o", "yaml"
    )
    assert listed.returncode == 0, listed.stderr
    doc = yaml.safe_load(listed.stdout)
    assert (doc["apiVersion"], doc["kind"], len(doc["items"])) == ("v1", "List", 1)
    assert set(doc["items"][0]["metadata"]) == {"name", "namespace", "labels"}
    pools = spidernet(kubeconfig, "get", "sp", "-l", f"team={team}", "-o", "json")
    assert pools.returncode == 0, pools.stderr
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "spidermultusconfigs", "mine")
    custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", f"{team}-p4")
    if KUBECTL is None:
        pytest.skip("no kubectl to apply the output back")
    for text in (listed.stdout, pools.stdout):
        applied = subprocess.run(
            [KUBECTL, "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
            input=text, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
    back: Any = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "spidermultusconfigs", "mine"
    )
    assert back["spec"]["cniType"] == "custom"
    assert back["metadata"]["labels"] == {"team": team}
    again = spidernet(kubeconfig, "get", "sp", f"{team}-p4", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load(again.stdout)["spec"]["ips"] == ["10.77.0.10-10.77.0.19"]


def lines_of(stream: object) -> queue.Queue[str]:
    """The lines a process writes, as they come (a reader thread)."""
    out: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            out.put(line)

    threading.Thread(target=read, daemon=True).start()
    return out


def read_until(lines: queue.Queue[str], text: str, timeout: float = 30.0) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
        if text in seen[-1]:
            return seen
    pytest.fail(f"{text!r} not seen in {timeout:.0f}s; saw {seen}")


def test_watch_prints_a_create_and_ends_quietly_on_ctrl_c(
    k8s_cluster: Cluster, custom: client.CustomObjectsApi, namespace: str, store_crds: list[str]
) -> None:
    argv = [sys.executable, "-m", "spidernet", "get", "smc", "-n", namespace, "--watch",
            "--output-watch-events", "--kubeconfig", str(k8s_cluster.kubeconfig)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        errors = lines_of(proc.stderr)
        out = lines_of(proc.stdout)
        read_until(errors, "No resources found")  # the listing is done; the watch runs
        body = multus_config("late", "x")
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "spidermultusconfigs", body
        )
        header, row = read_until(out, "late")
        assert header.split() == ["EVENT", "NAME", "CNI-TYPE", "COORDINATOR", "AGE"]
        assert row.split()[:4] == ["ADDED", "late", "custom", "false"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        time.sleep(0.2)  # (the reader threads drain what is left)
        rest = []
        while not errors.empty():
            rest.append(errors.get())
        assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
