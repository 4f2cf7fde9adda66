"""CNI conformance of the skel: every verb x every version, and every way a call can be bad.

Each case runs the skel in-process with injected env and streams and decodes what it printed
with the real decoders; each asserts the exit status, the stream and the error code.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from spidernet.cni import version
from spidernet.cni.errors import CNIError, Code
from spidernet.cni.result import parse_result
from spidernet.cni.skel import CallArgs, Plugin, plugin_main

ADD_RESULT = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1500, "sandbox": "/x"}],
    "ips": [{"address": "192.0.2.10/24", "gateway": "192.0.2.1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}],
}
ENV = {
    "CNI_CONTAINERID": "c0ffee",
    "CNI_NETNS": "/run/netns/pod",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


@dataclass
class Recorder:
    """A plugin that records its calls; `fail` makes every verb raise it."""

    calls: list[CallArgs] = field(default_factory=list)
    fail: BaseException | None = None

    def _hit(self, args: CallArgs) -> None:
        self.calls.append(args)
        if self.fail is not None:
            raise self.fail

    def add(self, args: CallArgs) -> Any:
        self._hit(args)
        return parse_result(ADD_RESULT)

    def plugin(self) -> Plugin:
        return Plugin(
            name="test-plugin",
            add=self.add,
            delete=self._hit,
            check=self._hit,
            status=self._hit,
            gc=self._hit,
            about="test-plugin: for tests",
        )


@dataclass
class Call:
    status: int
    stdout: str
    stderr: str

    def error(self) -> dict[str, Any]:
        assert self.status == 1
        obj: dict[str, Any] = json.loads(self.stdout)
        assert set(obj) <= {"cniVersion", "code", "msg", "details"}
        assert isinstance(obj["code"], int)
        assert obj["msg"]
        return obj


def call(plugin: Plugin, command: str | None, conf: dict[str, Any] | bytes, **env: str) -> Call:
    environ = {**ENV, **env}
    if command is not None:
        environ["CNI_COMMAND"] = command
    environ = {k: v for k, v in environ.items() if v != ""}
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    out, err = io.StringIO(), io.StringIO()
    status = plugin_main(plugin, environ=environ, stdin=io.BytesIO(data), stdout=out, stderr=err)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return Call(status, out.getvalue(), err.getvalue())


def conf(ver: str, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": ver, "name": "net1", "type": "test-plugin", **extra}


MIN_VERSION = {"ADD": "0.3.0", "DEL": "0.3.0", "CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


@pytest.mark.parametrize("ver", version.SUPPORTED)
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
def test_verb_by_version(command: str, ver: str) -> None:
    rec = Recorder()
    res = call(rec.plugin(), command, conf(ver))
    if not version.at_least(ver, MIN_VERSION[command]):
        assert res.error()["code"] == Code.INCOMPATIBLE_VERSION
        assert res.error()["cniVersion"] == ver
        assert rec.calls == []
        return
    assert res.status == 0, res.stdout
    assert len(rec.calls) == 1
    assert rec.calls[0].env.command == command
    assert rec.calls[0].conf.cni_version == ver
    if command == "ADD":
        printed = json.loads(res.stdout)
        assert printed["cniVersion"] == ver
        decoded = parse_result(printed)
        assert [str(ip.address) for ip in decoded.ips] == ["192.0.2.10/24"]
        legacy = not version.at_least(ver, "1.0.0")
        assert ("version" in printed["ips"][0]) is legacy
        # 1.0.0 and 1.1.0 share one result type in the reference library.
        assert ("mtu" in printed["interfaces"][0]) is not legacy
    else:
        assert res.stdout == ""


@pytest.mark.parametrize("ver", ["", "0.1.0", "0.2.0", "1.2.0", "2.0.0"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
def test_unsupported_version(command: str, ver: str) -> None:
    rec = Recorder()
    res = call(rec.plugin(), command, conf(ver))
    assert res.error()["code"] == Code.INCOMPATIBLE_VERSION
    assert rec.calls == []


@pytest.mark.parametrize("ver", [*version.SUPPORTED, "0.2.0", "garbage"])
def test_version_verb(ver: str) -> None:
    res = call(Recorder().plugin(), "VERSION", conf(ver))
    assert res.status == 0
    info = json.loads(res.stdout)
    assert info == {"cniVersion": "1.1.0", "supportedVersions": list(version.SUPPORTED)}


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
@pytest.mark.parametrize(
    "data", [b"", b"{", b"not json", b"[1, 2]", b'"string"', b"\xff\xfe"], ids=repr
)
def test_malformed_json(command: str, data: bytes) -> None:
    rec = Recorder()
    res = call(rec.plugin(), command, data)
    err = res.error()
    assert err["code"] == Code.DECODING_FAILURE
    assert err["cniVersion"] == version.CURRENT
    assert rec.calls == []


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        ("ADD", "CNI_CONTAINERID"),
        ("ADD", "CNI_NETNS"),
        ("ADD", "CNI_IFNAME"),
        ("CHECK", "CNI_NETNS"),
        ("DEL", "CNI_CONTAINERID"),
        ("DEL", "CNI_IFNAME"),
        ("GC", "CNI_PATH"),
    ],
)
def test_missing_required_variable(command: str, missing: str) -> None:
    rec = Recorder()
    res = call(rec.plugin(), command, conf("1.1.0"), **{missing: ""})
    err = res.error()
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert missing in err["msg"]
    assert rec.calls == []


def test_del_without_netns_is_allowed() -> None:
    rec = Recorder()
    res = call(rec.plugin(), "DEL", conf("1.1.0"), CNI_NETNS="")
    assert res.status == 0
    assert rec.calls[0].env.netns == ""


def test_status_needs_only_the_command() -> None:
    rec = Recorder()
    res = call(rec.plugin(), "STATUS", conf("1.1.0"), CNI_CONTAINERID="", CNI_IFNAME="")
    assert res.status == 0


@pytest.mark.parametrize("verb", ["add", "DELETE", "FOO", " ADD"])
def test_unknown_verb(verb: str) -> None:
    res = call(Recorder().plugin(), verb, conf("1.1.0"))
    err = res.error()
    assert err["code"] == Code.INVALID_ENVIRONMENT
    assert "unknown CNI_COMMAND" in err["msg"]


def test_no_command_prints_about_on_stderr() -> None:
    res = call(Recorder().plugin(), None, conf("1.1.0"))
    assert res.status == 0
    assert res.stdout == ""
    assert "test-plugin: for tests" in res.stderr
    assert "1.1.0" in res.stderr


def test_no_command_without_about_is_an_env_error() -> None:
    plugin = Recorder().plugin()
    bare = Plugin(plugin.name, plugin.add, plugin.delete, plugin.check, plugin.status, plugin.gc)
    assert call(bare, None, conf("1.1.0")).error()["code"] == Code.INVALID_ENVIRONMENT


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"CNI_CONTAINERID": "-bad"}, Code.INVALID_ENVIRONMENT),
        ({"CNI_CONTAINERID": "a b"}, Code.INVALID_ENVIRONMENT),
        ({"CNI_IFNAME": "x" * 16}, Code.INVALID_ENVIRONMENT),
        ({"CNI_IFNAME": "a/b"}, Code.INVALID_ENVIRONMENT),
        ({"CNI_IFNAME": ".."}, Code.INVALID_ENVIRONMENT),
        ({"CNI_ARGS": "K8S_POD_NAME"}, Code.INVALID_ENVIRONMENT),
    ],
)
def test_invalid_environment_values(env: dict[str, str], code: int) -> None:
    rec = Recorder()
    assert call(rec.plugin(), "ADD", conf("1.1.0"), **env).error()["code"] == code
    assert rec.calls == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"name": ""}, Code.INVALID_NETWORK_CONFIG),
        ({"name": None}, Code.INVALID_NETWORK_CONFIG),
        ({"name": "bad name"}, Code.INVALID_NETWORK_CONFIG),
        ({"type": 7}, Code.INVALID_NETWORK_CONFIG),
        ({"ipam": "host-local"}, Code.INVALID_NETWORK_CONFIG),
        ({"prevResult": {"ips": [{"address": "nonsense"}]}}, Code.DECODING_FAILURE),
        (
            {"prevResult": {"ips": [{"address": "10.0.0.1/24", "interface": 3}]}},
            Code.DECODING_FAILURE,
        ),
        ({"prevResult": [1]}, Code.DECODING_FAILURE),
        ({"cniVersion": 1}, Code.DECODING_FAILURE),
    ],
)
def test_invalid_config(overrides: dict[str, Any], code: int) -> None:
    rec = Recorder()
    res = call(rec.plugin(), "ADD", conf("1.0.0", **overrides))
    assert res.error()["code"] == code
    assert rec.calls == []


def test_plugin_error_is_printed_with_its_code_and_details() -> None:
    rec = Recorder(fail=CNIError(Code.TRY_AGAIN_LATER, "service busy", "retry in 1s"))
    err = call(rec.plugin(), "ADD", conf("0.4.0")).error()
    assert err == {
        "cniVersion": "0.4.0",
        "code": 11,
        "msg": "service busy",
        "details": "retry in 1s",
    }


def test_unexpected_exception_becomes_code_999_without_traceback() -> None:
    rec = Recorder(fail=RuntimeError("boom"))
    res = call(rec.plugin(), "DEL", conf("1.0.0"))
    err = res.error()
    assert err["code"] == Code.INTERNAL
    assert "RuntimeError: boom" in err["msg"]
    assert "boom" in res.stderr


def test_config_reaches_the_plugin_parsed() -> None:
    rec = Recorder()
    prev = {
        "ips": [{"address": "192.0.2.5/24", "version": "4"}],
        "dns": {"nameservers": ["192.0.2.53"]},
    }
    gc_conf = conf(
        "1.1.0",
        prevResult=prev,
        runtimeConfig={"ips": ["192.0.2.5"]},
        args={"cni": {"ips": ["192.0.2.5"]}},
        ipam={"type": "spidernet-ipam", "ippools": ["a"]},
        capabilities={"ips": True},
        **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]},
    )
    assert call(rec.plugin(), "GC", gc_conf).status == 0
    parsed = rec.calls[0].conf
    assert parsed.prev_result is not None
    assert str(parsed.prev_result.ips[0].address) == "192.0.2.5/24"
    assert parsed.prev_result.dns.nameservers == ("192.0.2.53",)
    assert parsed.runtime_config == {"ips": ["192.0.2.5"]}
    assert parsed.args == {"cni": {"ips": ["192.0.2.5"]}}
    assert parsed.ipam["ippools"] == ["a"]
    assert parsed.capabilities == {"ips": True}
    assert parsed.valid_attachments is not None
    assert [(a.container_id, a.ifname) for a in parsed.valid_attachments] == [("c1", "eth0")]


def test_cni_args_are_split() -> None:
    rec = Recorder()
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"
    assert call(rec.plugin(), "ADD", conf("1.0.0"), CNI_ARGS=args).status == 0
    env = rec.calls[0].env
    assert env.arg("K8S_POD_NAME") == "web-0"
    assert env.arg("K8S_POD_NAMESPACE") == "default"
    assert env.arg("MISSING", "x") == "x"
