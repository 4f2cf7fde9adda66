"""The backend's failures become the CNI errors the runtime gets in one place (cni_error),
and the plugin's verbs answer with them: each family keeps its code, message and details."""

from __future__ import annotations

import pytest

from spidernet.cni.errors import CNIError, Code
from spidernet.control.allocator.errors import AllocationError, Reason
from spidernet.control.store.base import Invalid, Unavailable
from spidernet.node.ipam.errors import (
    AddressesHeld,
    Contended,
    Failure,
    GatewayUnreachable,
    NoEnabledPool,
    ProbeFailed,
    StoreFailed,
    cni_error,
)
from spidernet.node.ipam.plugin import answering

CASES: list[tuple[Failure, int, str, str]] = [
    (AllocationError(Reason.INVALID, "bad pool name"), 7, "bad pool name", ""),
    (AllocationError(Reason.NO_POOL, "no pool"), 110, "no pool", ""),
    (AllocationError(Reason.EXHAUSTED, "full", waiting=True), 111, "full", ""),
    (
        AddressesHeld("eth0", ["10.0.0.5 held by aa:bb", "10.0.0.6 held by cc:dd"]),
        112,
        "no free address for eth0: 10.0.0.5 held by aa:bb; 10.0.0.6 held by cc:dd",
        "every address tried is held by another station (ARP/NDP probe); each was released",
    ),
    (GatewayUnreachable("gateway 10.0.0.1 silent"), 113, "gateway 10.0.0.1 silent", ""),
    (ProbeFailed("failed to check"), 999, "failed to check", ""),
    (Contended("failed to release c1: conflicts"), 11, "failed to release c1: conflicts", ""),
    (NoEnabledPool("no enabled SpiderIPPool exists"), 50, "no enabled SpiderIPPool exists", ""),
    (
        StoreFailed("allocate for c1", Unavailable(None, "database is locked"), unavailable=True),
        11,
        "failed to allocate for c1: store unavailable: database is locked",
        "",
    ),
    (
        StoreFailed("read pools", Invalid(None, "bad document"), unavailable=False),
        999,
        "failed to read pools: bad document",
        "",
    ),
]


@pytest.mark.parametrize(("failure", "code", "msg", "details"), CASES)
def test_each_failure_has_its_cni_code_and_message(
    failure: Failure, code: int, msg: str, details: str
) -> None:
    error = cni_error(failure)
    assert (error.code, error.msg, error.details) == (code, msg, details)


def test_the_plugin_answers_a_backend_failure_with_its_cni_error() -> None:
    failure = AllocationError(Reason.EXHAUSTED, "pool v4 is full")
    with pytest.raises(CNIError) as info, answering():
        raise failure
    assert (info.value.code, info.value.msg) == (Code.ADDRESSES_EXHAUSTED, "pool v4 is full")
    assert info.value.__cause__ is failure


def test_other_exceptions_go_through_untranslated() -> None:
    with pytest.raises(KeyError), answering():
        raise KeyError("not the backend's")
