"""`python -m bench.chain --quick` runs end to end and writes its plot and numbers.

In the netns lane because it builds namespaces and runs the real chains (Go macvlan +
host-local; macvlan + spidernet-ipam + spidernet-coordinator against a real `spidernet
serve`) as root. No timing is asserted: the benchmark reports ratios, it does not judge them.
"""

from __future__ import annotations

import json
from pathlib import Path

from spidernet.testbed.benchsmoke import positive, run_quick

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A hang guard only; --quick takes about 10 s with the coordinator in the node service.

RATIOS = (
    "add_spidernet_over_reference",
    "del_spidernet_over_reference",
    "add_spidernet_over_reference_mean",
    "del_spidernet_over_reference_mean",
    "add_macvlan_process_spidernet_over_reference",
    "del_macvlan_process_spidernet_over_reference",
)


def test_quick_chain_benchmark_writes_png_and_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = run_quick("chain", out)
    assert "Ratios spidernet / reference" in done.stdout

    assert (out / "chain.png").read_bytes()[:8] == PNG_SIGNATURE

    doc = json.loads((out / "chain.json").read_text())
    keys = {"machine", "config", "goal", "ratios", "chain", "plugins", "ipam_alone", "checks"}
    assert keys <= set(doc)
    assert doc["config"]["quick"] is True
    assert doc["machine"]["cpus"] >= 1
    assert doc["machine"]["kernel"]
    for key in RATIOS:
        assert positive(doc["ratios"].get(key)), (key, doc["ratios"].get(key))

    calls = doc["config"]["calls"]
    for side, plugins in (
        ("reference", {"macvlan"}),
        ("spidernet", {"macvlan", "spidernet-coordinator"}),
    ):
        for verb in ("ADD", "DEL"):
            row = doc["chain"][side][verb]
            assert row["n"] == calls
            assert len(row["samples_ms"]) == calls
            assert all(positive(row[k]) for k in ("mean_ms", "median_ms", "p90_ms"))
            assert set(doc["plugins"][side][verb]) == plugins
            assert doc["ipam_alone"][side][verb]["n"] == calls

    # Verified by the run itself after every DEL; the run fails otherwise.
    assert doc["checks"]["pool_allocated_ip_count"] == 0
    assert doc["checks"]["host_links"] == ["eth0", "lo"]
