"""`spidernet lab up|status|down`, run as a user runs it (what `make run` does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from spidernet.node import netns
from spidernet.node.lab.service import exited


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spidernet", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_lab_up_status_down_leaves_nothing() -> None:
    lab_dir = Path(tempfile.mkdtemp(prefix="snt-lab-"))
    shutil.rmtree(lab_dir)  # `lab up` creates it; `lab down` removes it
    try:
        up = cli("lab", "up", "--pods", "2", "--lab-dir", str(lab_dir))
        assert up.returncode == 0, up.stderr
        assert "pod1" in up.stdout
        assert "pod2" in up.stdout
        # Both pods reach the gateway (macvlan), their host and the service (veth0).
        assert up.stdout.count("yes/yes/yes") == 2
        assert "10.96.0.0/12 via 192.0.2.2 veth0" in up.stdout
        state = json.loads((lab_dir / "lab.json").read_text())
        pid = state["service_pid"]
        prefix = state["prefix"]
        assert any(n.startswith(prefix + "-") for n in netns.names())
        assert Path(f"/proc/{pid}").exists()
        again = cli("lab", "up", "--lab-dir", str(lab_dir))
        assert again.returncode == 1
        assert "already up" in again.stderr
        status = cli("lab", "status", "--lab-dir", str(lab_dir))
        assert status.returncode == 0

        def addresses(text: str) -> list[str]:
            return [line.split()[2] for line in text.splitlines() if line.startswith("pod")]

        assert addresses(status.stdout) == addresses(up.stdout)
        assert len(addresses(up.stdout)) == 2
        env = {**os.environ, "SPIDERNET_SOCKET": str(lab_dir / "spidernet.sock")}
        pools = subprocess.run(
            [sys.executable, "-m", "spidernet", "get", "pools", "-o", "json"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        counts = {
            d["metadata"]["name"]: d["status"]["allocatedIPCount"]
            for d in json.loads(pools.stdout)["items"]
        }
        assert counts == {"lab-v4": 2, "lab-v6": 2}
    finally:
        down = cli("lab", "down", "--lab-dir", str(lab_dir))
    assert down.returncode == 0, down.stderr
    assert not [n for n in netns.names() if n.startswith(prefix + "-")]
    assert not lab_dir.exists()
    assert exited(pid)
    assert cli("lab", "status", "--lab-dir", str(lab_dir)).returncode == 1
