"""The one table that turns an etcd error answer into "try the next member" or an
exception, for every transport (pure code: answers built by hand, as etcd 3.4 and
3.5 send them over gRPC and through the JSON gateway)."""

from __future__ import annotations

import grpc
import httpx
import pytest

from link.etcd import EtcdAuthError, EtcdCompacted, EtcdError, EtcdInvalidTree
from link.etcd.backends.v3 import protocol as v3
from link.etcd.backends.v3.gateway import answer
from link.etcd.backends.v3.grpc import verdict
from link.etcd.backends.v3.transport import Unreachable

#: (gRPC code, etcd's description) -> None (an error to raise) or whether it timed out
ANSWERS = [
    (v3.UNAVAILABLE, "etcdserver: no leader", False),
    (v3.UNAVAILABLE, "etcdserver: request timed out", False),
    (v3.DEADLINE_EXCEEDED, "context deadline exceeded", True),
    # a linearizable read on a member whose leader hangs: the server's copy of the
    # call's deadline passed first (seen in CI on etcd 3.5.1 with read_timeout=1)
    (v3.UNKNOWN, "context deadline exceeded", True),
    (v3.UNKNOWN, "etcdserver: some other failure", None),
    (v3.INVALID_ARGUMENT, "etcdserver: request is too large", None),
    (v3.PERMISSION_DENIED, "etcdserver: permission denied", None),
]


class _Status(grpc.RpcError):  # type: ignore[misc]  # grpc ships no type hints
    """A failed gRPC call as grpcio raises it (code and details)."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self._code = next(c for c in grpc.StatusCode if c.value[0] == code)
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(("code", "message", "timed_out"), ANSWERS)
def test_retry_elsewhere(code: int, message: str, timed_out: bool | None) -> None:
    assert v3.retry_elsewhere(code, message) is timed_out


@pytest.mark.parametrize(("code", "message", "timed_out"), ANSWERS)
def test_grpc_verdict_fails_over_exactly_on_the_table(
    code: int, message: str, timed_out: bool | None
) -> None:
    found = verdict(_Status(code, message), "http://127.0.0.1:1", "/k", retoken=False)
    if timed_out is None:
        assert isinstance(found, EtcdError)
        assert "http://127.0.0.1:1" in str(found)
    else:
        assert isinstance(found, Unreachable)
        assert found.timed_out is timed_out


@pytest.mark.parametrize(("code", "message", "timed_out"), ANSWERS)
def test_gateway_answer_fails_over_exactly_on_the_table(
    code: int, message: str, timed_out: bool | None
) -> None:
    response = httpx.Response(500, json={"error": message, "message": message, "code": code})
    if timed_out is None:
        with pytest.raises(EtcdError, match=r"127\.0\.0\.1:1"):
            answer(response, "http://127.0.0.1:1", "/k", retoken=False)
    else:
        with pytest.raises(Unreachable) as info:
            answer(response, "http://127.0.0.1:1", "/k", retoken=False)
        assert info.value.timed_out is timed_out


def test_gateway_502_and_503_fail_over() -> None:
    for status in (502, 503):
        response = httpx.Response(status, json={"message": "etcdserver: stopped", "code": 2})
        with pytest.raises(Unreachable):
            answer(response, "http://127.0.0.1:1", None, retoken=False)


@pytest.mark.parametrize(
    ("code", "message", "cls"),
    [
        (
            v3.INVALID_ARGUMENT,
            "etcdserver: authentication failed, invalid user ID or password",
            EtcdAuthError,
        ),
        (v3.INVALID_ARGUMENT, "etcdserver: too many operations in txn request", EtcdInvalidTree),
        (v3.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted", EtcdCompacted),
        (
            v3.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision is a future revision",
            EtcdInvalidTree,
        ),
        (v3.UNKNOWN, "etcdserver: some other failure", EtcdError),
    ],
)
def test_error_for_is_keyed_by_code(code: int, message: str, cls: type[EtcdError]) -> None:
    error = v3.error_for(code, message, endpoints=("http://h:1",), key="/k")
    assert type(error) is cls
    assert "http://h:1" in str(error)


def test_a_new_token_is_needed_only_for_token_refusals() -> None:
    assert v3.needs_new_token(v3.UNAUTHENTICATED, "")
    assert v3.needs_new_token(v3.INVALID_ARGUMENT, "etcdserver: invalid auth token")
    assert not v3.needs_new_token(v3.INVALID_ARGUMENT, "etcdserver: authentication failed")
    assert not v3.needs_new_token(v3.UNKNOWN, "context deadline exceeded")
