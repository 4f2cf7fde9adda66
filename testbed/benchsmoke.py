"""What the benchmarks' smoke tests share: run `python -m bench.<name> --quick --out DIR` from
the repository root, and tell a real measurement (a positive, finite number) from a missing
one. The smoke tests check that each benchmark runs and writes its results, never its speed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # a hang guard; each --quick run takes well under a minute


def run_quick(name: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`python -m bench.NAME --quick --out OUT [EXTRA...]`, asserted to exit 0 (its output's
    tails in the message when it does not)."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def positive(value: object) -> bool:
    """A measurement: a finite number above zero."""
    return isinstance(value, int | float) and math.isfinite(value) and value > 0
