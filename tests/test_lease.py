"""Leases (link.etcd.recipes.lease) against real etcd servers, on both v3 transports.

Timing: etcd's minimum lease TTL is 2 s, so the keepalive and expiry tests use
2 s leases (3 s where a member hangs) and wait a few seconds each; every wait is bounded.
"""

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from link.etcd import (
    EtcdInvalidTree,
    EtcdLeaseNotFound,
    EtcdMiddleware,
    EtcdUnsupported,
)
from link.etcd.recipes import Lease
from link.etcd.recipes.lease import THREAD_PREFIX
from link.etcd.testing import EtcdCluster, EtcdServer

TRANSPORTS = ["grpc", "gateway"]
TREE = {"a": 1, "b": [1, 2]}
POSITION = "{:020d}".format  # a list position's key segment


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(etcd_server: Any, etcd_prefix: str, transport: str) -> Iterator[EtcdMiddleware]:
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], transport=transport, prefix=etcd_prefix
    ) as mw:
        yield mw


def _threads(lease: Lease) -> list[threading.Thread]:
    name = f"{THREAD_PREFIX}{lease.id:x}"
    return [t for t in threading.enumerate() if t.name == name]


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` every 0.1 s for at most ``seconds``; its last answer."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def test_grant_remaining_refresh_revoke(client: EtcdMiddleware) -> None:
    lease = client.lease(10)
    assert isinstance(lease.id, int)
    assert lease.id > 0
    assert lease.ttl == 10
    assert repr(lease) == f"Lease(id={lease.id}, ttl=10)"
    assert 8 <= lease.remaining() <= 10
    assert lease.refresh() == 10
    assert _threads(lease) == []  # no keepalive unless asked
    lease.revoke()
    assert lease.remaining() == -1
    lease.revoke()  # idempotent
    with pytest.raises(EtcdLeaseNotFound, match="gone") as raised:
        lease.refresh()
    assert not isinstance(raised.value, KeyError)
    assert not lease.lost.is_set()  # revoked by us: not lost


def test_ttl_is_rounded_up(client: EtcdMiddleware) -> None:
    with client.lease(2.1) as lease:
        assert lease.ttl == 3
    with client.lease(0.5) as lease:
        assert lease.ttl == 2  # ceil gives 1; etcd raises it to its minimum TTL


def test_keys_list_every_leaf_and_revoke_deletes_the_tree(
    client: EtcdMiddleware, etcd_server: Any, etcd_prefix: str, transport: str
) -> None:
    lease = client.lease(30)
    client.set("/svc", TREE, lease=lease)
    client.set("/flag", "on", lease=lease.id)
    client["/kept"] = "no lease"
    outside = EtcdMiddleware(
        endpoints=[etcd_server.endpoint], transport=transport, prefix=etcd_prefix + "-outside"
    )
    outside.set("/x", 1, lease=lease)
    assert lease.keys() == ["/flag", "/svc/a", f"/svc/b/{POSITION(0)}", f"/svc/b/{POSITION(1)}"]
    assert client["/svc"] == TREE
    lease.revoke()
    assert "/svc" not in client
    assert client.children("/") == ["kept"]
    assert "/x" not in outside
    assert lease.keys() == []


def test_context_manager_revokes_on_exit(client: EtcdMiddleware) -> None:
    with client.lease(30) as lease:
        client.set("/svc", TREE, lease=lease)
        assert client["/svc"] == TREE
    assert "/svc" not in client
    assert client.children("/") == []
    assert lease.remaining() == -1


def test_context_manager_revokes_when_the_block_raises(client: EtcdMiddleware) -> None:
    def block() -> None:
        with client.lease(30) as lease:
            client.set("/svc", TREE, lease=lease)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        block()
    assert "/svc" not in client


def test_ttl_write_expires_the_whole_tree(client: EtcdMiddleware) -> None:
    client.set("/tmp", {"deep": {"tree": [1, 2, {"x": None}]}, "leaf": "v"}, ttl=2)
    written = time.monotonic()
    assert client["/tmp/leaf"] == "v"
    assert _within(6, lambda: "/tmp" not in client)
    assert time.monotonic() - written >= 1.5  # it lived its TTL (etcd rounds down a bit)
    assert client.children("/") == []


def test_keepalive_keeps_a_short_lease_alive(client: EtcdMiddleware) -> None:
    lease = client.lease(2, keepalive=True)
    try:
        client.set("/svc", TREE, lease=lease)
        assert len(_threads(lease)) == 1
        time.sleep(6.5)  # more than 3 TTLs
        assert client["/svc"] == TREE
        assert lease.remaining() > 0
        assert not lease.lost.is_set()
        lease.close()
        assert _threads(lease) == []
        assert lease.remaining() >= 0  # close() does not revoke
    finally:
        lease.revoke()
    assert "/svc" not in client


def test_keepalive_reports_a_lease_revoked_elsewhere(client: EtcdMiddleware) -> None:
    lease = client.lease(2, keepalive=True)
    client.set("/svc", TREE, lease=lease)
    client.lease_from_id(lease.id).revoke()
    assert lease.lost.wait(timeout=3)
    assert _within(2, lambda: _threads(lease) == [])
    assert "/svc" not in client
    lease.revoke()  # already gone: not an error


def test_keepalive_of_an_attached_lease_refreshes_in_time(
    etcd_server: Any, etcd_prefix: str
) -> None:
    """A lease attached with less than a third of its TTL left is refreshed at
    once, not a third of its TTL later (the keepalive's timing, so gRPC only)."""
    client = EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix)
    lease = client.lease(3)
    client.set("/svc", TREE, lease=lease)
    time.sleep(2.1)
    kept = client.lease_from_id(lease.id, keepalive=True)
    try:
        time.sleep(1.5)
        assert not kept.lost.is_set()
        assert client["/svc"] == TREE
        assert kept.remaining() >= 1
    finally:
        kept.revoke()
        client.close()


def test_lease_from_id(client: EtcdMiddleware) -> None:
    lease = client.lease(20)
    client.set("/svc", TREE, lease=lease)
    same = client.lease_from_id(lease.id)
    assert (same.id, same.ttl) == (lease.id, 20)
    assert same.keys() == lease.keys()
    same.revoke()
    assert "/svc" not in client
    assert lease.remaining() == -1
    for missing in (lease.id, 0x7FFF_0000_DEAD_BEEF):
        with pytest.raises(EtcdLeaseNotFound, match="does not exist") as raised:
            client.lease_from_id(missing)
        assert not isinstance(raised.value, KeyError)


def test_a_write_with_a_revoked_lease_raises_and_writes_nothing(client: EtcdMiddleware) -> None:
    """etcd refuses a put naming a lease it does not know (gRPC NOT_FOUND): the whole
    txn is refused, so the old tree stays."""
    client["/svc"] = TREE
    lease = client.lease(20)
    lease.revoke()
    for path, value in (("/svc", {"new": 1}), ("/svc/a", 2)):  # a tree, a leaf
        with pytest.raises(EtcdLeaseNotFound, match="lease not found") as raised:
            client.set(path, value, lease=lease)
        assert client.settings.urls[0] in str(raised.value)
        assert client["/svc"] == TREE


def test_bad_input_is_refused_before_any_request() -> None:
    dead = EtcdMiddleware(endpoints=["http://127.0.0.1:9"], read_timeout=0.5)
    for ttl in (0, -1, math.nan, math.inf, True, "5", None):
        with pytest.raises(EtcdInvalidTree):
            dead.lease(ttl)  # type: ignore[arg-type]
    for lease_id in (0, -3, True, "12", 1.0):
        with pytest.raises(EtcdInvalidTree):
            dead.lease_from_id(lease_id)  # type: ignore[arg-type]


def test_v2_has_no_leases(etcd_server: Any, etcd_prefix: str) -> None:
    v2 = EtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2", prefix=etcd_prefix)
    with pytest.raises(EtcdUnsupported):
        v2.lease(5)
    with pytest.raises(EtcdUnsupported):
        v2.lease_from_id(1)


# -- faults ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with EtcdCluster(3, enable_v2=False) as running:
        yield running


def test_keepalive_survives_the_loss_of_the_member_in_use(
    cluster: EtcdCluster, etcd_prefix: str, transport: str
) -> None:
    # A follower, so that the test does not depend on the timing of an election
    # (losing the leader costs an election on top of the timeout).  TTL 3 s: a
    # refresh starts a third of the TTL after the last one and the hung member
    # costs read_timeout (1 s, plus 0.5 s on gRPC) before the next one answers.
    leader = cluster.wait_for_leader()
    member = next(m for m in cluster.members if m is not leader)
    others = [m.endpoint for m in cluster.members if m is not member]
    client = EtcdMiddleware(
        endpoints=[member.endpoint, *others],
        transport=transport,
        prefix=etcd_prefix,
        read_timeout=1,
    )
    lease = client.lease(3, keepalive=True)
    try:
        client.set("/svc", TREE, lease=lease)
        assert client.backend.transport.failover.current == 0  # type: ignore[attr-defined]
        assert member.pid is not None
        os.kill(member.pid, signal.SIGSTOP)  # hung: accepts connections, never answers
        try:
            time.sleep(3 * lease.ttl)
            assert not lease.lost.is_set()
            assert client["/svc"] == TREE
            assert lease.remaining() > 0
        finally:
            os.kill(member.pid, signal.SIGCONT)
    finally:
        lease.revoke()
        client.close()
    assert _threads(lease) == []


@pytest.fixture(scope="module")
def lonely() -> Iterator[EtcdServer]:
    """A server of our own, to hang."""
    with EtcdServer(enable_v2=False) as server:
        yield server


def test_lost_when_the_cluster_stays_down_past_the_ttl(
    lonely: EtcdServer, etcd_prefix: str, transport: str
) -> None:
    client = EtcdMiddleware(
        endpoints=[lonely.endpoint], transport=transport, prefix=etcd_prefix, read_timeout=1
    )
    lease = client.lease(2, keepalive=True)
    client.set("/svc", TREE, lease=lease)
    assert lonely.pid is not None
    os.kill(lonely.pid, signal.SIGSTOP)
    try:
        with lease:  # left while the server still hangs: lost, so revoke's timeout is dropped
            stopped = time.monotonic()
            assert lease.lost.wait(timeout=lease.ttl + 2)
            assert time.monotonic() - stopped >= lease.ttl - 1  # not before the TTL ran out
            assert _within(2, lambda: _threads(lease) == [])
    finally:
        os.kill(lonely.pid, signal.SIGCONT)
    try:
        # etcd ends the lease once it runs again: lost meant the keys are gone
        assert _within(5, lambda: "/svc" not in client)
        assert lease.remaining() == -1
    finally:
        lease.revoke()
        client.close()
