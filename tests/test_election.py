"""Leader election (link.etcd.recipes.election) against real etcd: campaign,
proclaim, resign, leader, observe, timeouts, failover of a killed leader process
on a 3-member cluster, and etcdctl elect interop."""

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from link.etcd import EtcdInvalidTree, EtcdLockLost, EtcdLockTimeout, EtcdMiddleware
from link.etcd.recipes import Leader
from link.etcd.testing import EtcdCluster

from .test_lock import etcdctl, leases, read_line, revoke_leftover, start_holder, wait_until


@pytest.fixture
def v3c(v3: EtcdMiddleware, etcd_server: Any) -> Iterator[EtcdMiddleware]:
    """The v3 client; on exit, no lease leaked."""
    before = leases(etcd_server)
    yield v3
    assert wait_until(lambda: leases(etcd_server) <= before, 5), "a lease was leaked"


def campaign_in_thread(
    election: Any, value: str, timeout: float
) -> tuple[threading.Thread, list[Any]]:
    """Run ``election.campaign`` in a thread; the list gets its result or exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(election.campaign(value, timeout=timeout))
        except Exception as exc:  # noqa: BLE001 - handed to the test, which asserts on it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_bad_values_raise_before_any_request(v3: EtcdMiddleware) -> None:
    election = v3.election("/e", ttl=5)
    with pytest.raises(EtcdInvalidTree):
        election.campaign(42)  # type: ignore[arg-type]
    with pytest.raises(EtcdInvalidTree):
        election.campaign("x", timeout=-1)
    with pytest.raises(EtcdInvalidTree):
        v3.election("/e", ttl=0)
    assert v3.children("/") == []


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
def test_campaign_proclaim_resign(etcd_server: Any, etcd_prefix: str, transport: str) -> None:
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport
    ) as client:
        election = client.election("/e", ttl=10)
        assert election.leader() is None
        assert election.token is None
        with pytest.raises(EtcdLockLost):
            election.proclaim("x")
        leadership = election.campaign("one")
        assert leadership.value == "one"
        assert leadership.token == election.token
        assert election.leader() == leadership
        client.set("/data", 1, if_held=election)
        election.proclaim(b"\xff\x00")  # not UTF-8: comes back as bytes
        assert election.leader() == Leader(b"\xff\x00", leadership.token)
        election.proclaim("two")
        assert election.leader() == Leader("two", leadership.token)
        stale = election.guard
        election.resign()
        election.resign()  # nothing to do
        assert election.leader() is None
        with pytest.raises(EtcdLockLost):
            client.set("/data", 2, if_held=stale)
        with pytest.raises(EtcdLockLost):
            election.proclaim("three")
        assert client["/data"] == 1
        assert client.children("/") == ["data"]


def test_campaign_timeout_withdraws(v3c: EtcdMiddleware, etcd_server: Any) -> None:
    with v3c.election("/e", ttl=10) as leader:
        leader.campaign("leader")
        before = leases(etcd_server)
        follower = v3c.election("/e", ttl=10)
        with pytest.raises(EtcdLockTimeout):
            follower.campaign("follower", timeout=0.3)
        assert follower.token is None
        assert len(v3c.children("/e")) == 1
        assert leases(etcd_server) == before
        assert leader.leader() == ("leader", leader.token)
    assert v3c.children("/e") == []


def test_proclaimed_leader_and_queue_order(v3c: EtcdMiddleware) -> None:
    """After a proclaim the leader's mod revision is no longer its create revision:
    leader() still finds it and its token, and waiters still go in order."""
    first = v3c.election("/e", ttl=10)
    second = v3c.election("/e", ttl=10)
    third = v3c.election("/e", ttl=10)
    lead = first.campaign("first")
    thread2, outcome2 = campaign_in_thread(second, "second", 1.0)
    assert wait_until(lambda: len(v3c.children("/e")) == 2, 5)
    thread3, outcome3 = campaign_in_thread(third, "third", 20)
    assert wait_until(lambda: len(v3c.children("/e")) == 3, 5)
    first.proclaim("first, again")  # after both joined: written after them
    assert third.leader() == Leader("first, again", lead.token)
    thread2.join(10)  # second gives up; third now waits for the proclaimed first
    assert isinstance(outcome2[0], EtcdLockTimeout)
    time.sleep(0.3)
    assert not outcome3
    first.resign()
    thread3.join(10)
    assert outcome3
    assert outcome3[0].value == "third"
    assert outcome3[0].token > lead.token
    assert third.leader() == outcome3[0]
    third.resign()


def test_a_follower_watches_its_predecessor_not_the_proclaimed_leader(
    v3c: EtcdMiddleware,
) -> None:
    """A leader that proclaims after a follower joined has the latest mod revision
    of the queue but the oldest create revision: a follower joining after the
    proclaim still watches the candidate created just before it, not the leader,
    and leads only after that candidate did."""
    leader, middle, last = (v3c.election("/e", ttl=10) for _ in range(3))
    lead = leader.campaign("leader")
    thread1, outcome1 = campaign_in_thread(middle, "middle", 20)
    assert wait_until(lambda: _watching(middle) == _key(leader), 5)
    leader.proclaim("leader, again")  # mod revision: after the middle one's creation
    thread2, outcome2 = campaign_in_thread(last, "last", 20)
    assert wait_until(lambda: _watching(last) is not None, 5)
    assert _watching(last) == _key(middle)
    assert last.leader() == Leader("leader, again", lead.token)
    leader.resign()
    thread1.join(10)
    assert outcome1
    assert outcome1[0].value == "middle"
    assert outcome1[0].token > lead.token
    time.sleep(0.3)
    assert not outcome2
    assert _watching(last) == _key(middle)
    middle.resign()
    thread2.join(10)
    assert outcome2
    assert outcome2[0].token > outcome1[0].token
    assert last.leader() == outcome2[0]
    last.resign()


def _key(election: Any) -> str:
    """The etcd key of a candidate."""
    return str(election._queue.key)


def _watching(election: Any) -> str | None:
    """The key a waiting candidate watches now (its queue's predecessor)."""
    queue = election._queue
    return None if queue is None else queue.predecessor


def test_observe_reports_each_change(v3c: EtcdMiddleware) -> None:
    election = v3c.election("/e", ttl=10)
    seen: list[Any] = []
    observer = election.observe(seen.append)
    try:
        assert wait_until(lambda: seen == [None], 5)
        lead = election.campaign("a")
        assert wait_until(lambda: seen[-1] == Leader("a", lead.token), 5)
        election.proclaim("b")
        assert wait_until(lambda: seen[-1] == Leader("b", lead.token), 5)
        election.resign()
        assert wait_until(lambda: seen[-1] is None, 5)
        assert seen == [None, Leader("a", lead.token), Leader("b", lead.token), None]
    finally:
        observer.stop()
    stopped: list[Any] = []

    def once(leader: Leader | None) -> bool:
        stopped.append(leader)
        return False  # stop

    election.observe(once)
    assert wait_until(lambda: stopped == [None], 5)
    election.campaign("c")
    time.sleep(0.3)
    assert stopped == [None]
    election.resign()


# -- etcdctl elect -------------------------------------------------------------------


def test_we_see_etcdctl_leader_and_follow_it(v3c: EtcdMiddleware, etcd_server: Any) -> None:
    election = v3c.election("/e", ttl=10)
    process = etcdctl(etcd_server, "elect", election.prefix, "theirs")
    try:
        key = read_line(process, 10).strip()
        assert key.startswith(election.prefix + "/")  # <name>/<lease id hex>
        assert read_line(process, 5).strip() == "theirs"
        theirs = election.leader()
        assert theirs is not None
        assert theirs.value == "theirs"
        with pytest.raises(EtcdLockTimeout):
            election.campaign("ours", timeout=0.5)
        thread, outcome = campaign_in_thread(election, "ours", 10)
        assert wait_until(lambda: len(v3c.children("/e")) == 2, 5)
        process.send_signal(signal.SIGINT)  # etcdctl resigns
        thread.join(10)
        assert outcome == [("ours", election.token)]
        assert outcome[0].token > theirs.token
        process.wait(10)
        election.resign()
        revoke_leftover(etcd_server, key)
    finally:
        process.kill()
        process.wait()


def test_etcdctl_sees_our_leader(v3c: EtcdMiddleware, etcd_server: Any) -> None:
    election = v3c.election("/e", ttl=10)
    election.campaign("ours")
    before = leases(etcd_server)
    process = etcdctl(etcd_server, "elect", "--listen", election.prefix)
    try:
        assert read_line(process, 10).strip().startswith(election.prefix + "/")
        assert read_line(process, 5).strip() == "ours"
        listening = leases(etcd_server) - before  # etcdctl's session, even to listen
        election.proclaim("ours, again")
        read_line(process, 5)
        assert read_line(process, 5).strip() == "ours, again"
        follower = etcdctl(etcd_server, "elect", election.prefix, "theirs")
        try:
            assert wait_until(lambda: len(v3c.children("/e")) == 2, 5)
            election.resign()
            theirs = read_line(follower, 10).strip()
            assert theirs.startswith(election.prefix + "/")
            assert read_line(follower, 5).strip() == "theirs"
            assert election.leader() == Leader("theirs", election.leader().token)  # type: ignore[union-attr]
        finally:
            follower.send_signal(signal.SIGINT)
            follower.wait(10)
        revoke_leftover(etcd_server, theirs)
    finally:
        process.kill()
        process.wait()
    for lease in listening:
        etcd_server.etcdctl("lease", "revoke", f"{lease:x}", check=False)


# -- failover (3 members) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with EtcdCluster(3, enable_v2=False) as cluster:
        yield cluster


def test_failover_after_the_leader_process_is_killed(
    cluster: EtcdCluster, etcd_prefix: str
) -> None:
    ttl = 3
    before = leases(cluster)
    client = EtcdMiddleware(endpoints=list(cluster.endpoints), prefix=etcd_prefix)
    process, held = start_holder(cluster.endpoints, etcd_prefix, "election", "/e", ttl)
    try:
        follower = client.election("/e", ttl=ttl)
        thread, outcome = campaign_in_thread(follower, "follower", 30)
        assert wait_until(lambda: len(client.children("/e")) == 2, 5)
        assert follower.leader() == Leader("child", int(held[1]))
        process.kill()
        killed = time.monotonic()
        thread.join(ttl + 5)
        took = time.monotonic() - killed
        assert outcome == [("follower", follower.token)]
        assert outcome[0].token > int(held[1])
        assert took <= ttl + 1, f"a follower led {took:.2f} s after the leader was killed"
        follower.resign()
    finally:
        process.kill()
        process.wait()
        client.close()
    assert wait_until(lambda: leases(cluster) <= before, 5)
