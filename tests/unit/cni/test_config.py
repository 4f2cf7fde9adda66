"""Plugin configs, network config lists, and deriving one from the other as libcni does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from spidernet.cni.config import Attachment, parse_conflist, parse_plugin_conf, plugin_config
from spidernet.cni.env import parse_cni_args, parse_env
from spidernet.cni.errors import CNIError, Code
from spidernet.cni.result import parse_result

CONFLIST: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "cniVersions": ["0.4.0", "1.0.0", "1.1.0", "9.9.9"],
    "name": "macvlan-underlay",
    "plugins": [
        {
            "type": "macvlan",
            "master": "eth0",
            "ipam": {"type": "spidernet-ipam"},
            "capabilities": {"ips": True},
        },
        {"type": "spidernet-coordinator", "mode": "underlay"},
    ],
}


def test_conflist_picks_highest_common_version() -> None:
    assert parse_conflist(json.dumps(CONFLIST).encode()).cni_version == "1.1.0"


def test_plugin_config_injects_name_version_prev_result_and_capabilities() -> None:
    cl = parse_conflist(json.dumps(CONFLIST).encode())
    prev = parse_result({"cniVersion": "1.1.0", "ips": [{"address": "192.0.2.9/24"}]})
    runtime = {"ips": ["192.0.2.9"], "portMappings": []}
    first = plugin_config(cl, 0, runtime_config=runtime)
    assert first["name"] == "macvlan-underlay"
    assert first["cniVersion"] == "1.1.0"
    assert first["runtimeConfig"] == {"ips": ["192.0.2.9"]}
    assert "prevResult" not in first
    second = plugin_config(cl, 1, prev_result=prev, runtime_config=runtime)
    assert "runtimeConfig" not in second
    assert second["prevResult"]["ips"] == [{"address": "192.0.2.9/24"}]
    parsed = parse_plugin_conf(json.dumps(second).encode())
    assert parsed.type == "spidernet-coordinator"
    assert parsed.raw["mode"] == "underlay"


def test_gc_config_carries_both_attachment_keys() -> None:
    cl = parse_conflist(json.dumps(CONFLIST).encode())
    conf = plugin_config(cl, 0, valid_attachments=(Attachment("c1", "net1"),))
    assert conf["cni.dev/valid-attachments"] == [{"containerID": "c1", "ifname": "net1"}]
    assert conf["cni.dev/attachments"] == conf["cni.dev/valid-attachments"]


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x"},
        {"name": "x", "plugins": []},
        {"name": "x", "plugins": [{"master": "eth0"}]},
        {"plugins": [{"type": "macvlan"}]},
    ],
)
def test_bad_conflists(bad: dict[str, Any]) -> None:
    with pytest.raises(CNIError) as info:
        parse_conflist(json.dumps(bad).encode())
    assert info.value.code == Code.INVALID_NETWORK_CONFIG


def test_bad_attachments() -> None:
    conf = {"cniVersion": "1.1.0", "name": "n", "cni.dev/valid-attachments": [{"containerID": 1}]}
    with pytest.raises(CNIError) as info:
        parse_plugin_conf(json.dumps(conf).encode())
    assert info.value.code == Code.INVALID_NETWORK_CONFIG
    assert "cni.dev/valid-attachments" in info.value.msg


def test_env_requirements_per_verb() -> None:
    assert parse_env({"CNI_COMMAND": "VERSION"}).command == "VERSION"
    assert parse_env({"CNI_COMMAND": "STATUS"}).command == "STATUS"
    gc = parse_env({"CNI_COMMAND": "GC", "CNI_PATH": "/a:/b::"})
    assert gc.path == ("/a", "/b")
    with pytest.raises(CNIError, match=r"\[CNI_CONTAINERID,CNI_IFNAME\]"):
        parse_env({"CNI_COMMAND": "DEL"})


def test_cni_args() -> None:
    assert parse_cni_args("A=1;;B=x=y;C=") == (("A", "1"), ("B", "x=y"), ("C", ""))
    with pytest.raises(CNIError):
        parse_cni_args("=1")
