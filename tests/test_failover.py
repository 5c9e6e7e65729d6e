"""Failover's walk over the members (pure code: members are names, sends are functions)."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.etcd.backends.v3.transport import Failover, Unreachable
from link.etcd.errors import EtcdConnectionFailed, EtcdTimeout


@dataclass
class Answer:
    member: str
    retried: bool = False


def _failover(count: int, current: int = 0) -> Failover[str]:
    failover = Failover([(f"http://m{i}:2379", f"m{i}") for i in range(count)], read_timeout=1.5)
    failover.current = current
    return failover


Send = Callable[[str], Answer]


def _sender(down: set[str], tried: list[str], timed_out: bool = False) -> Send:
    def send(member: str) -> Answer:
        tried.append(member)
        if member in down:
            raise Unreachable(f"{member} is down", timed_out=timed_out)
        return Answer(member)

    return send


@given(
    count=st.integers(1, 5),
    data=st.data(),
)
def test_the_first_member_that_answers_from_the_last_one_that_did(
    count: int, data: st.DataObject
) -> None:
    current = data.draw(st.integers(0, count - 1))
    down = data.draw(st.sets(st.sampled_from([f"m{i}" for i in range(count)])))
    failover = _failover(count, current)
    tried: list[str] = []
    rotation = [f"m{(current + step) % count}" for step in range(count)]
    expected = next((m for m in rotation if m not in down), None)
    if expected is None:
        with pytest.raises(EtcdConnectionFailed) as caught:
            failover.attempt(_sender(down, tried), key="/k")
        assert tried == rotation
        assert caught.value.endpoints == tuple(f"http://{m}:2379" for m in rotation)
        assert failover.current == current  # nobody answered: unchanged
        return
    answer = failover.attempt(_sender(down, tried), key="/k")
    assert answer.member == expected
    assert tried == rotation[: rotation.index(expected) + 1]
    assert failover.current == int(expected[1:])
    assert answer.retried == (len(tried) > 1)  # an earlier member may have applied it


def test_an_answer_from_the_current_member_is_one_send_and_not_retried() -> None:
    failover = _failover(3, current=2)
    tried: list[str] = []
    answer = failover.attempt(_sender(set(), tried))
    assert (tried, answer.retried, failover.current) == (["m2"], False, 2)


def test_no_answer_names_every_endpoint_tried_and_says_timeout() -> None:
    failover = _failover(2, current=1)
    tried: list[str] = []
    with pytest.raises(EtcdTimeout) as caught:
        failover.attempt(_sender({"m0", "m1"}, tried, timed_out=True), key="/k")
    message = str(caught.value)
    assert "tried 2 of 2" in message
    assert "read_timeout 1.5 s" in message
    assert "http://m1:2379: m1 is down; http://m0:2379: m0 is down" in message
    assert caught.value.key == "/k"
    assert isinstance(caught.value.__cause__, Unreachable)


def test_other_errors_are_raised_at_once() -> None:
    failover = _failover(3)
    tried: list[str] = []

    def send(member: str) -> Answer:
        tried.append(member)
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        failover.attempt(send)
    assert tried == ["m0"]


def test_the_async_walk_is_the_same() -> None:
    failover = _failover(3, current=1)
    tried: list[str] = []
    send = _sender({"m1"}, tried)

    async def send_async(member: str) -> Answer:
        return send(member)

    answer = asyncio.run(failover.attempt_async(send_async))
    assert (tried, answer.member, answer.retried, failover.current) == (
        ["m1", "m2"],
        "m2",
        True,
        2,
    )
    with pytest.raises(EtcdConnectionFailed) as caught:
        asyncio.run(_failover(2).attempt_async(_async(_sender({"m0", "m1"}, []))))
    assert caught.value.endpoints == ("http://m0:2379", "http://m1:2379")


def _async(send: Send) -> Callable[[str], Awaitable[Answer]]:
    async def send_async(member: str) -> Answer:
        return send(member)

    return send_async
