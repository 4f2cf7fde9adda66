"""The lanes' one bounded poll."""

from __future__ import annotations

import itertools

import pytest

from spidernet.testbed.waiting import seconds_until, wait_for


def test_returns_the_first_true_answer() -> None:
    answers = iter([None, {}, {"ready": True}, {"later": True}])
    assert wait_for("ready", lambda: next(answers), 5, 0) == {"ready": True}


def test_names_what_it_waited_for_when_time_runs_out() -> None:
    asked = itertools.count()
    with pytest.raises(TimeoutError, match="waiting for the pool"):
        wait_for("the pool", lambda: next(asked) < 0, 0.05, 0.01)
    assert next(asked) >= 2  # polled, and asked once more at the deadline


def test_seconds_until_measures_the_wait() -> None:
    assert 0 <= seconds_until("at once", lambda: True, 5) < 1
