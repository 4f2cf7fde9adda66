"""KubeStore.changes: a watch the API server does not answer within `watch_idle` is "nothing
seen yet", not an outage (seen with ten agents allocating at once on a loaded API server)."""

from __future__ import annotations

import urllib3

from spidernet.control.store.kube_api import read_timed_out


def test_a_read_timeout_is_recognized_bare_and_inside_urllib3s_retry_error() -> None:
    timeout = urllib3.exceptions.ReadTimeoutError(None, "/apis/x", "Read timed out.")  # type: ignore[arg-type]
    assert read_timed_out(timeout)
    assert read_timed_out(urllib3.exceptions.MaxRetryError(None, "/apis/x", timeout))  # type: ignore[arg-type]


def test_other_failures_stay_failures() -> None:
    refused = urllib3.exceptions.NewConnectionError(None, "connection refused")  # type: ignore[arg-type]
    assert not read_timed_out(refused)
    assert not read_timed_out(urllib3.exceptions.MaxRetryError(None, "/apis/x", refused))  # type: ignore[arg-type]
    assert not read_timed_out(None)
    assert not read_timed_out(ValueError("x"))
