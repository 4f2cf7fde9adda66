"""testbed/gotools.py: where kustomize is cached and how its version is read (no build)."""

from __future__ import annotations

from pathlib import Path

from spidernet.testbed.gotools import (
    KUSTOMIZE_MODULE,
    KUSTOMIZE_VERSION,
    kustomize_tool,
    reported_kustomize_version,
)


def test_kustomize_is_cached_per_version_under_the_cache_root() -> None:
    tool = kustomize_tool({"SPIDERNET_CACHE": "/c"})
    assert tool.module == KUSTOMIZE_MODULE == "sigs.k8s.io/kustomize/kustomize/v5"
    assert tool.binary == Path(f"/c/kustomize/{KUSTOMIZE_VERSION}/bin/kustomize")
    assert tool.lock.parent == tool.log.parent == tool.dir
    assert kustomize_tool({}).root == Path("/var/cache/spidernet")


def test_reported_version() -> None:
    assert reported_kustomize_version("v5.8.2\n") == "v5.8.2"
    assert reported_kustomize_version("(devel)\n") is None
    assert reported_kustomize_version("") is None
