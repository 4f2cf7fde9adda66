"""Go command-line tools the tests use, built with the machine's Go from the module proxy.

`ensure_kustomize` builds `kustomize` (module sigs.k8s.io/kustomize/kustomize/v5) once into
`<cache>/kustomize/<version>/bin` with `go install` and afterwards only checks that the cached
binary reports that version. Its go.mod has no `replace` directives, so, unlike kube-apiserver
(kubespec), it needs no throw-away module. The Go caches and environment are the k8s lane's
(kubespec.go_env), so modules downloaded once serve every build.

    python -m spidernet.testbed.gotools kustomize   # build or find it; print its path
"""

from __future__ import annotations

import fcntl
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
from spidernet.testbed.kubespec import Layout, cache_root, go_env

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
# The newest release whose go.mod accepts this machine's Go 1.26 (v5.8.3 asks for Go 1.27).
KUSTOMIZE_VERSION = "v5.8.2"


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


def _version_of(binary: Path) -> str | None:
    if not binary.is_file():
        return None
    try:
        out = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return reported_kustomize_version(out.stdout)


def ensure_kustomize(
    tool: GoTool | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """The cached kustomize binary, built first with `go install` if missing or of another
    version; raises BuildFailed."""
    tool = tool or kustomize_tool()
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    tool.dir.mkdir(parents=True, exist_ok=True)
    with tool.lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building: wait for it
        if _version_of(tool.binary) == tool.version:
            return tool.binary
        go = shutil.which("go")
        if go is None:
            raise BuildFailed(f"failed to build {tool.name}: no `go` on PATH")
        say(f"building {tool.name} {tool.version} with {go} (log: {tool.log}) ...")
        started = time.monotonic()
        env = go_env(Layout(tool.root), os.environ)
        env["GOBIN"] = str(tool.binary.parent)
        tool.log.write_text("")
        argv = ["nice", "-n", "19", go, "install", "-trimpath", "-ldflags=-s -w"]
        run_go([*argv, f"{tool.module}@{tool.version}"], tool.dir, env, tool.log)
        found = _version_of(tool.binary)
        if found != tool.version:
            raise BuildFailed(f"built {tool.binary}, but it reports version {found}")
        say(f"built {tool.binary} in {time.monotonic() - started:.0f}s")
    return tool.binary


def main(argv: list[str]) -> int:
    """`kustomize`: build or find kustomize and print its path."""
    if argv != ["kustomize"]:
        print("usage: python -m spidernet.testbed.gotools kustomize", file=sys.stderr)
        return 2
    try:
        print(ensure_kustomize())
    except BuildFailed as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
