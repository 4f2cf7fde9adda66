"""The leak checker fails real tests: an inner pytest run with this lane's conftest."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from spidernet.node import netns

HERE = Path(__file__).resolve().parent

LEAKY = """
from spidernet.node import netns
from spidernet.node.netlink.client import netlink


def test_leaks_a_veth(world):
    with netlink(netns.path_of(world.host)) as nl:
        nl.add_veth("leaked0", "leaked1")


def test_leaks_a_namespace():
    netns.create("{stray}")


def test_clean(world):
    with netlink(netns.path_of(world.host)) as nl:
        nl.add_veth("tidy0", "tidy1")
        nl.delete_link("tidy0")
"""


def test_the_lane_fixtures_fail_tests_that_leak(tmp_path: Path) -> None:
    stray = f"snt-inner-{tmp_path.name[-6:]}"
    # The lane's layout: tests/conftest.py (the test bed's fixture plugin) over the lane's.
    shutil.copy(HERE.parent / "conftest.py", tmp_path / "conftest.py")
    inner = tmp_path / "inner"
    inner.mkdir()
    shutil.copy(HERE / "conftest.py", inner / "conftest.py")
    (inner / "test_inner.py").write_text(textwrap.dedent(LEAKY.format(stray=stray)))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", str(tmp_path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        netns.remove(stray)
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "ERROR inner/test_inner.py::test_leaks_a_veth" in out
    assert "left behind: link 'leaked0' (veth)" in out
    assert "ERROR inner/test_inner.py::test_leaks_a_namespace" in out
    assert f"namespace left behind: {stray}" in out
    assert "PASSED inner/test_inner.py::test_clean" in out
    assert "ERROR inner/test_inner.py::test_clean" not in out
