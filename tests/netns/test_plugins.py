"""Our plugin executables, installed with install-cni and run as a runtime runs them.

The ifacer's data path arrives with a later issue; until then it must still answer every
verb as the spec says, and a chain that fails at it must leave nothing behind once the
runtime has run DEL. spidernet-ipam and spidernet-coordinator have their own tests.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from spidernet.node import netns
from spidernet.node.cni import version
from spidernet.node.cni.config import Attachment, parse_conflist
from spidernet.node.cni.errors import Code
from spidernet.node.lab.harness import GATEWAY4, SUBNET4, World
from spidernet.node.lab.runtime import Chain, PluginFailed, Target, invoke
from spidernet.node.netlink.client import netlink

PLUGINS = ["spidernet-ifacer"]


def conf(plugin: str, ver: str = "1.0.0") -> dict[str, object]:
    return {"cniVersion": ver, "name": "underlay", "type": plugin}


@pytest.mark.parametrize("plugin", PLUGINS)
def test_every_verb_from_the_host_namespace(
    world: World, cni_path: tuple[str, ...], plugin: str
) -> None:
    exe = str(Path(cni_path[0], plugin))
    pod = netns.path_of(world.pods[0])
    # As a runtime calls it: from the host namespace, for container ctr-9's net1.
    call = partial(
        invoke, exe, container_id="ctr-9", ifname="net1", cni_path=cni_path, host_netns=world.host
    )

    ver = invoke(exe, "VERSION", {"cniVersion": "1.1.0"}, host_netns=world.host)
    assert ver.ok
    assert json.loads(ver.stdout)["supportedVersions"] == list(version.SUPPORTED)

    add = call("ADD", conf(plugin), netns_path=pod)
    assert not add.ok
    assert add.error is not None
    assert add.error.code == Code.NOT_IMPLEMENTED
    assert "Traceback" not in add.stdout + add.stderr

    for _ in range(2):  # DEL twice, and DEL of a container never added, succeed
        assert call("DEL", conf(plugin), netns_path=pod).ok
    gone = call("DEL", conf(plugin), netns_path="/run/netns/none")
    assert gone.ok

    status = invoke(exe, "STATUS", conf(plugin, "1.1.0"), host_netns=world.host, cni_path=cni_path)
    assert status.error is not None
    assert status.error.code == Code.PLUGIN_NOT_AVAILABLE

    gc = dict(conf(plugin, "1.1.0"), **{"cni.dev/valid-attachments": []})
    assert invoke(exe, "GC", gc, host_netns=world.host, cni_path=cni_path).ok

    bad = call("ADD", b"{not json", netns_path=pod)
    assert bad.error is not None
    assert bad.error.code == Code.DECODING_FAILURE


def test_a_chain_failing_at_our_plugin_is_undone_by_del(
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
                    "dataDir": str(tmp_path),
                    "ranges": [[{"subnet": SUBNET4, "gateway": GATEWAY4}]],
                },
            },
            {"type": "spidernet-ifacer"},
        ],
    }
    chain = Chain(parse_conflist(json.dumps(conflist).encode()), cni_path, host_netns=world.host)
    pod = netns.path_of(world.pods[1])
    with pytest.raises(PluginFailed) as info:
        chain.add(Target("ctr-2", pod, "net1"))
    assert info.value.outcome.plugin == "spidernet-ifacer"
    with netlink(pod) as nl:
        assert nl.link("net1").kind == "macvlan"  # macvlan did its part before the failure
    chain.delete(Target("ctr-2", pod, "net1"))  # what a runtime does after a failed ADD
    with netlink(pod) as nl:
        assert [x.name for x in nl.links()] == ["lo"]
    assert [p.name for p in tmp_path.rglob("*") if p.is_file() and p.name[0].isdigit()] == []


def test_chain_status_and_gc_reach_every_plugin(cni_path: tuple[str, ...]) -> None:
    conflist = {
        "cniVersion": "1.1.0",
        "name": "ours",
        "plugins": [{"type": "spidernet-ifacer"}, {"type": "spidernet-coordinator"}],
    }
    chain = Chain(parse_conflist(json.dumps(conflist).encode()), cni_path)
    chain.gc(keep=(Attachment("ctr-1", "net1"),))
    with pytest.raises(PluginFailed) as info:
        chain.status()
    assert info.value.outcome.plugin == "spidernet-ifacer"
    assert info.value.outcome.error is not None
    assert info.value.outcome.error.code == Code.PLUGIN_NOT_AVAILABLE
