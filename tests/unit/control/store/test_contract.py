"""The `Store` contract suite (spidernet.testbed.store_contract) against the embedded store."""

from __future__ import annotations

import pytest

from spidernet.control.store.embedded import EmbeddedStore
from spidernet.testbed.store_contract import Backend, StoreContract


@pytest.fixture
def backend() -> Backend:
    return Backend(
        "embedded",
        fresh=lambda d: EmbeddedStore(d / "store.db"),
        short_history=lambda d, n: EmbeddedStore(d / "store.db", keep_changes=n),
    )


class TestEmbeddedStore(StoreContract):
    """Every contract test, on a new SQLite database file."""


def test_the_suite_is_whole() -> None:
    # The suite runs by inheritance: a test renamed away from test_ would drop out silently.
    assert len([n for n in vars(StoreContract) if n.startswith("test_")]) >= 18
