"""A chain failing half-way holds nothing, through Debian's macvlan and the real service: a
two-NIC pod whose second pool is full (the allocation of every NIC of an
`ipam.spidernet.io/ippools` pod is one transaction; Spiderpool #4295 leaked the first NIC's
address here), and the agent SIGKILLed while the coordinator sets a pod up (the runtime's
DEL afterwards, to a restarted agent, removes all of it)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

import pytest

from spidernet.cni.config import parse_conflist
from spidernet.cni.errors import Code
from spidernet.node import netns
from spidernet.node.lab.addresses import GATEWAY4
from spidernet.node.lab.runtime import Chain, PluginFailed, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.netlink.client import netlink
from spidernet.testbed.conflists import chain_conf, macvlan, spidernet_coordinator, spidernet_ipam
from spidernet.testbed.harness import World
from spidernet.testbed.pools import allocated
from spidernet.testbed.pools import ippool as pool


def test_a_two_nic_pod_whose_second_pool_is_full_holds_nothing(
    world: World, cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    client = service.client
    client.request(
        "POST",
        "/v1/resources",
        pool("nic0", "192.0.2.0/24", ["192.0.2.10-192.0.2.20"], gateway=GATEWAY4),
    )
    client.request("POST", "/v1/resources", pool("nic1", "203.0.113.0/24", ["203.0.113.10"]))
    # Another sandbox holds nic1's only address.
    other = {"containerID": "ctr-other", "ifName": "eth0", "podNamespace": "t"}
    client.request(
        "POST", "/v1/ipam/allocate", {**other, "podName": "other", "defaultIPv4IPPool": ["nic1"]}
    )
    ippools = [{"interface": "eth0", "ipv4": ["nic0"]}, {"interface": "net1", "ipv4": ["nic1"]}]
    conflist = chain_conf(
        macvlan(
            spidernet_ipam(service.socket),
            args={
                "spidernet.io": {"annotations": {"ipam.spidernet.io/ippools": json.dumps(ippools)}}
            },
        )
    )
    chain = Chain(parse_conflist(json.dumps(conflist).encode()), cni_path, host_netns=world.host)
    pod = world.pods[0]
    target = Target(
        "ctr-pod",
        netns.path_of(pod),
        "eth0",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=pod",
    )

    with pytest.raises(PluginFailed) as failed:
        chain.add(target)
    error = failed.value.outcome.error
    assert error is not None
    assert error.code == Code.ADDRESSES_EXHAUSTED
    assert "nic1 (1 usable, 1 allocated)" in error.msg
    # Nothing of the pod is held, before any DEL: not nic0's address, not its endpoint.
    assert allocated(client, "nic0") == 0
    endpoints = client.request("GET", "/v1/resources/SpiderEndpoint")["items"]
    assert [e["metadata"]["name"] for e in endpoints] == ["other"]
    # The runtime's DEL after the failed ADD succeeds; it removes the link Debian's macvlan
    # left behind when its IPAM failed, and frees nothing that was not held.
    chain.delete(target)
    assert allocated(client, "nic0") == 0
    with netlink(netns.path_of(pod)) as nl:
        assert [link.name for link in nl.links()] == ["lo"]

    # With room in nic1, the first ADD allocates both NICs at once; its DEL, with no NIC
    # configured but eth0, frees both.
    client.request("POST", "/v1/ipam/release", {**other, "podName": "other"})
    result = chain.add(target)
    (ip,) = result.ips  # eth0's: net1's waits for its own ADD
    assert str(ip.address.ip).startswith("192.0.2.")
    assert (allocated(client, "nic0"), allocated(client, "nic1")) == (1, 1)
    chain.delete(target)
    assert (allocated(client, "nic0"), allocated(client, "nic1")) == (0, 0)


def coordinator_running(exe: str) -> bool:
    """True while a process of the coordinator's executable runs (the runtime's call)."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink(f"/proc/{pid}/exe") == exe:
                    return True
            except OSError:
                continue
    return False


# How long after the runtime started the coordinator the agent is killed: from before its
# request arrives to (usually) after its answer left.
KILL_AFTER_S = (0.0, 0.002, 0.004, 0.006, 0.008, 0.011, 0.015, 0.03)


def test_the_agent_killed_during_a_coordinator_add_leaves_nothing_after_the_runtimes_del(
    world: World,
    cni_path: tuple[str, ...],
    service: ServiceProcess,
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    client = service.client
    client.request(
        "POST",
        "/v1/resources",
        pool("kill", "192.0.2.0/24", ["192.0.2.30-192.0.2.40"], gateway=GATEWAY4),
    )
    conflist = chain_conf(
        macvlan(spidernet_ipam(service.socket, default_ipv4_ippool=["kill"])),
        spidernet_coordinator(service.socket, serviceCIDR=["10.96.0.0/12"]),
    )
    chain = Chain(parse_conflist(json.dumps(conflist).encode()), cni_path, host_netns=world.host)
    coordinator = os.path.realpath(os.path.join(cni_path[0], "spidernet-coordinator"))
    pod = world.pods[0]
    in_flight = 0
    for i, delay in enumerate(KILL_AFTER_S):
        target = Target(
            f"ctr-k{i}",
            netns.path_of(pod),
            "eth0",
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=k{i}",
        )
        failures: list[PluginFailed] = []

        def add(target: Target = target, failures: list[PluginFailed] = failures) -> None:
            try:
                chain.add(target)
            except PluginFailed as e:
                failures.append(e)

        runtime = threading.Thread(target=add)
        runtime.start()
        deadline = time.monotonic() + 20
        while not coordinator_running(coordinator):
            assert runtime.is_alive(), "the chain ended before its coordinator ran"
            assert time.monotonic() < deadline
            time.sleep(0.0005)
        time.sleep(delay)
        service.kill()
        runtime.join(timeout=60)
        if failures and failures[0].outcome.plugin == "spidernet-coordinator":
            in_flight += 1
            error = failures[0].outcome.error
            assert error is not None
            assert error.code == Code.TRY_AGAIN_LATER, failures[0].outcome.stdout
        # The node comes back; the runtime DELs the sandbox it could not set up.
        service.start()
        chain.delete(target)
        assert allocated(client, "kill") == 0, f"kill after {delay} s"
        assert world.changes() == {}, f"kill after {delay} s"
    # Most kills must land while the coordinator worked, or this proved nothing.
    record_testsuite_property("kill_kills", len(KILL_AFTER_S))
    record_testsuite_property("kill_during_the_coordinators_call", in_flight)
    assert in_flight >= 3, in_flight
