"""The plugin executables: what install-cni writes, and what a VERSION call costs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spidernet.cni.launcher import FORWARDED, PLUGINS, LauncherError, render
from spidernet.node.install import install_cni

HEAVY = ("pyroute2", "scapy", "bcc", "kubernetes", "trio")


def run(
    argv: list[str], env: dict[str, str], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=60, check=False)


def test_install_writes_every_plugin_executable(tmp_path: Path) -> None:
    installed = install_cni(tmp_path / "bin", sys.executable)
    assert sorted(i.path.name for i in installed) == sorted(PLUGINS)
    kinds = {i.path.name: i.kind for i in installed}
    assert kinds["spidernet-ipam"] == "compiled forwarder"  # make installs a C compiler
    assert kinds["spidernet-coordinator"] == "compiled forwarder"
    assert kinds["spidernet-ifacer"] == "compiled forwarder"
    for i in installed:
        assert os.access(i.path, os.X_OK)
        assert i.path.read_bytes()[:4] == b"\x7fELF"
    assert [p.name for p in (tmp_path / "bin").iterdir() if p.name.startswith(".")] == []


def test_python_forwarders_run_on_the_base_interpreter(tmp_path: Path) -> None:
    installed = install_cni(tmp_path / "bin", sys.executable, forwarder="python")
    forwarders = [i for i in installed if i.path.name in FORWARDED]
    assert sorted(i.path.name for i in forwarders) == sorted(PLUGINS)
    for item in forwarders:
        assert item.kind == "python forwarder"
        # The base interpreter: the forwarder needs no site packages, and skips pyvenv.cfg.
        assert item.path.read_text().startswith(f"#!{os.path.realpath(sys.executable)} -IS\n")


def test_without_a_compiler_auto_falls_back_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    installed = {i.path.name: i for i in install_cni(tmp_path / "bin", sys.executable)}
    assert installed["spidernet-ipam"].kind == "python forwarder"
    assert "no C compiler" in installed["spidernet-ipam"].note
    with pytest.raises(LauncherError, match="no C compiler"):
        install_cni(tmp_path / "bin2", sys.executable, forwarder="c")


# The coordinator's and the ifacer's modules are their in-process fallbacks (no node
# service), heavy on purpose.
LIGHT_MODULES = sorted(
    set(PLUGINS.values()) - {"spidernet.node.coordinator", "spidernet.node.ifacer"}
)


@pytest.mark.parametrize("module", LIGHT_MODULES)
@pytest.mark.parametrize("command", ["VERSION", "ADD", "DEL"])
def test_plugin_module_imports_nothing_heavy(module: str, command: str) -> None:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "abc",
        "CNI_NETNS": "/run/netns/none",
        "CNI_IFNAME": "eth0",
        "SPIDERNET_SOCKET": "/nonexistent/spidernet.sock",
    }
    conf = json.dumps({"cniVersion": "1.1.0", "name": "n", "type": "x"}).encode()
    res = run([sys.executable, "-X", "importtime", "-I", "-m", module], env, conf)
    imported = {
        line.split("|")[-1].strip() for line in res.stderr.decode().splitlines() if "|" in line
    }
    assert imported, "no import timing was printed"
    assert not {m for m in imported if m.split(".")[0] in HEAVY}
    if module == PLUGINS["spidernet-ipam"] and command != "VERSION":
        # Forwarded to the service, which is not running: "try again later".
        assert json.loads(res.stdout)["code"] == 11
    elif command == "ADD":
        assert json.loads(res.stdout)["code"] == 100
    else:
        assert res.returncode == 0


@pytest.mark.parametrize("python", ["python3", "/with space/python", "/" + "x" * 300])
def test_bad_interpreter_paths_are_refused(python: str) -> None:
    with pytest.raises(LauncherError):
        render("spidernet-ipam", python)


def test_forwarder_is_stored_compiled_only_for_the_installing_interpreter() -> None:
    mine = render("spidernet-ipam", sys.executable)
    assert "exec(marshal.loads(" in mine
    other = render("spidernet-ipam", "/opt/other/python3")
    assert other.startswith("#!/opt/other/python3 -IS\n")
    assert "def forward(" in other  # plain source for an interpreter of unknown version


def test_unknown_plugin_is_refused() -> None:
    with pytest.raises(LauncherError, match="unknown plugin"):
        render("spidernet-nope", sys.executable)
