"""testbed/gotools.py: where kustomize and multus are cached, how multus is built and how their
versions are read (no build)."""

from __future__ import annotations

from pathlib import Path

from spidernet.testbed.gotools import (
    KUSTOMIZE_MODULE,
    KUSTOMIZE_VERSION,
    MULTUS_PACKAGE,
    MULTUS_VERSION,
    kustomize_tool,
    multus_gomod,
    multus_ldflags,
    multus_tool,
    reported_kustomize_version,
    reported_multus_version,
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


def test_multus_is_cached_per_version_under_the_cache_root() -> None:
    tool = multus_tool({"SPIDERNET_CACHE": "/c"})
    assert tool.module == "gopkg.in/k8snetworkplumbingwg/multus-cni.v4"
    assert MULTUS_PACKAGE == "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus"  # thin
    assert tool.binary == Path(f"/c/multus/{MULTUS_VERSION}/bin/multus")
    assert tool.module_dir == tool.dir / "src"
    assert tool.lock.parent == tool.log.parent == tool.dir


def test_multus_gomod_requires_the_release() -> None:
    text = multus_gomod("v4.3.0")
    assert text.startswith("module spidernet.test/multus-build\n")
    assert "\nrequire gopkg.in/k8snetworkplumbingwg/multus-cni.v4 v4.3.0\n" in text
    assert "\ngo 1.25.0\n" in text
    assert "replace" not in text


def test_multus_ldflags_stamp_a_release_build() -> None:
    flags = multus_ldflags("v4.3.0", "db3074", "2026-05-29T15:05:10Z").split(" -X ")
    pkg = "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/multus"
    assert flags == [
        "-s -w",
        f"{pkg}.version=v4.3.0",
        f"{pkg}.commit=db3074",
        f"{pkg}.gitTreeState=clean",
        f"{pkg}.releaseStatus=,released",
        f"{pkg}.date=2026-05-29T15:05:10Z",
    ]


def test_reported_multus_version() -> None:
    out = (
        "multus: version:v4.3.0(clean,released), commit:db30741512795c258b3ba383a571a66850e8baac,"
        " date:2026-05-29T15:05:10Z\n"
    )
    assert reported_multus_version(out) == "v4.3.0"
    unstamped = "multus: version:master@git(), commit:unknown commit, date:unknown date\n"
    assert reported_multus_version(unstamped) is None
    assert reported_multus_version("") is None
