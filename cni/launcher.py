"""The text of the CNI executables that `spidernet install-cni` writes.

A runtime starts a plugin process for every call, and CPython pays for each import on each
call (DESIGN.md, "Thin plugins, hot node service"). Every executable therefore runs with
`-I -S` (no site packages, nothing imported but builtins) and answers VERSION itself.
Every plugin is served by the node service: its executable carries the source of
`forward.py` (or is compiled from `forward.c`, see install.py) and sends every other call
to the service's socket. The coordinator and the ifacer (`FALLBACK`) do the work in a
process of their own when no service listens.
"""

from __future__ import annotations

import marshal
import os
import sys
from pathlib import Path

from . import version as cni_version

PLUGINS: dict[str, str] = {
    "spidernet-ipam": "spidernet.node.ipam",
    "spidernet-coordinator": "spidernet.node.coordinator",
    "spidernet-ifacer": "spidernet.node.ifacer",
}

# Plugins whose work happens in the node service; the executable only forwards the call.
FORWARDED = frozenset(PLUGINS)
# Forwarded plugins that, with no service listening, do the work themselves: the executable
# then runs `<python> -I -m <module>` in its place, with the same stdin (DESIGN.md). IPAM has
# no such fallback: its state is the service's.
FALLBACK = frozenset({"spidernet-coordinator", "spidernet-ifacer"})

# The kernel reads at most this many bytes of a "#!" line (BINPRM_BUF_SIZE - 1 on Linux).
MAX_SHEBANG = 255

_FORWARDER_TAIL = """
if __name__ == "__main__":
    main({name!r}, {version_json!r}, {fallback!r})
"""


class LauncherError(ValueError):
    """Raised when an executable cannot be written for the given interpreter path."""


def render(name: str, python: str) -> str:
    """The executable for plugin `name`, run by the interpreter at `python`."""
    if name not in PLUGINS:
        raise LauncherError(f"unknown plugin '{name}'")
    if not python.startswith("/") or any(c.isspace() for c in python):
        raise LauncherError(f"interpreter path '{python}' must be absolute without spaces")
    if len(f"#!{python} -IS") > MAX_SHEBANG:
        raise LauncherError(f"interpreter path '{python}' is too long for a '#!' line")
    return _forwarder(name, python)


def _forwarder(name: str, python: str) -> str:
    """The forwarding executable: `forward.py` plus a call of its `main`.

    Two start-up costs are cut, since each is paid on every CNI call: the interpreter is the
    venv's base interpreter (the symlink's target: the forwarder needs no site packages,
    and a venv interpreter reads pyvenv.cfg first), and when that interpreter is the one
    running install-cni the code is stored compiled (marshal is builtin; its format is
    fixed within a Python version), so nothing is compiled per call.
    """
    base = os.path.realpath(python)
    if any(c.isspace() for c in base) or len(f"#!{base} -IS") > MAX_SHEBANG:
        base = python
    source = Path(__file__).with_name("forward.py").read_text(encoding="utf-8")
    fallback = [python, "-I", "-m", PLUGINS[name]] if name in FALLBACK else None
    source += _FORWARDER_TAIL.format(
        name=name, version_json=cni_version.version_info_json(), fallback=fallback
    )
    head = (
        f"#!{base} -IS\n# {name}: written by `spidernet install-cni`; do not edit. "
        "It is spidernet/cni/forward.py"
    )
    if base == os.path.realpath(sys.executable):
        code = compile(source, f"<{name}: spidernet/cni/forward.py>", "exec")
        blob = marshal.dumps(code)
        return f"{head}, compiled.\nimport marshal\n\nexec(marshal.loads({blob!r}))\n"
    return f"{head}.\n{source}"
