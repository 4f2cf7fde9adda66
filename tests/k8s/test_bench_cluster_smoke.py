"""`python -m bench.cluster` end to end, small: it must not rot.

The real entry point, as `make bench` runs it (its own kube-apiserver, both peers: spidernet's
agents and the Whereabouts binary built from the Go module proxy), with 12 pods on 3 nodes.
Only what it did is checked, never how fast: every ADD answered, every allocation found in
the cluster under its pod (after the first ADDs and after every pod was deleted and recreated
at once), the report files written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spidernet.bench.whereabouts import ensure_whereabouts
from spidernet.testbed.kubecluster import ensure_binaries

PODS, NODES = 12, 3


def test_the_cluster_bench_runs_both_peers(tmp_path: Path) -> None:
    ensure_binaries()  # (a first build happens here, not inside the bench's timeout)
    ensure_whereabouts()
    argv = [sys.executable, "-m", "spidernet.bench.cluster", "--quick"]
    argv += ["--pods", str(PODS), "--nodes", str(NODES), "--concurrency", "4"]
    argv += ["--out", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "spidernet" in done.stdout
    assert "whereabouts" in done.stdout

    doc = json.loads((tmp_path / "cluster.json").read_text())
    assert (tmp_path / "cluster.png").stat().st_size > 0
    assert doc["config"]["pods"] == PODS
    assert doc["config"]["nodes"] == NODES
    assert set(doc["peers"]) == {"spidernet", "whereabouts"}
    for name, peer in doc["peers"].items():
        assert len(peer["add"]["samples_ms"]) == PODS, name
        assert len(peer["del"]["samples_ms"]) == PODS, name
        assert peer["recorded"] == PODS, name
        assert peer["recorded_matching_answers"] == PODS, name
        assert isinstance(peer["apiserver_409"], int), name
        # Deleted and recreated at once: every new pod got an address, the record shows them.
        again = peer["recreate"]
        assert len(again["add_samples_ms"]) == PODS, name
        assert again["tries"] == PODS + again["retries"], name
        assert again["recorded"] == PODS, name
        assert again["recorded_matching_answers"] == PODS, name
    assert doc["peers"]["whereabouts"]["version"] == "v0.9.2"
    assert isinstance(doc["peers"]["spidernet"]["own_conflict_count"], int)
    assert set(doc["ratios"]) >= {"whereabouts_over_spidernet_add_wall"}
