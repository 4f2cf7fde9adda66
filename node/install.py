"""`spidernet install-cni`: put the plugin executables into a CNI bin directory.

Forwarding plugins (`launcher.FORWARDED`) are compiled from `cni/forward.c` with the
machine's C compiler when there is one: a CPython start-up alone costs more than twice a
Go plugin's whole call, and the forwarder does nothing a C program cannot (DESIGN.md, "Thin
plugins, hot node service"). Without a compiler they get the builtins-only Python
forwarder, which speaks the same wire, and the install says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from spidernet.cni import version as cni_version
from spidernet.cni.launcher import FALLBACK, FORWARDED, PLUGINS, LauncherError, render
from spidernet.node.errors import NodeError

FORWARDERS = ("auto", "c", "python")
_SOURCE = Path(__file__).parent.parent / "cni" / "forward.c"
# No -Werror: a newer compiler's new warning must not cost a user the compiled forwarder
# (the unit lane compiles with warnings shown and fails on any).
_CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-s"]


@dataclass(frozen=True)
class Installed:
    """One executable written; `note` says why a fallback was taken."""

    path: Path
    kind: str  # "compiled forwarder" or "python forwarder"
    note: str = ""


class ForwarderBuildError(NodeError, LauncherError):
    """The C forwarder could not be compiled (no compiler, or the compiler failed)."""


def _c_string(text: str) -> str:
    # JSON strings are valid C string literals for the characters json.dumps emits.
    return json.dumps(text)


def compile_forwarder(
    name: str, out: Path, cc: str | None = None, *, fallback: tuple[str, str] | None = None
) -> str:
    """Compile the forwarder of plugin `name` into `out`; `fallback` (interpreter, module)
    is what runs in its place when no service listens. Returns the compiler's warnings
    (empty when clean); raises ForwarderBuildError."""
    compiler = cc or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ForwarderBuildError("no C compiler (cc or gcc) on PATH")
    with tempfile.TemporaryDirectory(prefix="spidernet-cc-") as tmp:
        header = Path(tmp, "forward_version.h")
        header.write_text(
            f"#define VERSION_JSON {_c_string(cni_version.version_info_json())}\n",
            encoding="utf-8",
        )
        defines = [f"-DPLUGIN_NAME={_c_string(name)}"]
        if fallback is not None:
            defines += [
                f"-DFALLBACK_PYTHON={_c_string(fallback[0])}",
                f"-DFALLBACK_MODULE={_c_string(fallback[1])}",
            ]
        base = [compiler, *_CFLAGS, *defines, f"-I{tmp}", "-o", str(out), str(_SOURCE)]
        # Static first: the executable is copied onto nodes whose C library may be older
        # than the one it was built against (an image's, such as Debian trixie's glibc 2.41,
        # onto a Debian 12 node's 2.36); it uses nothing a static glibc cannot give.
        done = _cc([*base, "-static"], compiler)
        if done.returncode == 0:
            return done.stderr.strip()
        static_error = (done.stderr or done.stdout).strip().splitlines()[:1]
        done = _cc(base, compiler)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise ForwarderBuildError(f"{compiler} failed: {' | '.join(lines[:5])}")
        return "\n".join(
            [
                f"linked against this machine's C library, not statically "
                f"({' '.join(static_error) or 'no static libc'}): it runs only where that "
                "library is at least as new",
                *filter(None, [done.stderr.strip()]),
            ]
        )


def _cc(argv: list[str], compiler: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except OSError as e:
        raise ForwarderBuildError(f"failed to run {compiler}: {e.strerror}") from e


def _place(bin_dir: Path, name: str, write: Callable[[Path], object]) -> Path:
    """Create `bin_dir/name` atomically: built beside its final name, then renamed over it,
    so a runtime that starts a plugin during an upgrade sees the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=bin_dir)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o755)
        os.replace(tmp, bin_dir / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return bin_dir / name


def _write_into(text: str, path: Path) -> None:
    path.write_text(text, encoding="utf-8")


def install_cni(bin_dir: Path, python: str, *, forwarder: str = "auto") -> list[Installed]:
    """Write every plugin executable into `bin_dir`; returns what was written.

    `forwarder`: "c" requires the compiled forwarder, "python" never compiles, "auto"
    compiles when it can and falls back (with a note) when it cannot.
    """
    if forwarder not in FORWARDERS:
        raise LauncherError(f"forwarder must be one of {', '.join(FORWARDERS)}")
    bin_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(PLUGINS):
        text = render(name, python)  # checks the interpreter path for every plugin
        note = ""
        if name in FORWARDED and forwarder != "python":
            try:
                fallback = (python, PLUGINS[name]) if name in FALLBACK else None
                build = partial(compile_forwarder, name, fallback=fallback)
                path = _place(bin_dir, name, build)
            except ForwarderBuildError as e:
                if forwarder == "c":
                    raise
                note = f"{e}; installed the Python forwarder instead (slower per call)"
            else:
                written.append(Installed(path, "compiled forwarder"))
                continue
        path = _place(bin_dir, name, partial(_write_into, text))
        written.append(Installed(path, "python forwarder", note))
    return written
