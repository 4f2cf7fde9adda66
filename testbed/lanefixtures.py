"""Fixtures the root lanes share (netns, kernel), as a pytest plugin that tests/conftest.py
loads: throw-away namespaces (`topo`) and the CNI_PATH of our executables with Debian's
reference plugins behind them (`cni_path`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spidernet.node.install import install_cni
from spidernet.node.lab.topology import Topology

REFERENCE_PLUGINS = Path("/usr/lib/cni")


@pytest.fixture
def topo() -> Iterator[Topology]:
    """A Topology whose namespaces are removed after the test."""
    t = Topology()
    try:
        yield t
    finally:
        errors = t.teardown()
        assert not errors, errors


@pytest.fixture(scope="session")
def cni_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """CNI_PATH: our executables (written by install-cni), then Debian's reference plugins."""
    bin_dir = tmp_path_factory.mktemp("cni-bin")
    install_cni(bin_dir, sys.executable)
    return (str(bin_dir), str(REFERENCE_PLUGINS))
