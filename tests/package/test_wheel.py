"""The wheel: built from a clean copy of the tree, installed into a fresh virtualenv."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_wheel_installs_into_a_clean_venv(tmp_path: Path) -> None:
    # Build from a copy holding only tracked files, so nothing of this checkout leaks in.
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
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"spidernet", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "spidernet/node/cni/skel.py" in names
    assert not any(n.startswith("spidernet/tests/") for n in names)

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
    # The installed plugin runs from the wheel's own copy, not from this checkout.
    del_run = subprocess.run(
        [str(bin_dir / "spidernet-ipam")],
        input='{"cniVersion": "1.0.0", "name": "n", "type": "spidernet-ipam"}',
        env={"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert del_run.returncode == 0, del_run.stdout + del_run.stderr
    probe = run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import spidernet.node.cni.skel as s; print(s.__file__)",
        ]
    )
    assert str(venv) in probe.stdout
