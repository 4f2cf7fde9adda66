"""`python -m bench.detect --quick` runs end to end and writes its numbers (in the netns
lane: it builds namespaces and runs the real chains as root). No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

from spidernet.testbed.benchsmoke import run_quick


def test_quick_detect_benchmark_writes_its_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_quick("detect", out)
    doc = json.loads((out / "detect.json").read_text())
    cells = {(p["profile"], p["family"], p["case"]) for p in doc["probes"]}
    assert cells == {
        (profile, family, case)
        for profile in ("fast", "rfc")
        for family in ("IPv4", "IPv6")
        for case in ("answered", "silent")
    }
    for probe in doc["probes"]:
        # The gateway answers every probe; nobody holds the free address.
        want = probe["probes"] if probe["case"] == "answered" else 0
        assert probe["answered"] == want, probe
        assert probe["median_ms"] > 0
    assert set(doc["chain_ms"]) == {"reference", "off", "conflict", "conflict+gateway"}
    assert all(v["ADD"] > 0 and v["DEL"] > 0 for v in doc["chain_ms"].values())
