"""`python -m bench.ipam --quick` runs end to end and writes its plot and numbers.

In the netns lane because it runs the real plugins (Go host-local, the installed
spidernet-ipam) against a real `spidernet serve` as root. No timing is asserted: the
benchmark reports ratios, it does not judge them.
"""

from __future__ import annotations

import json
from pathlib import Path

from spidernet.testbed.benchsmoke import positive, run_quick

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A hang guard only; --quick takes well under a minute.

RATIOS = (
    "ipam_over_host_local_add",
    "ipam_over_host_local_del",
    "ipam_python_over_host_local_add",
    "ipam_python_over_host_local_del",
    "ipam_over_python_floor_add",
    "ipam_over_python_floor_del",
    "ipam_over_venv_floor_add",
    "python_floor_over_host_local_add",
    "alloc_largest_over_smallest",
)


def test_quick_benchmark_writes_png_and_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = run_quick("ipam", out)
    assert "spidernet-ipam (compiled) / host-local" in done.stdout
    assert "spidernet-ipam (Python) / host-local" in done.stdout

    assert (out / "ipam.png").read_bytes()[:8] == PNG_SIGNATURE

    doc = json.loads((out / "ipam.json").read_text())
    assert {"machine", "config", "ratios", "per_call", "allocation", "runtime_s"} <= set(doc)
    assert doc["config"]["quick"] is True
    assert doc["machine"]["cpus"] >= 1
    assert doc["machine"]["kernel"]
    assert doc["machine"]["date"]
    for key in RATIOS:
        assert positive(doc["ratios"].get(key)), (key, doc["ratios"].get(key))

    calls = doc["config"]["calls"]
    for side in ("spidernet-ipam", "spidernet-ipam-python", "host-local"):
        for verb in ("ADD", "DEL"):
            row = doc["per_call"][side][verb]
            assert row["n"] == calls
            assert all(positive(row[k]) for k in ("mean_ms", "median_ms", "p90_ms"))
    for floor in ("python3-floor", "venv-python-floor"):
        assert doc["per_call"][floor]["run"]["n"] == calls

    cells = doc["allocation"]["cells"]
    prefixes, fills = doc["config"]["prefixes"], doc["config"]["fills"]
    measured = {(c["prefix"], c["fill"]) for c in cells if not c["control"]}
    assert measured == {(p, f) for p in prefixes for f in fills}
    assert {c["fill"] for c in cells if c["control"]} == set(fills)
    for cell in cells:
        want = 0 if cell["control"] else round(cell["fill"] * cell["usable"])
        assert cell["held"] == want
        assert cell["allocate"]["n"] == doc["config"]["pairs"]
        assert positive(cell["allocate"]["median_ms"])
