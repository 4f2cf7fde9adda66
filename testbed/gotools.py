"""Go command-line tools the tests use, built with the machine's Go from the module proxy.

`ensure_kustomize` builds `kustomize` (module sigs.k8s.io/kustomize/kustomize/v5) once into
`<cache>/kustomize/<version>/bin` with `go install` and afterwards only checks that the cached
binary reports that version. Its go.mod has no `replace` directives, so, unlike kube-apiserver
(kubespec), it needs no throw-away module. The Go caches and environment are the k8s lane's
(kubespec.go_env), so modules downloaded once serve every build.

`ensure_multus` builds Multus's thin plugin, the node lane's CNI (`multus`, package
gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus), into `<cache>/multus/<version>/bin`.
`go install ...@v4.3.0` is refused here: it asks the module proxy for the module's version
list (to report a deprecation) and proxy.golang.org answers 403 for that list, although it
serves the version itself. So a throw-away module requires the release and `go build`s the
package, as upstream's hack/build-go.sh does (CGO_ENABLED=0, version, commit and date stamped
into pkg/multus). The thin plugin is enough: the kubelet's runtime calls it as a CNI plugin
and it reads the pod's NetworkAttachmentDefinitions with a kubeconfig; the thick plugin's
daemon and shim add nothing a node lane needs.

`ensure_helm` builds `helm` (module helm.sh/helm/v4, package cmd/helm) with `go install`, the
release version stamped in as upstream's Makefile does (`helm version` reports it), into
`<cache>/helm/<version>/bin`. deploy/chart is rendered, linted and installed with it.

    python -m spidernet.testbed.gotools kustomize   # build or find it; print its path
    python -m spidernet.testbed.gotools multus      # the same for multus
    python -m spidernet.testbed.gotools helm        # the same for helm
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from spidernet.testbed.kubebuild import BuildFailed, run_go
from spidernet.testbed.kubespec import Layout, cache_root, go_build_argv, go_env

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
# The newest release whose go.mod accepts this machine's Go 1.26 (v5.8.3 asks for Go 1.27).
KUSTOMIZE_VERSION = "v5.8.2"
# Multus's module path is gopkg.in's (its go.mod's `module` line since v4); the proxy refuses
# github.com/k8snetworkplumbingwg/multus-cni/v4 (403, "not available").
MULTUS_MODULE = "gopkg.in/k8snetworkplumbingwg/multus-cni.v4"
MULTUS_VERSION = "v4.3.0"
MULTUS_PACKAGE = MULTUS_MODULE + "/cmd/multus"  # the thin plugin
MULTUS_GO_DIRECTIVE = "1.25.0"  # its own go.mod's
HELM_MODULE = "helm.sh/helm/v4"
HELM_VERSION = "v4.3.2"
HELM_PACKAGE = HELM_MODULE + "/cmd/helm"


@dataclass(frozen=True)
class GoTool:
    """Where one version of one Go tool is cached."""

    root: Path
    name: str
    module: str
    version: str

    @property
    def dir(self) -> Path:
        """`<root>/<name>/<version>`."""
        return self.root / self.name / self.version

    @property
    def binary(self) -> Path:
        return self.dir / "bin" / self.name

    @property
    def lock(self) -> Path:
        """Held while building, so two runs never build at once."""
        return self.dir / ".build.lock"

    @property
    def log(self) -> Path:
        """What `go` printed while building."""
        return self.dir / "build.log"

    @property
    def module_dir(self) -> Path:
        """The throw-away module that builds it, for a tool `go install` cannot build."""
        return self.dir / "src"


def kustomize_tool(env: Mapping[str, str] | None = None) -> GoTool:
    """kustomize KUSTOMIZE_VERSION under the cache root ($SPIDERNET_CACHE, else
    /var/cache/spidernet)."""
    root = cache_root(os.environ if env is None else env)
    return GoTool(root, "kustomize", KUSTOMIZE_MODULE, KUSTOMIZE_VERSION)


def reported_kustomize_version(output: str) -> str | None:
    """The version `kustomize version` printed (`v5.8.2`, from the binary's module build
    information), or None."""
    found = re.search(r"^(v\d+\.\d+\.\d+)\s*$", output.strip(), re.MULTILINE)
    return found.group(1) if found else None


def _version_of(
    binary: Path, flag: str = "version", read: Callable[[str], str | None] | None = None
) -> str | None:
    """The version `binary FLAG` prints, as `read` finds it in its output (kustomize's
    reader by default); None when it is missing or says nothing readable."""
    if not binary.is_file():
        return None
    try:
        out = subprocess.run(
            [str(binary), flag], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (read or reported_kustomize_version)(out.stdout)


def _go_install(
    tool: GoTool,
    package: str,
    ldflags: str,
    version_of: Callable[[Path], str | None],
    progress: Callable[[str], None] | None,
) -> Path:
    """The cached `tool` binary: `go install PACKAGE@VERSION` with `ldflags` into its cache
    unless `version_of` already finds that version there; raises BuildFailed."""
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    tool.dir.mkdir(parents=True, exist_ok=True)
    with tool.lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building: wait for it
        if version_of(tool.binary) == tool.version:
            return tool.binary
        go = shutil.which("go")
        if go is None:
            raise BuildFailed(f"failed to build {tool.name}: no `go` on PATH")
        say(f"building {tool.name} {tool.version} with {go} (log: {tool.log}) ...")
        started = time.monotonic()
        env = go_env(Layout(tool.root), os.environ)
        env["GOBIN"] = str(tool.binary.parent)
        tool.log.write_text("")
        argv = ["nice", "-n", "19", go, "install", "-trimpath", f"-ldflags={ldflags}"]
        run_go([*argv, f"{package}@{tool.version}"], tool.dir, env, tool.log)
        found = version_of(tool.binary)
        if found != tool.version:
            raise BuildFailed(f"built {tool.binary}, but it reports version {found}")
        say(f"built {tool.binary} in {time.monotonic() - started:.0f}s")
    return tool.binary


def ensure_kustomize(
    tool: GoTool | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """The cached kustomize binary, built first with `go install` if missing or of another
    version; raises BuildFailed."""
    tool = tool or kustomize_tool()
    return _go_install(tool, tool.module, "-s -w", _version_of, progress)


def multus_tool(env: Mapping[str, str] | None = None) -> GoTool:
    """Multus MULTUS_VERSION under the cache root ($SPIDERNET_CACHE, else /var/cache/spidernet)."""
    root = cache_root(os.environ if env is None else env)
    return GoTool(root, "multus", MULTUS_MODULE, MULTUS_VERSION)


def multus_gomod(version: str) -> str:
    """The throw-away module that builds Multus's thin plugin (its go.mod has no `replace`)."""
    return (
        "module spidernet.test/multus-build\n\n"
        f"go {MULTUS_GO_DIRECTIVE}\n\n"
        f"require {MULTUS_MODULE} {version}\n"
    )


def multus_ldflags(version: str, commit: str, date: str) -> str:
    """Stripped, with what upstream's hack/build-go.sh stamps into pkg/multus for a release
    build (a tag, a clean tree, `,released`)."""
    pkg = MULTUS_MODULE + "/pkg/multus"
    stamps = {
        "version": version,
        "commit": commit,
        "gitTreeState": "clean",
        "releaseStatus": ",released",
        "date": date,
    }
    return " ".join(["-s", "-w", *(f"-X {pkg}.{k}={v}" for k, v in stamps.items())])


def reported_multus_version(output: str) -> str | None:
    """The version `multus -version` printed (`multus: version:v4.3.0(clean,released), commit:
    ..., date: ...`), or None (an unstamped build says `version:master@git`)."""
    found = re.search(r"^multus: version:(v\d+\.\d+\.\d+)\(", output, re.MULTILINE)
    return found.group(1) if found else None


def _multus_version_of(binary: Path) -> str | None:
    return _version_of(binary, "-version", reported_multus_version)


def ensure_multus(
    tool: GoTool | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """The cached `multus` (thin plugin) binary, built first in a throw-away module if missing
    or of another version; raises BuildFailed."""
    tool = tool or multus_tool()
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    tool.dir.mkdir(parents=True, exist_ok=True)
    with tool.lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building: wait for it
        if _multus_version_of(tool.binary) == tool.version:
            return tool.binary
        go = shutil.which("go")
        if go is None:
            raise BuildFailed(f"failed to build {tool.name}: no `go` on PATH")
        say(f"building {tool.name} {tool.version} with {go} (log: {tool.log}) ...")
        started = time.monotonic()
        env = go_env(Layout(tool.root), os.environ)
        tool.log.write_text("")
        tool.module_dir.mkdir(parents=True, exist_ok=True)
        (tool.module_dir / "go.mod").write_text(multus_gomod(tool.version))
        # The proxy's .info names the tag's commit (Origin.Hash) and time: what a release
        # build stamps in as commit and date.
        argv = [go, "mod", "download", "-json", f"{tool.module}@{tool.version}"]
        got = json.loads(run_go(argv, tool.module_dir, env, tool.log))
        info = json.loads(Path(got["Info"]).read_text())
        commit = str(info.get("Origin", {}).get("Hash", "unknown"))
        ldflags = multus_ldflags(tool.version, commit, str(info["Time"]))
        partial = tool.binary.with_name(tool.name + ".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        run_go(go_build_argv(go, MULTUS_PACKAGE, partial, ldflags), tool.module_dir, env, tool.log)
        found = _multus_version_of(partial)
        if found != tool.version:
            raise BuildFailed(f"built {partial}, but it reports version {found}")
        partial.replace(tool.binary)
        say(f"built {tool.binary} in {time.monotonic() - started:.0f}s")
    return tool.binary


def helm_tool(env: Mapping[str, str] | None = None) -> GoTool:
    """helm HELM_VERSION under the cache root ($SPIDERNET_CACHE, else /var/cache/spidernet)."""
    root = cache_root(os.environ if env is None else env)
    return GoTool(root, "helm", HELM_MODULE, HELM_VERSION)


def helm_ldflags(version: str) -> str:
    """Stripped, with the version stamped where upstream's Makefile puts it."""
    pkg = HELM_MODULE + "/internal/version"
    return f"-s -w -X {pkg}.version={version} -X {pkg}.gitTreeState=clean"


def _helm_version_of(binary: Path) -> str | None:
    """What `helm version --template {{.Version}}` prints (`v4.3.2`), or None."""
    if not binary.is_file():
        return None
    try:
        out = subprocess.run(
            [str(binary), "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.fullmatch(r"(v\d+\.\d+\.\d+)", out.stdout.strip())
    return found.group(1) if found else None


def ensure_helm(tool: GoTool | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """The cached helm binary, built first with `go install` if missing or of another
    version; raises BuildFailed."""
    tool = tool or helm_tool()
    return _go_install(tool, HELM_PACKAGE, helm_ldflags(tool.version), _helm_version_of, progress)


def main(argv: list[str]) -> int:
    """`kustomize`, `multus` or `helm`: build or find it and print its path."""
    ensure = {"kustomize": ensure_kustomize, "multus": ensure_multus, "helm": ensure_helm}
    if len(argv) != 1 or argv[0] not in ensure:
        print("usage: python -m spidernet.testbed.gotools kustomize|multus|helm", file=sys.stderr)
        return 2
    try:
        print(ensure[argv[0]]())
    except BuildFailed as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
