"""spidernet-ipam through `spidernet serve`, called as a runtime calls it: 50 macvlan pods,
2000 concurrent ADDs, and a service SIGKILLed while it allocates."""

from __future__ import annotations

import ipaddress
import json
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spidernet.cni.config import parse_conflist
from spidernet.cni.errors import Code
from spidernet.node import netns
from spidernet.node.lab.addresses import GATEWAY4
from spidernet.node.lab.runtime import Chain, Outcome, Target, invoke
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, ping
from spidernet.node.netlink.client import netlink
from spidernet.testbed.conflists import chain_conf, macvlan, plugin_conf, spidernet_ipam
from spidernet.testbed.harness import World
from spidernet.testbed.pools import allocated
from spidernet.testbed.pools import ippool as pool


def ipam_conf(svc: ServiceProcess, **ipam: object) -> dict[str, object]:
    return plugin_conf(macvlan(spidernet_ipam(svc.socket, **ipam)))


def test_fifty_macvlan_pods_get_distinct_addresses_and_give_them_back(
    world: World, topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    client = service.client
    client.request(
        "POST",
        "/v1/resources",
        pool(
            "underlay-v4",
            "192.0.2.0/24",
            ["192.0.2.10-192.0.2.200"],
            gateway=GATEWAY4,
            routes=[{"dst": "198.51.100.0/24", "gw": "192.0.2.254"}],
        ),
    )
    conflist = chain_conf(
        macvlan(spidernet_ipam(service.socket, default_ipv4_ippool=["underlay-v4"]))
    )
    chain = Chain(parse_conflist(json.dumps(conflist).encode()), cni_path, host_netns=world.host)
    pods = [topo.namespace(f"p{i}") for i in range(50)]
    targets = [
        Target(
            f"ctr-{i}",
            str(netns.path_of(ns)),
            "eth0",
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=p{i}",
        )
        for i, ns in enumerate(pods)
    ]
    addresses = []
    for target in targets:
        result = chain.add(target)
        [ip] = result.ips
        assert str(ip.gateway) == GATEWAY4
        assert {(str(r.dst), str(r.gw)) for r in result.routes} == {
            ("0.0.0.0/0", GATEWAY4),
            ("198.51.100.0/24", "192.0.2.254"),
        }
        addresses.append(ip.address)
    assert len(set(addresses)) == 50
    pool_range = range(
        int(ipaddress.ip_address("192.0.2.10")), int(ipaddress.ip_address("192.0.2.200")) + 1
    )
    assert all(int(a.ip) in pool_range and a.network.prefixlen == 24 for a in addresses)
    # The kernel holds what the result says, and the pod reaches the pool's gateway.
    for ns, address in list(zip(pods, addresses, strict=True))[::10]:
        with netlink(netns.path_of(ns)) as nl:
            eth0 = nl.index("eth0")
            assert address in {a.address for a in nl.addresses() if a.index == eth0}
        assert ping(ns, GATEWAY4)
    assert allocated(client, "underlay-v4") == 50
    # CHECK agrees, then DEL frees every address; DEL again and DEL of a stranger succeed.
    chain.check(targets[0])
    for target in targets:
        chain.delete(target)
    assert allocated(client, "underlay-v4") == 0
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    for cid in ("ctr-0", "never-added"):
        out = invoke(exe, "DEL", ipam_conf(service), container_id=cid, ifname="eth0")
        assert out.ok, out.stdout


def test_without_a_service_the_plugin_says_try_again_later(cni_path: tuple[str, ...]) -> None:
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    conf = plugin_conf(macvlan(spidernet_ipam("/run/none/s.sock")))
    out = invoke(exe, "ADD", conf, container_id="c", netns_path="/run/netns/x", ifname="eth0")
    assert out.error is not None
    assert out.error.code == Code.TRY_AGAIN_LATER
    assert "/run/none/s.sock" in out.error.msg
    assert "Traceback" not in out.stdout + out.stderr


def add(exe: str, conf: dict[str, object], cid: str) -> Outcome:
    return invoke(exe, "ADD", conf, container_id=cid, netns_path="/run/netns/none", ifname="eth0")


def test_2000_concurrent_adds_never_duplicate_and_exhaustion_leaks_nothing(
    cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    client = service.client
    client.request("POST", "/v1/resources", pool("big", "10.20.0.0/21", ["10.20.0.1-10.20.7.254"]))
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    conf = ipam_conf(service, default_ipv4_ippool=["big"])
    with ThreadPoolExecutor(20) as ex:
        outcomes = list(ex.map(lambda i: add(exe, conf, f"c{i}"), range(2000)))
    failed = [o.stdout for o in outcomes if not o.ok]
    assert failed == []
    ips = [str(o.result.ips[0].address.ip) for o in outcomes if o.result]
    assert len(ips) == 2000
    assert len(set(ips)) == 2000
    assert allocated(client, "big") == 2000
    # 46 addresses are left: 60 more ADDs get 46 of them, 14 fail clearly, and the failed
    # calls leave no claim or endpoint behind.
    with ThreadPoolExecutor(20) as ex:
        more = list(ex.map(lambda i: add(exe, conf, f"x{i}"), range(60)))
    ok = [o for o in more if o.ok]
    bad = [o for o in more if not o.ok]
    assert (len(ok), len(bad)) == (46, 14)
    for o in bad:
        assert o.error is not None
        assert o.error.code == Code.ADDRESSES_EXHAUSTED
        assert "all IP addresses used out" in o.error.msg
        assert "big (2046 usable, 2046 allocated)" in o.error.msg
    assert allocated(client, "big") == 2046
    endpoints = client.request("GET", "/v1/resources/SpiderEndpoint")["items"]
    assert len(endpoints) == 2046
    # Metrics count what happened.
    port = service.metrics_port()
    assert port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert "spidernet_ipam_allocation_counts_total 2046.0" in text
    assert 'spidernet_ipam_allocation_failure_counts_total{reason="exhausted"} 14.0' in text
    assert 'spidernet_ippool_allocated_ips{pool="big"} 2046.0' in text


def test_sigkill_during_1000_allocations_loses_nothing_and_duplicates_nothing(
    cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    service.client.request(
        "POST", "/v1/resources", pool("crash", "10.30.0.0/20", ["10.30.0.1-10.30.15.254"])
    )
    exe = str(Path(cni_path[0], "spidernet-ipam"))
    conf = ipam_conf(service, default_ipv4_ippool=["crash"])
    answered: dict[str, str] = {}
    lock = threading.Lock()
    done = threading.Event()
    kills = 0

    # The kills come at fixed points of the run's progress, not at random times: a run
    # that answers faster than a timer ticks would otherwise end before the crashes it
    # is about (one did, on an idle machine, after only two kills).
    marks = [150, 400, 650, 900]

    def killer() -> None:
        nonlocal kills
        while marks and not done.wait(0.01):
            with lock:
                reached = len(answered) >= marks[0]
            if reached:
                marks.pop(0)
                service.kill()
                kills += 1
                service.start()

    def worker(cid: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = add(exe, conf, cid)
            if out.ok and out.result:
                with lock:
                    answered[cid] = str(out.result.ips[0].address.ip)
                return
            assert out.error is not None
            assert out.error.code == Code.TRY_AGAIN_LATER, out.stdout
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(worker, [f"k{i}" for i in range(1000)]))
    finally:
        done.set()
        thread.join()
    if not service.alive():
        service.start()
    assert kills == 4
    assert len(answered) == 1000
    assert len(set(answered.values())) == 1000
    # Every answered address is recorded, against the container that was told it.
    client = service.client
    for cid, ip in answered.items():
        doc = client.request("GET", f"/v1/endpoints/cni/{cid}")
        assert doc["status"]["current"]["ips"][0]["ipv4"] == f"{ip}/20"
    assert allocated(client, "crash") == 1000


def test_socket_is_private_and_shutdown_is_graceful(service: ServiceProcess) -> None:
    assert service.socket.stat().st_mode & 0o777 == 0o600
    pid = service.pid
    assert service.proc is not None
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=15) == 0
    assert not service.socket.exists()
    assert pid
    service.proc = None
    service.pid = 0
