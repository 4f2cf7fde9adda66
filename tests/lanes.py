"""Run the test lanes of `make test` and print one summary line per lane.

Usage: tests/lanes.py [LANE ...]   (default: every lane, in order)

Check lanes (lint, typecheck, contracts) pass or fail; test lanes run pytest with a JUnit
report, and a test lane that ran zero tests fails. The summary names every failed test with
the first line of its message (CI keeps only the log's tail); its last line is the total, in
the "N passed, N failed, N skipped" form CI reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUILD = ROOT / ".build"


@dataclass
class Outcome:
    """What one lane did."""

    lane: str
    ok: bool
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    note: str = ""
    failures: list[str] = field(default_factory=list)


def _run(cmd: list[str], cwd: Path = ROOT) -> bool:
    print(f"$ {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, cwd=cwd, check=False).returncode == 0


def lint() -> Outcome:
    ok = _run([str(BIN / "ruff"), "check", "."]) and _run(
        [str(BIN / "ruff"), "format", "--check", "."]
    )
    return Outcome("lint", ok, note="ruff check + ruff format --check")


def typecheck() -> Outcome:
    # mypy names modules after their directories; the repository root is the `spidernet`
    # package, so check it through a directory named `spidernet` that links to the root.
    base = BUILD / "typecheck"
    base.mkdir(parents=True, exist_ok=True)
    link = base / "spidernet"
    if not link.is_symlink():
        link.symlink_to(Path("..", ".."))
    targets = ["__init__.py", "__main__.py", "cli.py", "completion.py", "cni", "netconf", "node"]
    targets += ["control", "bench", "testbed"]
    targets.append("tests")
    cmd = [str(BIN / "mypy"), "--config-file", str(ROOT / "pyproject.toml")]
    cmd += [f"spidernet/{t}" for t in targets]
    return Outcome("typecheck", _run(cmd, cwd=base), note="mypy --strict")


def contracts() -> Outcome:
    return Outcome("contracts", _run([str(BIN / "lint-imports")]), note="import-linter")


def _report(lane: str) -> Path:
    report = BUILD / f"junit-{lane}.xml"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    return report


def _pytest(lane: str, path: str, *, root: bool = False) -> Outcome:
    if root and os.geteuid() != 0:
        return Outcome(lane, False, note="needs root (network namespaces)")
    report = _report(lane)
    start = time.monotonic()
    code = subprocess.run(
        [sys.executable, "-m", "pytest", path, f"--junitxml={report}", "-q"], cwd=ROOT, check=False
    ).returncode
    return _counted(Outcome(lane, code == 0, seconds=time.monotonic() - start), report)


def kernel() -> Outcome:
    """tests/kernel inside a VM running Debian's kernel (spidernet.testbed.kernelvm): its
    JUnit report comes back through a shared directory and is counted like any other. A VM
    that cannot boot, or that writes no report, fails the lane with the reason."""
    if os.geteuid() != 0:
        return Outcome("kernel", False, note="needs root (kernel cache, network namespaces)")
    from spidernet.testbed import kernelvm

    report = _report("kernel")
    start = time.monotonic()
    run = kernelvm.run_lane(ROOT, report)
    out = _counted(Outcome("kernel", run.ok, seconds=time.monotonic() - start), report)
    if run.ok and out.ok:
        out.note = f"{run.note}; kernel fetch {run.fetch_seconds:.0f}s"
    elif not run.ok:
        out.note = run.note
    return out


def _counted(out: Outcome, report: Path) -> Outcome:
    """`out` with the counts of JUnit `report`; a lane that ran zero tests failed."""
    if report.exists():
        root = ET.parse(report).getroot()
        for suite in root.iter("testsuite"):
            total = int(suite.get("tests", 0))
            failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skipped = int(suite.get("skipped", 0))
            out.failed += failed
            out.skipped += skipped
            out.passed += total - failed - skipped
        out.failures += _failures(root)
    if out.passed + out.failed == 0:
        out.ok = False
        out.note = "ran zero tests"
    return out


def _failures(root: ET.Element) -> list[str]:
    """Each failed or erred test case of a JUnit report: its id and its message's first line."""
    named = []
    for case in root.iter("testcase"):
        for bad in (*case.findall("failure"), *case.findall("error")):
            where = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
            said = (bad.get("message") or bad.text or "").strip().splitlines()
            named.append(f"{where}: {said[0][:200]}" if said else where)
    return named


def k8s() -> Outcome:
    """tests/k8s against a real kube-apiserver and etcd (spidernet.testbed.kubecluster); the
    binaries are built with Go first when the cache lacks them (about ten minutes, once)."""
    from spidernet.testbed import kubecluster

    start = time.monotonic()
    try:
        binaries = kubecluster.ensure_binaries()
    except kubecluster.BuildFailed as e:
        print(e, file=sys.stderr)
        return Outcome("k8s", False, seconds=time.monotonic() - start, note=str(e).splitlines()[0])
    ready = time.monotonic() - start
    out = _pytest("k8s", "tests/k8s")
    if not out.note:
        out.note = f"kube-apiserver {binaries.versions.kubernetes}, binaries ready in {ready:.0f}s"
    return out


def node() -> Outcome:
    """tests/node on a real node (spidernet.testbed.node): the node's programs and the images
    are built first where the cache lacks them, on this machine's network; then pytest runs
    in network and mount namespaces of its own, where the node lives. Afterwards the kernel
    settings the kubelet needs are checked to be back as they were, and no cgroup of the
    node is left, even if pytest itself died."""
    if os.geteuid() != 0:
        return Outcome("node", False, note="needs root (namespaces, mounts, cgroups)")
    from spidernet.testbed import nodehost, nodelane
    from spidernet.testbed.kubecluster import BuildFailed

    start = time.monotonic()
    try:
        nodelane.prepare()
    except BuildFailed as e:
        print(e, file=sys.stderr)
        return Outcome("node", False, seconds=time.monotonic() - start, note=str(e).splitlines()[0])
    ready = time.monotonic() - start
    record = nodehost.settings_record()
    nodehost.restore_recorded(record)  # a lane that died before this one
    report = _report("node")
    argv = ["unshare", "--net", "--mount", "--propagation", "slave", "--"]
    argv += [sys.executable, "-m", "pytest", "tests/node", f"--junitxml={report}", "-q"]
    try:
        code = subprocess.run(argv, cwd=ROOT, check=False).returncode
    finally:
        # The node restores the kernel settings itself; if pytest died first, its record
        # of what it found is still there.
        nodehost.restore_recorded(record)
        left = nodehost.remove_leftover_cgroups()
    out = _counted(Outcome("node", code == 0, seconds=time.monotonic() - start), report)
    if left:
        out.ok = False
        out.note = f"cgroups left: {', '.join(left)}"
    elif not out.note:
        out.note = f"programs and images ready in {ready:.0f}s"
    return out


LANES: dict[str, Callable[[], Outcome]] = {
    "lint": lint,
    "typecheck": typecheck,
    "contracts": contracts,
    "unit": partial(_pytest, "unit", "tests/unit"),
    "netns": partial(_pytest, "netns", "tests/netns", root=True),
    "kernel": kernel,
    "k8s": k8s,
    "node": node,
    "package": partial(_pytest, "package", "tests/package"),
}


def main(argv: list[str]) -> int:
    """Run the named lanes (all by default); exit 1 when any failed."""
    names = argv or list(LANES)
    unknown = [n for n in names if n not in LANES]
    if unknown:
        print(f"unknown lane(s): {', '.join(unknown)}; lanes: {', '.join(LANES)}", file=sys.stderr)
        return 2
    outcomes = []
    for name in names:
        print(f"\n=== lane {name} ===", flush=True)
        outcomes.append(LANES[name]())
    print("\n=== summary ===")
    for o in outcomes:
        status = "ok" if o.ok else "FAILED"
        counts = f"{o.passed} passed, {o.failed} failed, {o.skipped} skipped"
        tested = o.passed + o.failed + o.skipped > 0
        detail = f"{counts} in {o.seconds:.1f}s" if tested else ""
        print(f"lane {o.lane:<10} {status:<7} {detail}{'; ' if detail and o.note else ''}{o.note}")
    for o in outcomes:
        for failure in o.failures:
            print(f"  {o.lane}: {failure}")
    passed = sum(o.passed for o in outcomes)
    failed = sum(o.failed for o in outcomes) + sum(1 for o in outcomes if not o.ok and not o.failed)
    skipped = sum(o.skipped for o in outcomes)
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
