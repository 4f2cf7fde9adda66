"""The embedded store's GC through the real service: a sandbox whose network namespace
vanished without a DEL (a runtime whose cleanup failed) has its addresses released after
the grace; a live one is kept, also when only another mount namespace has a path to it (a
runtime with private mounts); `spidernet gc` says what and why."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spidernet.node import netns
from spidernet.node.lab.runtime import Outcome, invoke
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology
from spidernet.testbed.conflists import macvlan, plugin_conf, spidernet_ipam
from spidernet.testbed.pools import allocated
from spidernet.testbed.pools import ippool as pool
from spidernet.testbed.waiting import wait_for


def conf(svc: ServiceProcess) -> dict[str, object]:
    return plugin_conf(macvlan(spidernet_ipam(svc.socket, default_ipv4_ippool=["gc"])))


def call(
    exe: str, command: str, svc: ServiceProcess, pod: str, path: str, mount_ns: str | None = None
) -> Outcome:
    return invoke(
        exe,
        command,
        conf(svc),
        container_id=f"ctr-{pod}",
        netns_path=path,
        ifname="eth0",
        cni_args=f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}",
        mount_ns=mount_ns,
    )


def gc(svc: ServiceProcess, *args: str) -> dict[str, Any]:
    """`spidernet gc -o json` as an operator runs it."""
    out = subprocess.run(
        [sys.executable, "-m", "spidernet", "gc", "--socket", str(svc.socket), "-o", "json", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


def states(answer: dict[str, Any]) -> dict[str, str]:
    return {e["endpoint"]: e["state"] for e in answer["endpoints"]}


def test_the_gc_releases_what_a_vanished_sandbox_held_and_keeps_live_ones(
    cni_path: tuple[str, ...],
    topo: Topology,
    start_service: Callable[..., ServiceProcess],
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    svc = start_service("--gc-interval", "0.5", "--gc-grace", "1")
    client = svc.client
    client.request("POST", "/v1/resources", pool("gc", "10.34.0.0/24", ["10.34.0.10-10.34.0.99"]))
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    gone, kept = topo.namespace("gone"), topo.namespace("kept")
    # A sandbox whose namespace is mounted only where a runtime with private mounts sees it.
    holder = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs spidernet-test /run/netns && ip netns add hidden && echo ready "
            "&& exec sleep 600",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        hidden_mnt = f"/proc/{holder.pid}/ns/mnt"
        assert call(exe, "ADD", svc, "gone", netns.path_of(gone)).ok
        assert call(exe, "ADD", svc, "kept", netns.path_of(kept)).ok
        assert call(exe, "ADD", svc, "hidden", "/run/netns/hidden", hidden_mnt).ok
        assert allocated(client, "gc") == 3
        assert set(states(gc(svc)).values()) == {"live"}

        # The runtime removes a sandbox without DEL.
        netns.remove(gone)
        topo.created.remove(gone)
        start = time.monotonic()
        wait_for("the GC to release default/gone", lambda: gc(svc)["released"] != [])
        record_testsuite_property("gc_released_after_s", round(time.monotonic() - start, 1))
        answer = gc(svc)
        (released,) = answer["released"]
        assert released["endpoint"] == "default/gone"
        assert released["container"] == "ctr-gone"
        assert released["state"] == "orphan"
        assert "is held by no process, mount or descriptor on this host" in released["reason"]
        assert states(answer) == {"default/kept": "live", "default/hidden": "live"}
        assert allocated(client, "gc") == 2
        assert "gc: released default/gone (container ctr-gone, 10.34.0." in svc.log.read_text()
        # The runtime's late DEL finds nothing and succeeds.
        assert call(exe, "DEL", svc, "gone", netns.path_of(gone)).ok
        assert allocated(client, "gc") == 2
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    # The private mount namespace is gone, and with it the hidden namespace: a pass now,
    # without grace, releases it; the live one stays.
    answer = gc(svc, "--now", "--grace", "0")
    assert answer["ran"] is True
    assert [r["endpoint"] for r in answer["released"]] == ["default/hidden", "default/gone"]
    assert states(answer) == {"default/kept": "live", "default/hidden": "orphan"}
    assert states(gc(svc)) == {"default/kept": "live"}
    assert allocated(client, "gc") == 1
    assert call(exe, "DEL", svc, "kept", netns.path_of(kept)).ok
    assert allocated(client, "gc") == 0
    # The table an operator reads.
    table = subprocess.run(
        [sys.executable, "-m", "spidernet", "gc", "--socket", str(svc.socket)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "every 0.5 s (0: only when asked), grace 1 s" in table
    assert "RELEASED (newest first)" in table
    assert "default/hidden" in table


def test_after_a_reboot_the_store_lets_go_of_every_vanished_sandbox(
    cni_path: tuple[str, ...], topo: Topology, start_service: Callable[..., ServiceProcess]
) -> None:
    svc = start_service("--gc-interval", "0.5", "--gc-grace", "1")
    client = svc.client
    client.request("POST", "/v1/resources", pool("gc", "10.35.0.0/24", ["10.35.0.10-10.35.0.99"]))
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    pods = [topo.namespace(f"r{i}") for i in range(3)]
    for name in pods:
        assert call(exe, "ADD", svc, name, netns.path_of(name)).ok
    assert allocated(client, "gc") == 3
    # Power off: the agent dies without a word, and every pod namespace with the node.
    svc.kill()
    for name in pods:
        netns.remove(name)
        topo.created.remove(name)
    # Back up: the service finds its store as it was, and releases all of it after the grace.
    svc.start()
    assert allocated(client, "gc") == 3
    wait_for("the GC to release all three", lambda: allocated(client, "gc") == 0)
    assert sorted(r["endpoint"] for r in gc(svc)["released"]) == [
        f"default/{n}" for n in sorted(pods)
    ]
