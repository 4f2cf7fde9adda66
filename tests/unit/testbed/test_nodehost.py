"""The node lane's kernel settings are put back, even after a lane that died (the record)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spidernet.testbed import nodehost


@pytest.fixture
def sysctls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in /proc/sys files: the record logic is what is tested, not the kernel's."""
    top = tmp_path / "sys"
    top.mkdir()
    (top / "vm.overcommit_memory").write_text("0\n")
    (top / "kernel.panic").write_text("1\n")
    monkeypatch.setattr(nodehost, "sysctl_path", lambda key: top / key)
    return top


def test_settings_are_set_then_put_back_and_the_record_removed(
    sysctls: Path, tmp_path: Path
) -> None:
    record = tmp_path / "node" / "kernel-settings.json"
    wanted = {"vm.overcommit_memory": "1", "kernel.panic": "10"}
    with nodehost.kernel_settings(wanted, record) as before:
        assert before == {"vm.overcommit_memory": "0", "kernel.panic": "1"}
        assert (sysctls / "kernel.panic").read_text() == "10"
        assert record.exists()
    assert (sysctls / "kernel.panic").read_text().strip() == "1"
    assert (sysctls / "vm.overcommit_memory").read_text().strip() == "0"
    assert not record.exists()


def test_a_record_left_by_a_dead_lane_is_what_gets_restored(sysctls: Path, tmp_path: Path) -> None:
    record = tmp_path / "kernel-settings.json"
    # A lane set the values, then died: the machine shows the kubelet's values.
    record.write_text('{"vm.overcommit_memory": "0", "kernel.panic": "1"}')
    (sysctls / "vm.overcommit_memory").write_text("1")
    (sysctls / "kernel.panic").write_text("10")
    with nodehost.kernel_settings(
        {"kernel.panic": "10", "vm.overcommit_memory": "1"}, record
    ) as before:
        assert before == {"vm.overcommit_memory": "0", "kernel.panic": "1"}  # not 1 and 10
    assert (sysctls / "kernel.panic").read_text().strip() == "1"
    assert nodehost.restore_recorded(record) == {}  # nothing left to do
