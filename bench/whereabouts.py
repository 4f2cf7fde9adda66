"""Whereabouts, the peer of `bench.cluster`: its CNI binary built with the machine's Go from the
module proxy, its CRDs read from the module's own files, and its network config.

`github.com/k8snetworkplumbingwg/whereabouts` cannot be `go install`ed at a version (its go.mod
has a `replace` directive), so, as `spidernet.testbed.kubecluster` does for kube-apiserver, a
throw-away module requires it at WHEREABOUTS_VERSION (with the same replace) and builds its
`cmd` package (upstream's hack/build-go.sh builds `./cmd/` with CGO_ENABLED=0 and stamps
pkg/version.Version). Everything lives under `<cache root>/whereabouts/<version>/` with a lock,
reused across runs; the Go module cache is the one kubecluster uses. Nothing of Whereabouts is
committed: its CRDs are read at run time from the module's directory in the Go module cache.

What its source says about calling it (v0.9.2, cmd/whereabouts.go, pkg/config,
pkg/storage/kubernetes/ipam.go):

- `kubernetes.kubeconfig` is mandatory, in the network config or in the node's flat file
  (`whereabouts.d/whereabouts.conf`, which must exist: without it every call fails); the
  kubeconfig's current context's namespace (kube-system when empty) holds the IPPool objects
  and the Lease.
- `K8S_POD_NAME` and `K8S_POD_NAMESPACE` in CNI_ARGS are required (no pod name: an error); the
  plugin never reads the Pod object itself (only the separate ip-reconciler lists pods).
- Every ADD and DEL first wins a leader election on one Lease, `whereabouts`, for the whole
  cluster (client-go leaderelection, lease 1500 ms, renew 1000 ms, retry 500 ms by default),
  then reads the range's one IPPool object, picks the lowest free address and writes the
  whole allocation map back with a JSON patch that tests `metadata.resourceVersion`: a lost
  race is 422 Invalid (a failed patch test), retried up to 100 times.
- `enable_overlapping_ranges` (default true) also creates one OverlappingRangeIPReservation
  per address.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidernet.testbed.conflists import macvlan, plugin_conf
from spidernet.testbed.gotools import GoTool
from spidernet.testbed.kubebuild import BuildFailed, run_go
from spidernet.testbed.kubespec import Layout, cache_root, go_env

WHEREABOUTS_MODULE = "github.com/k8snetworkplumbingwg/whereabouts"
WHEREABOUTS_VERSION = "v0.9.2"
WHEREABOUTS_PACKAGE = WHEREABOUTS_MODULE + "/cmd"
# The one replace directive of its go.mod (a module's replaces do not apply to its users).
WHEREABOUTS_REPLACE = "github.com/gogo/protobuf => github.com/gogo/protobuf v1.3.2"
GO_DIRECTIVE = "1.24"  # its own go.mod's
# The CRDs the CNI plugin writes (doc/crds/ in the module); the node-slice one is not used.
CRD_FILES = (
    "doc/crds/whereabouts.cni.cncf.io_ippools.yaml",
    "doc/crds/whereabouts.cni.cncf.io_overlappingrangeipreservations.yaml",
)
NAMESPACE = "kube-system"  # where it keeps pools and its Lease (our kubeconfig sets none)
LEASE = "whereabouts"


def whereabouts_tool(root: Path) -> GoTool:
    """`<root>/whereabouts/<version>/`: the binary, the log and the lock (gotools' layout)."""
    return GoTool(root, "whereabouts", WHEREABOUTS_MODULE, WHEREABOUTS_VERSION)


def _module_dir(tool: GoTool) -> Path:
    """The throw-away module that builds it."""
    return tool.dir / "src"


def _stamp(tool: GoTool) -> Path:
    """Written after a successful build: the version and the module's source directory."""
    return tool.dir / "bin" / "whereabouts.json"


@dataclass(frozen=True)
class Whereabouts:
    """A built Whereabouts: its CNI binary and the module's source directory (for the CRDs)."""

    binary: Path
    source: Path
    version: str

    def crd_paths(self) -> list[Path]:
        return [self.source / name for name in CRD_FILES]


def build_gomod(version: str) -> str:
    """The throw-away module that builds Whereabouts' CNI binary."""
    return (
        "module spidernet.bench/whereabouts-build\n\n"
        f"go {GO_DIRECTIVE}\n\n"
        f"require {WHEREABOUTS_MODULE} {version}\n\n"
        f"replace {WHEREABOUTS_REPLACE}\n"
    )


def build_argv(go: str, version: str, output: Path) -> list[str]:
    """`go build` of its cmd package as upstream does (stripped, version stamped), niced."""
    ldflags = f"-s -w -X {WHEREABOUTS_MODULE}/pkg/version.Version={version}"
    ldflags += f" -X {WHEREABOUTS_MODULE}/pkg/version.ReleaseStatus=released"
    return [
        "nice",
        "-n",
        "19",
        go,
        "build",
        "-trimpath",
        f"-ldflags={ldflags}",
        "-o",
        str(output),
        WHEREABOUTS_PACKAGE,
    ]


def _stamped(layout: GoTool) -> Whereabouts | None:
    try:
        doc = json.loads(_stamp(layout).read_text())
    except (OSError, ValueError):
        return None
    source = Path(str(doc.get("source", "")))
    if doc.get("version") != layout.version or not layout.binary.is_file():
        return None
    if not all((source / name).is_file() for name in CRD_FILES):
        return None  # the module cache was cleaned: download again
    if reported_version(layout.binary) != layout.version:
        return None
    return Whereabouts(layout.binary, source, layout.version)


def reported_version(binary: Path) -> str | None:
    """The version the binary prints when run without CNI_COMMAND (skel's "about" line,
    `whereabouts v0.9.2 linux/amd64`), or None."""
    try:
        done = subprocess.run(
            [str(binary)],
            env={},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = done.stderr.decode(errors="replace").split()
    return words[1] if len(words) > 1 and words[0] == "whereabouts" else None


def ensure_whereabouts(
    root: Path | None = None, progress: Callable[[str], None] | None = None
) -> Whereabouts:
    """The cached Whereabouts binary and its module source, built first when missing; raises
    kubecluster's BuildFailed (no Go, or `go` failed: the end of its output), as every
    Go-built fixture does."""
    layout = whereabouts_tool(root or cache_root(os.environ))
    say = progress or (lambda msg: None)
    layout.dir.mkdir(parents=True, exist_ok=True)
    with layout.lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building: wait for it
        found = _stamped(layout)
        if found is not None:
            return found
        go = shutil.which("go")
        if go is None:
            raise BuildFailed("failed to build Whereabouts: no `go` on PATH")
        env = go_env(Layout(layout.root), os.environ)
        started = time.monotonic()
        moddir = _module_dir(layout)
        moddir.mkdir(parents=True, exist_ok=True)
        layout.log.write_text("")
        (moddir / "go.mod").write_text(build_gomod(layout.version))
        say(f"building Whereabouts {layout.version} with {go} (log: {layout.log}) ...")
        argv = [go, "mod", "download", "-json", f"{WHEREABOUTS_MODULE}@{layout.version}"]
        source = Path(json.loads(run_go(argv, moddir, env, layout.log))["Dir"])
        partial = layout.binary.with_name("whereabouts.partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        run_go(build_argv(go, layout.version, partial), moddir, env, layout.log)
        reported = reported_version(partial)
        if reported != layout.version:
            raise BuildFailed(f"built {partial}, but it reports version {reported}")
        partial.replace(layout.binary)
        _stamp(layout).write_text(json.dumps({"version": layout.version, "source": str(source)}))
        say(f"built {layout.binary} in {time.monotonic() - started:.0f}s")
        return Whereabouts(layout.binary, source, layout.version)


def flat_config(kubeconfig: Path) -> dict[str, Any]:
    """The node-wide file its DaemonSet writes (script/lib.sh generateWhereaboutsConf, to
    /etc/cni/net.d/whereabouts.d/whereabouts.conf); without one the plugin refuses every call
    ("config file not found")."""
    return {"datastore": "kubernetes", "kubernetes": {"kubeconfig": str(kubeconfig)}}


def net_config(flat_file: Path, subnet: str, start: str, end: str, name: str) -> dict[str, Any]:
    """A macvlan network with Whereabouts as its IPAM, as its README configures it, pointing
    at the flat file (`configuration_path`, looked up before the /etc paths); the
    leader-election timings and overlapping ranges left at their defaults."""
    ipam = {
        "type": "whereabouts",
        "range": subnet,
        "range_start": start,
        "range_end": end,
        "configuration_path": str(flat_file),
        "log_level": "error",
    }
    return plugin_conf(macvlan(ipam), name=name)
