"""A follower cut off from the majority by a partition (network namespaces, see
``netns.py``) while clients still reach it: no stale read on either API, and a
watch on it moves to the majority within the documented bound."""

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.aio import AsyncEtcdMiddleware
from link.etcd.backends.v3.watch import MAX_RETRY_SECONDS
from link.etcd.testing import set_watch_idle

from ..apis import APIS, connection
from .helpers import Seen
from .netns import NetnsCluster

pytestmark = pytest.mark.faults

READ_TIMEOUT = 2.0
#: The idle time the clients' watches are given here (set_watch_idle), not the
#: default WATCH_IDLE_SECONDS.
WATCH_IDLE = 2.0


def moves_within(idle: float) -> float:
    """The documented bound for a tree watch to deliver a change made by the
    majority while its member is cut off: a quiet stream is checked after ``idle``
    seconds (a linearizable read, or a v2 quorum GET, given read_timeout), the
    progress answer waited for read_timeout, the next stream opened after at most
    MAX_RETRY_SECONDS, the tree read again (a read_timeout on the cut-off member
    before the client's failover moves on)."""
    return idle + 3 * READ_TIMEOUT + MAX_RETRY_SECONDS


@pytest.fixture
def follower(netns_cluster: NetnsCluster) -> Iterator[int]:
    """The index of a follower, healed again (and healthy) after the test."""
    leader = netns_cluster.wait_for_leader()
    index = next(i for i, m in enumerate(netns_cluster.members) if m is not leader)
    yield index
    netns_cluster.heal(index)
    deadline = time.monotonic() + 30
    while not all(m.health(1.0)[0] for m in netns_cluster.members):
        assert time.monotonic() < deadline, "the cluster did not heal within 30 s"
        time.sleep(0.2)


def _clients(
    cluster: NetnsCluster, follower: int, api: str, prefix: str
) -> tuple[EtcdMiddleware, EtcdMiddleware]:
    """A client that tries the follower first, and one on the other members."""
    endpoints = list(cluster.endpoints)
    first = endpoints.pop(follower)
    settings: dict[str, Any] = {**connection(api), "prefix": prefix, "read_timeout": READ_TIMEOUT}
    return (
        EtcdMiddleware(endpoints=[first, *endpoints], **settings),
        EtcdMiddleware(endpoints=endpoints, **settings),
    )


@pytest.mark.parametrize("api", APIS)
def test_no_stale_read_from_cut_off_member(
    netns_cluster: NetnsCluster, follower: int, api: str, etcd_prefix: str
) -> None:
    client, majority = _clients(netns_cluster, follower, api, etcd_prefix)
    with client, majority:
        client["/k"] = "old"
        assert client["/k"] == "old"
        netns_cluster.cut(follower)
        majority["/k"] = "new"
        start = time.monotonic()
        value = client["/k"]
        took = time.monotonic() - start
    assert value == "new", f"stale read through the cut-off member ({api})"
    print(f"\n[{api}] read after the cut: current value in {took:.2f} s")


@pytest.mark.parametrize("api", APIS)
def test_watch_leaves_cut_off_member(
    netns_cluster: NetnsCluster, follower: int, api: str, etcd_prefix: str
) -> None:
    client, majority = _clients(netns_cluster, follower, api, etcd_prefix)
    seen = Seen()
    set_watch_idle(client, WATCH_IDLE)
    bound = moves_within(WATCH_IDLE)
    with client, majority, client.watch_tree("/w", seen):
        seen.wait_for(None, 10)
        majority["/w"] = "before"
        seen.wait_for("before", 10)
        netns_cluster.cut(follower)
        majority["/w"] = "after"
        took = seen.wait_for("after", bound)
    print(f"\n[{api}] watch moved off the cut-off member in {took:.2f} s (bound {bound:.0f} s)")


@pytest.mark.anyio
@pytest.mark.parametrize("api", [api for api in APIS if api.startswith("v3")])
async def test_async_watch_leaves_cut_off_member(
    netns_cluster: NetnsCluster, follower: int, api: str, etcd_prefix: str
) -> None:
    client, majority = _clients(netns_cluster, follower, api, etcd_prefix)
    settings: dict[str, Any] = {
        "transport": client.settings.transport,
        "read_timeout": READ_TIMEOUT,
    }
    aio = AsyncEtcdMiddleware(endpoints=list(client.settings.urls), prefix=etcd_prefix, **settings)
    set_watch_idle(aio, WATCH_IDLE)

    async def until(items: Any, expected: Any, timeout: float) -> float:
        start = time.monotonic()

        async def wait() -> None:
            async for value, _ in items:
                if value == expected:
                    return

        await asyncio.wait_for(wait(), timeout)
        return time.monotonic() - start

    async with aio:
        with client, majority:
            async with aio.watch_tree("/w") as items:
                await until(items, None, 10)
                majority["/w"] = "before"
                await until(items, "before", 10)
                netns_cluster.cut(follower)
                majority["/w"] = "after"
                took = await until(items, "after", moves_within(WATCH_IDLE))
    print(
        f"\n[aio {api}] watch moved off the cut-off member in {took:.2f} s "
        f"(bound {moves_within(WATCH_IDLE):.0f} s)"
    )
