"""`spidernet install-cni`: put the plugin executables into a CNI bin directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .cni.launcher import PLUGINS, render


def install_cni(bin_dir: Path, python: str) -> list[Path]:
    """Write every plugin executable into `bin_dir` atomically; returns their paths.

    Each file is written beside its final name and renamed over it, so a runtime that starts
    a plugin during an upgrade sees either the old or the new file, never half of one.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(PLUGINS):
        text = render(name, python)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=bin_dir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, bin_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(bin_dir / name)
    return written
