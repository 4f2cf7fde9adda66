"""spidernet-ifacer, installed with install-cni and run as a runtime runs it, on this
machine's kernel: it has no 8021q or bonding, so VLANs and bonds themselves are tested in
the kernel lane (tests/kernel). Here: every verb's protocol, the no-op cases, prevResult
passed on, config errors that change nothing, a kernel without the driver named in the
error with nothing left behind, and a chain that fails at the ifacer undone by DEL.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni import version
from spidernet.cni.config import Attachment, parse_conflist
from spidernet.cni.errors import Code
from spidernet.node import netns
from spidernet.node.lab.addresses import GATEWAY4, SUBNET4
from spidernet.node.lab.runtime import Chain, PluginFailed, Target, invoke
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.netlink.client import netlink
from spidernet.testbed.harness import World

PLUGIN = "spidernet-ifacer"


def conf(state: Path, ver: str = "1.0.0", **fields: Any) -> dict[str, Any]:
    return {
        "cniVersion": ver,
        "name": "underlay",
        "type": PLUGIN,
        "stateDir": str(state),
        "interfaces": ["eth0"],
        **fields,
    }


def records(state: Path) -> list[str]:
    return sorted(p.name for p in (state / "users").glob("*.json"))


def host_links(world: World) -> list[tuple[str, bool]]:
    with netlink(netns.path_of(world.host)) as nl:
        return sorted((x.name, x.up) for x in nl.links())


def test_every_verb_from_the_host_namespace(
    world: World, cni_path: tuple[str, ...], tmp_path: Path
) -> None:
    exe = str(Path(cni_path[0], PLUGIN))
    pod = netns.path_of(world.pods[0])
    call = partial(
        invoke, exe, container_id="ctr-9", ifname="net1", cni_path=cni_path, host_netns=world.host
    )
    before = host_links(world)

    ver = invoke(exe, "VERSION", {"cniVersion": "1.1.0"}, host_netns=world.host)
    assert ver.ok
    assert json.loads(ver.stdout)["supportedVersions"] == list(version.SUPPORTED)

    # One NIC and no VLAN: nothing to make; an empty result (it runs first in a chain)
    add = call("ADD", conf(tmp_path), netns_path=pod)
    assert add.ok, add.stderr
    assert "running in-process" in add.stderr  # no service here: the fallback says so
    assert json.loads(add.stdout) == {"cniVersion": "1.0.0"}
    assert records(tmp_path) == ["ctr-9-net1.json"]
    assert host_links(world) == before

    assert call("CHECK", conf(tmp_path), netns_path=pod).ok
    for _ in range(2):  # DEL twice, and DEL of a container never added, succeed
        assert call("DEL", conf(tmp_path), netns_path=pod).ok
    assert records(tmp_path) == []
    assert call("DEL", conf(tmp_path), netns_path="/run/netns/none").ok

    status = invoke(exe, "STATUS", conf(tmp_path, "1.1.0"), host_netns=world.host)
    assert status.ok, status.stdout
    missing = invoke(
        exe, "STATUS", conf(tmp_path, "1.1.0", interfaces=["eth9"]), host_netns=world.host
    )
    assert missing.error is not None
    assert missing.error.code == Code.PLUGIN_NOT_AVAILABLE
    assert "eth9" in missing.error.msg

    bad = call("ADD", b"{not json", netns_path=pod)
    assert bad.error is not None
    assert bad.error.code == Code.DECODING_FAILURE


def test_prev_result_is_passed_on_unchanged(
    world: World, cni_path: tuple[str, ...], tmp_path: Path
) -> None:
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:07", "sandbox": "/x"}],
        "ips": [{"address": "192.0.2.7/24", "gateway": "192.0.2.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}],
        "dns": {"nameservers": ["192.0.2.53"]},
    }
    exe = str(Path(cni_path[0], PLUGIN))
    add = invoke(
        exe,
        "ADD",
        conf(tmp_path, prevResult=prev),
        container_id="ctr-1",
        netns_path=netns.path_of(world.pods[0]),
        ifname="net1",
        host_netns=world.host,
    )
    assert add.ok, add.stderr
    assert json.loads(add.stdout) == prev
    assert invoke(
        exe,
        "DEL",
        conf(tmp_path),
        container_id="ctr-1",
        netns_path=netns.path_of(world.pods[0]),
        ifname="net1",
        host_netns=world.host,
    ).ok


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"interfaces": []}, "interfaces must be a non-empty list"),
        ({"vlanID": 5000}, "vlanID must be an integer from 0 to 4094"),
        ({"bond": {"mode": 1, "options": "miimon=100;bogus=1"}}, "bond option 'bogus'"),
        ({"bond": {"mode": 1, "options": "lacp_rate=fast"}}, "'lacp_rate' does not apply"),
        ({"interfaces": ["eth0", "eth9"], "bond": {}}, "interface(s) eth9 not found"),
    ],
)
def test_bad_config_is_error_7_and_changes_nothing(
    world: World, cni_path: tuple[str, ...], tmp_path: Path, fields: dict[str, Any], named: str
) -> None:
    before = host_links(world)
    out = invoke(
        str(Path(cni_path[0], PLUGIN)),
        "ADD",
        conf(tmp_path, **fields),
        container_id="ctr-2",
        netns_path=netns.path_of(world.pods[0]),
        ifname="net1",
        host_netns=world.host,
    )
    assert out.error is not None
    assert out.error.code == Code.INVALID_NETWORK_CONFIG
    assert named in out.error.msg
    assert "Traceback" not in out.stdout + out.stderr
    assert host_links(world) == before
    assert records(tmp_path) == []


@pytest.mark.parametrize(
    ("fields", "module"),
    [({"vlanID": 100}, "8021q"), ({"bond": {"name": "bond0", "mode": 1}}, "bonding")],
)
def test_a_kernel_without_the_driver_is_named_and_nothing_is_left(
    world: World, cni_path: tuple[str, ...], tmp_path: Path, fields: dict[str, Any], module: str
) -> None:
    # This machine's kernel has neither 8021q nor bonding (DESIGN.md, "Test lanes").
    before = host_links(world)
    out = invoke(
        str(Path(cni_path[0], PLUGIN)),
        "ADD",
        conf(tmp_path, **fields),
        container_id="ctr-3",
        netns_path=netns.path_of(world.pods[0]),
        ifname="net1",
        host_netns=world.host,
    )
    assert out.error is not None
    assert out.error.code == Code.INTERNAL
    assert f"kernel module '{module}'" in out.error.msg
    assert host_links(world) == before
    assert records(tmp_path) == []


def test_a_chain_failing_at_the_ifacer_is_undone_by_del(
    world: World, cni_path: tuple[str, ...], tmp_path: Path
) -> None:
    conflist = {
        "cniVersion": "1.0.0",
        "name": "underlay",
        "plugins": [
            {
                "type": "macvlan",
                "master": "eth0",
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(tmp_path / "ipam"),
                    "ranges": [[{"subnet": SUBNET4, "gateway": GATEWAY4}]],
                },
            },
            # a VLAN this kernel cannot make: the ifacer fails after macvlan's part
            {"type": PLUGIN, "interfaces": ["eth0"], "vlanID": 7, "stateDir": str(tmp_path)},
        ],
    }
    chain = Chain(parse_conflist(json.dumps(conflist).encode()), cni_path, host_netns=world.host)
    pod = netns.path_of(world.pods[1])
    with pytest.raises(PluginFailed) as info:
        chain.add(Target("ctr-2", pod, "net1"))
    assert info.value.outcome.plugin == PLUGIN
    with netlink(pod) as nl:
        assert nl.link("net1").kind == "macvlan"  # macvlan did its part before the failure
    chain.delete(Target("ctr-2", pod, "net1"))  # what a runtime does after a failed ADD
    with netlink(pod) as nl:
        assert [x.name for x in nl.links()] == ["lo"]
    leases = [p.name for p in (tmp_path / "ipam").rglob("*") if p.name[0].isdigit()]
    assert leases == []
    assert records(tmp_path) == []


def test_gc_forgets_attachments_the_runtime_no_longer_has(
    world: World, cni_path: tuple[str, ...], tmp_path: Path
) -> None:
    exe = str(Path(cni_path[0], PLUGIN))
    pod = netns.path_of(world.pods[0])
    for cid in ("ctr-a", "ctr-b"):
        out = invoke(
            exe,
            "ADD",
            conf(tmp_path, "1.1.0"),
            container_id=cid,
            netns_path=pod,
            ifname="net1",
            host_netns=world.host,
        )
        assert out.ok, out.stderr
    assert records(tmp_path) == ["ctr-a-net1.json", "ctr-b-net1.json"]
    chain = Chain(
        parse_conflist(
            json.dumps(
                {"cniVersion": "1.1.0", "name": "underlay", "plugins": [conf(tmp_path, "1.1.0")]}
            ).encode()
        ),
        cni_path,
        host_netns=world.host,
    )
    chain.gc(keep=(Attachment("ctr-b", "net1"),))
    assert records(tmp_path) == ["ctr-b-net1.json"]
    chain.status()


def test_the_node_service_does_the_work_in_the_callers_namespace(
    world: World, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    exe = str(Path(cni_path[0], PLUGIN))
    pod = netns.path_of(world.pods[0])
    call = partial(
        invoke,
        exe,
        container_id="ctr-5",
        ifname="net1",
        netns_path=pod,
        host_netns=world.host,
        extra_env={"SPIDERNET_SOCKET": str(service.socket)},
    )
    before = host_links(world)
    add = call("ADD", conf(tmp_path))
    assert add.ok, add.stderr
    assert "running in-process" not in add.stderr  # forwarded, not the fallback
    [record] = (tmp_path / "users").glob("*.json")
    # the record belongs to the namespace the runtime called from (the test's "host")
    assert json.loads(record.read_text())["host_ns"] == os.stat(netns.path_of(world.host)).st_ino
    vlan = call("ADD", conf(tmp_path, vlanID=100), container_id="ctr-6")
    assert vlan.error is not None
    assert "kernel module '8021q'" in vlan.error.msg
    assert "running in-process" not in vlan.stderr
    assert call("DEL", conf(tmp_path)).ok
    assert records(tmp_path) == []
    assert host_links(world) == before
