"""Build Kubernetes with Go into the cache: the k8s lane's kube-apiserver and etcd, a node's
kubelet, kube-proxy, kube-scheduler, kube-controller-manager and kubectl.

Every binary is built once into the release's bin dir (kubespec.Layout) and afterwards only
asked its version. The k8s.io/kubernetes binaries come from one throw-away module
(kubespec.kubernetes_gomod) with the release's version stamped in; the node's five are built by
one `go build` (their packages overlap: compiled and looked up once, linked in parallel). All
builds take the release's lock, so two runs (or a lane and a hand-run build) never build at
once; a binary is moved into the bin dir only after it reported the right version.

kube-apiserver's packages are nearly all among the node's (8 of its 1847 are not), so after the
k8s lane's build the node's adds about 710 packages and five links. Measured on 2 cores with a
scratch GOCACHE: kube-apiserver 387 s, then the node's five 171 s; all six in one `go build`
537 s (the same CPU time), so the two stay separate builds and neither lane pays for the
other's binaries. With everything compiled, the five link in 10-18 s in one `go build` and
21 s in five.

    python -m spidernet.testbed.kubebuild apiserver   # kube-apiserver and etcd; print paths
    python -m spidernet.testbed.kubebuild node        # the node's five; print their paths
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spidernet.testbed.kubespec import (
    APISERVER_PACKAGE,
    ETCD_MODULE,
    NODE_COMPONENTS,
    Layout,
    Versions,
    apiserver_gomod,
    cache_root,
    component_package,
    etcd_gomod,
    go_build_argv,
    go_build_into_argv,
    go_env,
    kubernetes_gomod,
    reported_version,
    staging_modules,
    version_argv,
    version_ldflags,
)

LOG_TAIL_LINES = 30


class BuildFailed(Exception):
    """Go is missing, `go` failed, or a built binary reports another version; the message holds
    the end of `go`'s output."""


@dataclass(frozen=True)
class Binaries:
    """Cached binaries that report the expected versions."""

    apiserver: Path
    etcd: Path
    versions: Versions


@dataclass(frozen=True)
class NodeBinaries:
    """A node's cached Kubernetes binaries, each reporting `versions.kubernetes`."""

    kubelet: Path
    kube_proxy: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    kubectl: Path
    versions: Versions


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log, or why there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def version_of(binary: Path) -> str | None:
    """The version the binary reports (kubespec.version_argv), or None when it is missing, does
    not run or prints something else."""
    if not binary.is_file():
        return None
    try:
        out = subprocess.run(
            version_argv(binary), capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return reported_version(binary.name, out.stdout + out.stderr)


def run_go(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> str:
    """Run one `go` command, appending its output to `log`; its stdout is returned. Raises
    BuildFailed with the log's tail."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        done = subprocess.run(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out, text=True, check=False
        )
        out.write(done.stdout)
    if done.returncode != 0:
        raise BuildFailed(
            f"failed to run '{' '.join(argv[:4])} ...' (exit {done.returncode}):\n{log_tail(log)}"
        )
    return done.stdout


def _which_go(what: str) -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildFailed(f"failed to build {what}: no `go` on PATH")
    return go


@contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    layout.release_dir.mkdir(parents=True, exist_ok=True)
    with layout.lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building: wait for it
        yield


def _kubernetes_module(layout: Layout, purpose: str, go: str, env: dict[str, str]) -> str:
    """Write the throw-away module `purpose` that requires k8s.io/kubernetes; the -ldflags that
    stamp the release in. k8s.io/kubernetes's go.mod names the staging modules to replace, and
    its release time (the module proxy's .info) is stamped in as the build date."""
    versions = layout.versions
    moddir = layout.module_dir(purpose)
    moddir.mkdir(parents=True, exist_ok=True)
    argv = [go, "mod", "download", "-json", f"k8s.io/kubernetes@{versions.kubernetes}"]
    got = json.loads(run_go(argv, moddir, env, layout.build_log(purpose)))
    staging = staging_modules(Path(got["GoMod"]).read_text())
    build_date = json.loads(Path(got["Info"]).read_text())["Time"]
    if purpose == "kube-apiserver":
        text = apiserver_gomod(versions, staging)
    else:
        text = kubernetes_gomod(versions, staging, purpose)
    (moddir / "go.mod").write_text(text)
    return version_ldflags(versions, build_date)


def _build(layout: Layout, name: str, progress: Callable[[str], None]) -> None:
    """Build `name` (kube-apiserver or etcd) in its throw-away module and install it atomically."""
    go = _which_go("the k8s lane's binaries")
    env = go_env(layout, os.environ)
    log = layout.build_log(name)
    log.write_text("")
    started = time.monotonic()
    moddir = layout.module_dir(name)
    if name == "etcd":
        moddir.mkdir(parents=True, exist_ok=True)
        (moddir / "go.mod").write_text(etcd_gomod(layout.versions))
        package, ldflags, output = ETCD_MODULE, "-s -w", layout.etcd
    else:
        ldflags = _kubernetes_module(layout, name, go, env)
        package, output = APISERVER_PACKAGE, layout.apiserver
    progress(f"downloading the modules of {package} ...")
    run_go([go, "list", "-deps", package], moddir, env, log)
    progress(f"compiling {package} (log: {log}) ...")
    partial = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    run_go(go_build_argv(go, package, partial, ldflags), moddir, env, log)
    partial.replace(output)
    progress(f"built {output} in {time.monotonic() - started:.0f}s")


def _say(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    return progress or (lambda msg: print(msg, file=sys.stderr, flush=True))


def ensure_binaries(
    layout: Layout | None = None, progress: Callable[[str], None] | None = None
) -> Binaries:
    """The cached kube-apiserver and etcd, built first if missing or of another version;
    raises BuildFailed."""
    layout = layout or Layout(cache_root(os.environ))
    say = _say(progress)
    wanted = {
        "kube-apiserver": (layout.apiserver, layout.versions.kubernetes),
        "etcd": (layout.etcd, layout.versions.etcd),
    }
    with _locked(layout):
        for name, (binary, version) in wanted.items():
            if version_of(binary) != version:
                say(f"building {name} {version} with {shutil.which('go')} ...")
                _build(layout, name, say)
                found = version_of(binary)
                if found != version:
                    raise BuildFailed(f"built {binary}, but it reports version {found}")
    return Binaries(layout.apiserver, layout.etcd, layout.versions)


def _build_node(layout: Layout, names: list[str], say: Callable[[str], None]) -> None:
    """Build `names` (of NODE_COMPONENTS) with one `go build` into the stage dir, check each
    one's version, then move each into the bin dir."""
    go = _which_go("the node's Kubernetes binaries")
    say(f"building {', '.join(names)} {layout.versions.kubernetes} with {go} ...")
    env = go_env(layout, os.environ)
    log = layout.build_log("node")
    log.write_text("")
    started = time.monotonic()
    ldflags = _kubernetes_module(layout, "node", go, env)
    moddir = layout.module_dir("node")
    packages = [component_package(n) for n in names]
    say(f"downloading the modules of {', '.join(names)} ...")
    run_go([go, "list", "-deps", *packages], moddir, env, log)
    say(f"compiling {', '.join(names)} (log: {log}) ...")
    shutil.rmtree(layout.stage_dir, ignore_errors=True)  # what an interrupted build left
    layout.stage_dir.mkdir(parents=True)
    run_go(go_build_into_argv(go, packages, layout.stage_dir, ldflags), moddir, env, log)
    layout.bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        staged = layout.stage_dir / name
        found = version_of(staged)
        if found != layout.versions.kubernetes:
            raise BuildFailed(f"built {staged}, but it reports version {found}")
        staged.replace(layout.binary(name))
    layout.stage_dir.rmdir()
    say(f"built {', '.join(names)} into {layout.bin_dir} in {time.monotonic() - started:.0f}s")


def ensure_node_binaries(
    layout: Layout | None = None, progress: Callable[[str], None] | None = None
) -> NodeBinaries:
    """The node's cached kubelet, kube-proxy, kube-scheduler, kube-controller-manager and
    kubectl of the release, those missing or of another version built first (together, in one
    `go build`); raises BuildFailed."""
    layout = layout or Layout(cache_root(os.environ))
    say = _say(progress)
    version = layout.versions.kubernetes
    with _locked(layout):
        missing = [n for n in NODE_COMPONENTS if version_of(layout.binary(n)) != version]
        if missing:
            _build_node(layout, missing, say)
    return NodeBinaries(
        kubelet=layout.binary("kubelet"),
        kube_proxy=layout.binary("kube-proxy"),
        kube_scheduler=layout.binary("kube-scheduler"),
        kube_controller_manager=layout.binary("kube-controller-manager"),
        kubectl=layout.kubectl,
        versions=layout.versions,
    )


def main(argv: list[str]) -> int:
    """`apiserver`: kube-apiserver and etcd; `node`: the node's five. Build or find them and
    print their paths."""
    if argv not in (["apiserver"], ["node"]):
        print("usage: python -m spidernet.testbed.kubebuild apiserver|node", file=sys.stderr)
        return 2
    try:
        if argv == ["apiserver"]:
            built = ensure_binaries()
            paths = [built.apiserver, built.etcd]
        else:
            node = ensure_node_binaries()
            paths = [node.kubelet, node.kube_proxy, node.kube_scheduler]
            paths += [node.kube_controller_manager, node.kubectl]
    except BuildFailed as e:
        print(e, file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
