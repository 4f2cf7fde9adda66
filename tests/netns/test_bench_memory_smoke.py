"""`python -m bench.memory --quick --calls 20` runs end to end and writes its numbers (in the
netns lane with the other benchmarks' smoke tests: it runs `spidernet serve`, the installed
spidernet-ipam and Go host-local as root). No size is asserted: the benchmark reports
resident sets beside their goals, it does not judge them."""

from __future__ import annotations

import json
from pathlib import Path

from spidernet.testbed.benchsmoke import positive, run_quick

ENDPOINTS = 20


def test_quick_memory_benchmark_writes_its_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = run_quick("memory", out, "--calls", str(ENDPOINTS))
    assert "Part 3: plugin process peak RSS" in done.stdout

    doc = json.loads((out / "memory.json").read_text())
    keys = {"machine", "config", "goals", "service", "plugins", "ratios", "checks", "runtime_s"}
    assert keys <= set(doc)
    assert doc["config"]["quick"] is True
    assert doc["config"]["endpoints"] == ENDPOINTS
    assert doc["machine"]["kernel"]

    service = doc["service"]
    ends = service["endpoints"]
    for snap in (service["idle"], ends["holding"], ends["released"]):
        serve, *below = snap["rows"]
        assert serve["process"] == "spidernet serve"
        assert positive(serve["vmrss_kb"]), serve
        assert serve["vmhwm_kb"] >= serve["vmrss_kb"]
        # The namespace broker is the service's child, reported in a row of its own.
        brokers = [r for r in below if r["process"] == "namespace broker"]
        (broker,) = brokers
        assert broker["depth"] == 1, below
        assert positive(broker["vmrss_kb"])
    assert ends["n"] == ENDPOINTS
    assert ends["allocated_while_held"] == ENDPOINTS
    assert ends["allocated_after_release"] == 0

    calls = doc["config"]["plugin_calls"]
    assert set(doc["plugins"]) == {"spidernet-ipam", "spidernet-ipam-python", "host-local"}
    for side, row in doc["plugins"].items():
        for verb in ("ADD", "DEL"):
            assert row[verb]["n"] == calls, (side, verb)
            assert all(positive(kb) for kb in row[verb]["maxrss_kb"]), (side, verb)
            assert row[verb]["max_kb"] >= row[verb]["median_kb"] > 0
    assert all(positive(kb) for kb in doc["plugins_floor"]["maxrss_kb"])
    for key in (
        "spidernet_ipam_over_host_local_add",
        "spidernet_ipam_over_host_local_del",
        "spidernet_ipam_python_over_host_local_add",
        "spidernet_ipam_python_over_host_local_del",
    ):
        assert positive(doc["ratios"].get(key)), (key, doc["ratios"])

    # Verified by the run itself; it fails otherwise.
    assert doc["checks"] == {
        "pool_allocated_after_release": 0,
        "pool_allocated_after_plugin_calls": 0,
        "host_local_leases": 0,
    }
