"""The wheel: built from a clean copy of the tree, installed into a fresh virtualenv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from spidernet.node.lab.service import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
POOL = """\
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: pkg}
spec: {subnet: 10.99.0.0/24, ips: [10.99.0.10-10.99.0.20], default: true}
"""


def run(
    argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env} if env else None
    proc = subprocess.run(
        argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def build_wheel(tmp_path: Path) -> Path:
    """The wheel, built into `tmp_path`/dist from a copy of the tree holding only its
    tracked (and new, unignored) files, so nothing of this checkout leaks in."""
    src = tmp_path / "src"
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    for name in filter(None, files.stdout.split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "-o",
            str(tmp_path / "dist"),
            str(src),
        ]
    )
    (wheel,) = (tmp_path / "dist").glob("spidernet-*.whl")
    return wheel


def check_the_wheels_files(wheel: Path) -> None:
    """The package and its metadata only: the CNI skel and forwarder's source in, the lanes'
    infrastructure and the benchmarks out, node/lab only what `spidernet lab` runs on."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"spidernet", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "spidernet/cni/skel.py" in names
    assert "spidernet/cni/forward.c" in names  # install-cni compiles it
    # The lanes' infrastructure and the benchmarks stay in the checkout.
    for outside in ("tests", "testbed", "bench"):
        assert not any(n.startswith(f"spidernet/{outside}/") for n in names), outside
    # node/lab ships only what `spidernet lab` runs on; the lanes' pieces live in testbed/.
    lab = {
        n.removeprefix("spidernet/node/lab/") for n in names if n.startswith("spidernet/node/lab/")
    }
    assert lab == {
        "__init__.py",
        "addresses.py",
        "cli.py",
        "lab.py",
        "runtime.py",
        "service.py",
        "topology.py",
    }


def install_into_a_clean_venv(tmp_path: Path, wheel: Path) -> tuple[Path, Path]:
    """The wheel pip-installed into a new virtualenv without system site packages, its
    `spidernet` CLI run and its `install-cni` run, whose spidernet-ipam answers VERSION. The
    virtualenv and the CNI bin directory."""
    venv = tmp_path / "venv"
    run(["/usr/bin/python3", "-m", "venv", str(venv)])  # no system site packages: clean
    run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)])
    out = run([str(venv / "bin" / "spidernet"), "--help"]).stdout
    assert "install-cni" in out
    bin_dir = tmp_path / "cni-bin"
    run([str(venv / "bin" / "spidernet"), "install-cni", "--bin-dir", str(bin_dir)])
    ver = subprocess.run(
        [str(bin_dir / "spidernet-ipam")],
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ver.returncode == 0
    assert '"supportedVersions"' in ver.stdout
    return venv, bin_dir


def add_and_del_through_the_wheels_service(venv: Path, bin_dir: Path) -> None:
    """The installed plugin and the service run from the wheel's own copy: ADD and DEL
    through a service the wheel's `spidernet serve` runs, with a pool the wheel's `spidernet
    apply` made."""
    base = Path(tempfile.mkdtemp(prefix="snt-pkg-"))
    svc = ServiceProcess(base / "s.sock", base / "state", base / "log")
    svc.start(python=str(venv / "bin" / "python"))
    try:
        pool = base / "pool.yaml"
        pool.write_text(POOL)
        env = {"SPIDERNET_SOCKET": str(svc.socket)}
        applied = run([str(venv / "bin" / "spidernet"), "apply", "-f", str(pool)], env=env)
        assert "spiderippool/pkg created" in applied.stdout
        conf = json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "n",
                "type": "macvlan",
                "ipam": {"type": "spidernet-ipam"},
            }
        )
        calls = {
            "ADD": {"CNI_NETNS": "/run/netns/none"},
            "DEL": {},
        }
        for verb, extra in calls.items():
            done = subprocess.run(
                [str(bin_dir / "spidernet-ipam")],
                input=conf,
                env={
                    "CNI_COMMAND": verb,
                    "CNI_CONTAINERID": "c1",
                    "CNI_IFNAME": "eth0",
                    **env,
                    **extra,
                },
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            if verb == "ADD":
                assert '"address": "10.99.0.' in done.stdout
    finally:
        svc.stop()
        shutil.rmtree(base)


def test_wheel_installs_into_a_clean_venv(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    check_the_wheels_files(wheel)
    venv, bin_dir = install_into_a_clean_venv(tmp_path, wheel)
    add_and_del_through_the_wheels_service(venv, bin_dir)
    probe = run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import spidernet.cni.skel as s; print(s.__file__)",
        ]
    )
    assert str(venv) in probe.stdout
