"""The text of the CNI executables that `spidernet install-cni` writes.

A runtime starts a plugin process for every call, and CPython pays for each import on each
call (DESIGN.md, "Thin plugins, hot node service"). Every executable therefore runs with
`-I -S` (no site packages, nothing imported but builtins) and answers VERSION itself.
Plugins served by the node service (`FORWARDED`) carry the source of `forward.py` and send
every other call to the service's socket; the others hand it, with the same stdin and
environment, to the plugin module under the interpreter that installed them.
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
FORWARDED = frozenset({"spidernet-ipam", "spidernet-coordinator"})
# Forwarded plugins that, with no service listening, do the work themselves: the executable
# then runs `<python> -I -m <module>` in its place, with the same stdin (DESIGN.md). IPAM has
# no such fallback: its state is the service's.
FALLBACK = frozenset({"spidernet-coordinator"})

# The kernel reads at most this many bytes of a "#!" line (BINPRM_BUF_SIZE - 1 on Linux).
MAX_SHEBANG = 255

_TEMPLATE = """\
#!{python} -IS
# {name}: written by `spidernet install-cni`; do not edit. It answers VERSION without
# loading site packages and runs every other verb as `{python} -I -m {module}`.
import os
import sys

if os.environ.get("CNI_COMMAND") == "VERSION":
    sys.stdout.write({version_json!r})
    sys.exit(0)
try:
    os.execv({python!r}, [{python!r}, "-I", "-m", {module!r}])
except OSError as e:
    import json

    msg = "{name}: failed to start " + {python!r} + ": " + str(e.strerror)
    sys.stdout.write(json.dumps({{"cniVersion": "{current}", "code": 5, "msg": msg}}) + "\\n")
    sys.stderr.write(msg + "\\n")
    sys.exit(1)
"""


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
    if name in FORWARDED:
        return _forwarder(name, python)
    return _TEMPLATE.format(
        name=name,
        python=python,
        module=PLUGINS[name],
        version_json=cni_version.version_info_json(),
        current=cni_version.CURRENT,
    )


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
        "It is spidernet/node/cni/forward.py"
    )
    if base == os.path.realpath(sys.executable):
        code = compile(source, f"<{name}: spidernet/node/cni/forward.py>", "exec")
        blob = marshal.dumps(code)
        return f"{head}, compiled.\nimport marshal\n\nexec(marshal.loads({blob!r}))\n"
    return f"{head}.\n{source}"
