"""The lanes' summary counts a JUnit report and names every failed test, since CI keeps only
the tail of `make test`'s log."""

from __future__ import annotations

from pathlib import Path

from spidernet.tests.lanes import Outcome, _counted

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="tests.netns.test_probe" name="test_fine" time="0.1"/>
<testcase classname="tests.netns.test_probe" name="test_skipped" time="0.1">
  <skipped message="no ipvlan"/></testcase>
<testcase classname="tests.netns.test_probe" name="test_slow[arp]" time="0.1">
  <failure message="assert 0.9 &lt; 0.64&#10;second line">trace</failure></testcase>
<testcase classname="tests.netns.test_leak" name="test_setup" time="0.1">
  <error message="">fixture broke&#10;more</error></testcase>
<testcase classname="tests.netns.test_leak" name="test_other" time="0.1"/>
</testsuite></testsuites>
"""


def test_a_report_is_counted_and_its_failures_named_with_their_first_line(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(REPORT)
    out = _counted(Outcome("netns", False), report)
    assert (out.passed, out.failed, out.skipped) == (2, 2, 1)
    assert out.failures == [
        "tests.netns.test_probe::test_slow[arp]: assert 0.9 < 0.64",
        "tests.netns.test_leak::test_setup: fixture broke",
    ]


def test_a_lane_without_a_report_ran_zero_tests_and_fails(tmp_path: Path) -> None:
    out = _counted(Outcome("netns", True), tmp_path / "missing.xml")
    assert not out.ok
    assert out.note == "ran zero tests"
    assert out.failures == []
