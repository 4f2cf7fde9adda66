"""The control service in-process (trio): its routes over a real unix socket and SQLite
file, the peer check, metrics on loopback, and graceful shutdown."""

from __future__ import annotations

import io
import json
import logging
import shutil
import socket
import tempfile
import threading
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from spidernet.cni import forward
from spidernet.control.client import Client, ServiceError, ServiceUnreachable
from spidernet.control.http import Peer, Request
from spidernet.control.store.base import Key
from spidernet.control.store.embedded import EmbeddedStore
from spidernet.netconf.coordinator.config import parse_coordinator
from spidernet.node.agent.app import App
from spidernet.node.agent.ipam import IpamCore
from spidernet.node.agent.serve import AgentStartError as StartError
from spidernet.node.agent.serve import Ready, ServeConfig, serve

POOL = {
    "apiVersion": "spiderpool.spidernet.io/v2beta1",
    "kind": "SpiderIPPool",
    "metadata": {"name": "p4"},
    "spec": {"subnet": "10.5.0.0/24", "ips": ["10.5.0.10-10.5.0.20"], "gateway": "10.5.0.1"},
}


class Running:
    def __init__(self, ready: Ready, stop: trio.Event, base: Path) -> None:
        self.ready = ready
        self.stop = stop
        self.base = base
        self.client = Client(ready.socket, timeout=10)

    async def call(self, method: str, url: str, body: object = None) -> Any:
        return await trio.to_thread.run_sync(self.client.request, method, url, body)


@pytest.fixture
async def svc() -> AsyncIterator[Running]:
    base = Path(tempfile.mkdtemp(prefix="snt-unit-"))
    config = ServeConfig(
        socket=base / "s.sock", state_dir=base / "state", metrics=("127.0.0.1", 0), node="n1"
    )
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            ready = await nursery.start(serve, config, stop)
            yield Running(ready, stop, base)
            stop.set()
    finally:
        shutil.rmtree(base)


async def test_apply_get_and_delete_a_pool(svc: Running) -> None:
    assert (await svc.call("POST", "/v1/resources", POOL))["action"] == "created"
    assert (await svc.call("POST", "/v1/resources", POOL))["action"] == "unchanged"
    changed = json.loads(json.dumps(POOL))
    changed["spec"]["ips"] = ["10.5.0.10-10.5.0.30"]
    assert (await svc.call("POST", "/v1/resources", changed))["action"] == "configured"
    got = await svc.call("GET", "/v1/resources/SpiderIPPool/p4")
    assert got["spec"]["ips"] == ["10.5.0.10-10.5.0.30"]
    assert got["status"] == {"allocatedIPCount": 0, "totalIPCount": 21}
    listed = await svc.call("GET", "/v1/resources/SpiderIPPool")
    assert [d["metadata"]["name"] for d in listed["items"]] == ["p4"]
    await svc.call("DELETE", "/v1/resources/SpiderIPPool/p4")
    with pytest.raises(ServiceError) as info:
        await svc.call("GET", "/v1/resources/SpiderIPPool/p4")
    assert info.value.status == 404


async def test_invalid_resources_are_rejected_with_the_field(svc: Running) -> None:
    bad = json.loads(json.dumps(POOL))
    bad["spec"]["gateway"] = "10.5.0.15"
    with pytest.raises(ServiceError) as info:
        await svc.call("POST", "/v1/resources", bad)
    assert info.value.status == 422
    assert "SpiderIPPool 'p4'" in info.value.message
    assert "spec.gateway" in info.value.message
    overlap = json.loads(json.dumps(POOL))
    await svc.call("POST", "/v1/resources", POOL)
    overlap["metadata"]["name"] = "p5"
    overlap["spec"]["subnet"] = "10.5.0.0/16"
    overlap["spec"]["ips"] = ["10.5.1.1"]
    overlap["spec"].pop("gateway")
    with pytest.raises(ServiceError) as info:
        await svc.call("POST", "/v1/resources", overlap)
    assert "spec.subnet" in info.value.message


async def test_allocations_block_pool_delete_and_ip_removal(svc: Running) -> None:
    await svc.call("POST", "/v1/resources", POOL)
    body = {
        "containerID": "c1",
        "ifName": "eth0",
        "podNamespace": "ns",
        "podName": "a",
        "defaultIPv4IPPool": ["p4"],
    }
    answer = await svc.call("POST", "/v1/ipam/allocate", body)
    address = answer["ips"][0]["address"]
    assert answer["ips"][0]["gateway"] == "10.5.0.1"
    with pytest.raises(ServiceError) as info:
        await svc.call("DELETE", "/v1/resources/SpiderIPPool/p4")
    assert "with 1 allocated IPs" in info.value.message
    shrunk = json.loads(json.dumps(POOL))
    shrunk["spec"]["excludeIPs"] = [address.split("/")[0]]
    with pytest.raises(ServiceError) as info:
        await svc.call("POST", "/v1/resources", shrunk)
    assert address.split("/")[0] in info.value.message
    endpoint = await svc.call("GET", "/v1/endpoints/ns/a")
    assert endpoint["status"]["current"]["ips"][0]["ipv4"] == address
    assert endpoint["status"]["current"]["node"] == "n1"
    pool = await svc.call("GET", "/v1/resources/SpiderIPPool/p4")
    allocations = json.loads(pool["status"]["allocatedIPs"])
    assert allocations == {address.split("/")[0]: {"pod": "ns/a", "podUid": ""}}
    await svc.call("POST", "/v1/ipam/release", body)
    await svc.call("DELETE", "/v1/resources/SpiderIPPool/p4")


async def test_coordinator_config_defaults_and_pod_override(svc: Running) -> None:
    spec = await svc.call("GET", "/v1/coordinator/config")
    assert spec["mode"] == "auto"
    assert spec["hostRuleTable"] == 500
    coordinator = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderCoordinator",
        "metadata": {"name": "default"},
        "spec": {"mode": "underlay", "podDefaultRouteNIC": "eth0", "hostRuleTable": 600},
    }
    await svc.call("POST", "/v1/resources", coordinator)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "a",
            "namespace": "ns",
            "annotations": {"ipam.spidernet.io/default-route-nic": "net1"},
        },
    }
    await svc.call("POST", "/v1/resources", pod)
    spec = await svc.call("GET", "/v1/coordinator/config?podNamespace=ns&podName=a")
    assert (spec["mode"], spec["hostRuleTable"], spec["podDefaultRouteNIC"]) == (
        "underlay",
        600,
        "eth0",
    )
    assert spec["podAnnotations"] == {"ipam.spidernet.io/default-route-nic": "net1"}


async def test_unknown_routes_and_bad_bodies(svc: Running) -> None:
    for method, url, status in (
        ("GET", "/v1/nothing", 404),
        ("GET", "/v1/resources/Bogus", 404),
        ("POST", "/v1/ipam/allocate", 400),
    ):
        with pytest.raises(ServiceError) as info:
            await svc.call(method, url, {} if method == "POST" else None)
        assert info.value.status == status


async def test_metrics_are_served_on_loopback(svc: Running) -> None:
    await svc.call("POST", "/v1/resources", POOL)
    url = f"http://127.0.0.1:{svc.ready.metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=10) as r:
            return str(r.read().decode())

    text = await trio.to_thread.run_sync(scrape)
    assert 'spidernet_ippool_total_ips{pool="p4"} 11.0' in text
    assert "spidernet_ipam_allocation_duration_seconds_bucket" in text


async def test_forwarded_cni_calls_are_timed_by_plugin_verb_and_outcome(
    svc: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spidernet.cni")
    await svc.call("POST", "/v1/resources", POOL)
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "n", "type": "macvlan"}
    conf["ipam"] = {"type": "spidernet-ipam", "default_ipv4_ippool": ["p4"]}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c9", "CNI_IFNAME": "eth0"}
    env["CNI_NETNS"] = "/run/netns/none"
    bad = {**env, "CNI_COMMAND": "DEL", "CNI_IFNAME": ""}  # DEL needs CNI_IFNAME: error 4

    def post(environ: dict[str, str]) -> bytes:
        body = json.dumps(conf).encode()
        raw = forward.request_bytes("spidernet-ipam", environ, body)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(svc.ready.socket))
            s.sendall(raw)
            return b"".join(iter(lambda: s.recv(65536), b""))

    assert b"Cni-Exit: 0" in await trio.to_thread.run_sync(post, env)
    assert b"Cni-Exit: 1" in await trio.to_thread.run_sync(post, bad)
    url = f"http://127.0.0.1:{svc.ready.metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=10) as r:
            return str(r.read().decode())

    text = await trio.to_thread.run_sync(scrape)
    count = "spidernet_cni_request_duration_seconds_count"
    ok = f'{count}{{command="ADD",outcome="ok",plugin="spidernet-ipam"}} 1.0'
    failed = f'{count}{{command="DEL",outcome="error",plugin="spidernet-ipam"}} 1.0'
    assert ok in text
    assert failed in text
    # And a log line each: who, what, how it ended (the facts as fields, for a shipper).
    lines = [r for r in caplog.records if r.name == "spidernet.cni"]
    assert [(r.levelname, r.getMessage()) for r in lines] == [
        ("INFO", "cni ADD spidernet-ipam: ok"),
        ("WARNING", "cni DEL spidernet-ipam: error 4: required env variables [CNI_IFNAME] missing"),
    ]
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert {k: fields[k] for k in ("plugin", "command", "container", "ifname", "outcome")} == {
        "plugin": "spidernet-ipam",
        "command": "ADD",
        "container": "c9",
        "ifname": "eth0",
        "outcome": "ok",
    }
    assert lines[1].fields["code"] == 4  # type: ignore[attr-defined]


async def test_a_second_service_on_the_same_socket_is_refused(svc: Running) -> None:
    config = ServeConfig(socket=svc.ready.socket, state_dir=svc.base / "other", metrics=None)
    with pytest.raises(StartError, match="already listens"):
        await serve(config, trio.Event())


async def test_kubernetes_mode_without_a_cluster_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = ServeConfig(socket=tmp_path / "s.sock", state_dir=tmp_path, metrics=None, kube=True)
    with pytest.raises(StartError, match="Kubernetes API server: no kubeconfig"):
        await serve(config, trio.Event())
    assert not config.socket.exists()


async def test_stop_removes_the_socket(svc: Running) -> None:
    svc.stop.set()
    with trio.fail_after(10):
        while svc.ready.socket.exists():  # noqa: ASYNC110 (polls a file, not a task)
            await trio.sleep(0.01)
    with pytest.raises(ServiceUnreachable, match="not reachable"):
        await svc.call("GET", "/v1/healthz")


async def test_callers_of_other_users_are_refused(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "db")
    core = IpamCore(store, node="n")
    app = App(store, core, allowed_uids=frozenset({0}))
    request = Request("GET", "/v1/healthz", {}, [], b"", Peer(pid=1, uid=1000, gid=1000))
    response = await app(request)
    assert response.status == 403
    assert b"uid 1000" in response.body
    ok = await app(Request("GET", "/v1/healthz", {}, [], b"", Peer(pid=1, uid=0, gid=0)))
    assert ok.status == 200
    store.close()


async def test_cli_apply_get_delete(svc: Running, tmp_path: Path) -> None:
    from spidernet.control import commands

    docs = tmp_path / "docs.yaml"
    bad = json.loads(json.dumps(POOL))
    bad["metadata"]["name"] = "bad"
    bad["spec"]["subnet"] = "10.6.0.1/24"
    docs.write_text(json.dumps(POOL) + "\n---\n" + json.dumps(bad) + "\n")
    out = io.StringIO()
    status = await trio.to_thread.run_sync(lambda: commands.apply(svc.client, str(docs), out))
    assert status == 1  # one document was rejected; the other still applied
    assert out.getvalue() == "spiderippool/p4 created\n"
    table = io.StringIO()
    status = await trio.to_thread.run_sync(
        lambda: commands.get(svc.client, "sp", None, None, output="table", out=table)
    )
    assert status == 0
    header, _, row = table.getvalue().splitlines()[:3]
    assert header.split() == [
        "NAME",
        "VERSION",
        "SUBNET",
        "ALLOCATED-IP-COUNT",
        "TOTAL-IP-COUNT",
        "DEFAULT",
    ]
    assert row.split() == ["p4", "4", "10.5.0.0/24", "0", "11", "false"]
    as_yaml = io.StringIO()
    await trio.to_thread.run_sync(
        lambda: commands.get(svc.client, "pools", "p4", None, output="yaml", out=as_yaml)
    )
    assert "subnet: 10.5.0.0/24" in as_yaml.getvalue()
    gone = io.StringIO()
    status = await trio.to_thread.run_sync(
        lambda: commands.delete(svc.client, "pool", "p4", None, out=gone)
    )
    assert (status, gone.getvalue()) == (0, "spiderippool/p4 deleted\n")
    assert (
        await trio.to_thread.run_sync(
            lambda: commands.get(svc.client, "nope", None, None, output="json")
        )
        == 2
    )


def test_the_callers_namespace_is_ours_or_a_path() -> None:
    import os

    from spidernet.node.agent.app import caller_netns

    assert caller_netns(os.getpid()) is None  # the service's own namespace: no fork needed
    assert caller_netns(2**22 + 12345) == f"/proc/{2**22 + 12345}/ns/net"  # no such pid


def test_an_answer_cut_short_is_unreachable_not_a_traceback(tmp_path: Path) -> None:
    # The service killed after its head went out: the rest of the body never comes.
    path = tmp_path / "cut.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def answer_half() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while not data.endswith(b"{}"):  # the whole request: unread bytes would reset
                data += conn.recv(65536)
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 112\r\n\r\n{"ips"')

    server = threading.Thread(target=answer_half)
    server.start()
    try:
        with pytest.raises(ServiceUnreachable, match="closed the connection before a whole"):
            Client(path, timeout=10).request("POST", "/v1/ipam/release", {})
    finally:
        server.join(10)
        listener.close()


async def test_coordinator_config_carries_the_status_cidrs_and_a_nad_list_wins(
    tmp_path: Path,
) -> None:
    # The status is the controller's (a cluster's); written here as the kube store holds it.
    store = EmbeddedStore(tmp_path / "db")
    store.create(
        Key("SpiderCoordinator", "", "default"),
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderCoordinator",
            "metadata": {"name": "default"},
            "spec": {"podCIDRType": "cluster", "hijackCIDR": ["169.254.0.0/16"]},
            "status": {
                "phase": "Synced",
                "overlayPodCIDR": ["10.244.0.0/16", "fd00:10:244::/56"],
                "serviceCIDR": ["10.96.0.0/12"],
            },
        },
    )
    app = App(store, IpamCore(store, node="n"), allowed_uids=frozenset({0}))
    query = {"podNamespace": ["ns"], "podName": ["a"]}
    peer = Peer(pid=1, uid=0, gid=0)
    answer = await app(Request("GET", "/v1/coordinator/config", query, [], b"", peer))
    store.close()
    assert answer.status == 200
    cluster = json.loads(answer.body)
    assert (cluster["overlayPodCIDR"], cluster["serviceCIDR"]) == (
        ["10.244.0.0/16", "fd00:10:244::/56"],
        ["10.96.0.0/12"],
    )
    # What the plugin makes of it: the NAD names no CIDRs, so the status's are used ...
    conf = parse_coordinator({"type": "spidernet-coordinator"}, cluster)
    assert [str(n) for n in conf.overlay_pod_cidr] == ["10.244.0.0/16", "fd00:10:244::/56"]
    assert [str(n) for n in conf.service_cidr] == ["10.96.0.0/12"]
    assert [str(n) for n in conf.hijack_cidr] == ["169.254.0.0/16"]
    assert conf.sources["service_cidr"] == "SpiderCoordinator"
    # ... and a NAD's own list beats them.
    nad = {"type": "spidernet-coordinator", "serviceCIDR": ["10.43.0.0/16"]}
    conf = parse_coordinator(nad, cluster)
    assert [str(n) for n in conf.service_cidr] == ["10.43.0.0/16"]
    assert conf.sources["service_cidr"] == "config"
    assert [str(n) for n in conf.overlay_pod_cidr] == ["10.244.0.0/16", "fd00:10:244::/56"]
