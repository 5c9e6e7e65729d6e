"""Locks (link.etcd.recipes.lock) against real etcd: mutual exclusion, fencing
tokens, guarded writes, lost leases, timeouts, leaks, and etcdctl lock interop."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from link.etcd import (
    EtcdInvalidTree,
    EtcdLockLost,
    EtcdLockTimeout,
    EtcdMiddleware,
    EtcdUnsupported,
)
from link.etcd.backends.base import KeyValue
from link.etcd.backends.v3.guarded import Held
from link.etcd.backends.v3.protocol import (
    CREATE,
    EQUAL,
    Compare,
    Put,
    Range,
    RangeResult,
    Txn,
    TxnResult,
)
from link.etcd.paths import below, encode_key
from link.etcd.recipes.lock import first_created, last_created_before
from link.etcd.testing import EtcdCluster

ROOT = Path(__file__).resolve().parent.parent

#: A holder in its own process: takes the lock (or leadership), says so, waits
#: for a line on stdin, then tries a guarded write and says what happened.
HOLDER = r"""
import sys
from link.etcd import EtcdLockLost, EtcdMiddleware
endpoints, prefix, kind, name, ttl = sys.argv[1:6]
client = EtcdMiddleware(endpoints=endpoints.split(","), prefix=prefix)
if kind == "lock":
    holder = client.lock(name, ttl=float(ttl))
    holder.acquire()
else:
    holder = client.election(name, ttl=float(ttl))
    holder.campaign("child")
print("held", holder.token, holder.key if kind == "lock" else "", flush=True)
sys.stdin.readline()
lost = holder.lost.wait(10)
try:
    client.set("/fenced", "child", if_held=holder)
    print("wrote", lost, flush=True)
except EtcdLockLost:
    print("refused", lost, flush=True)
"""


def start_holder(endpoints: Any, prefix: str, kind: str, name: str, ttl: float) -> Any:
    """The HOLDER process, once it holds; its ``held`` line split in words."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ",".join(endpoints), prefix, kind, name, str(ttl)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = read_line(process, 20)
    assert line.startswith("held "), line
    return process, line.split()


def read_line(process: Any, timeout: float) -> str:
    """The next line of ``process.stdout``, waiting at most ``timeout`` seconds."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        process.kill()
        raise AssertionError(f"no line from {process.args[:3]} within {timeout} s")
    return lines[0]


def leases(server: Any) -> set[int]:
    """The ids of the leases etcd has now (``etcdctl lease list``: LeaseLeases)."""
    out = server.etcdctl("lease", "list").stdout.split()
    return {int(word, 16) for word in out[3:]}  # "found N leases", then ids in hex


def lease_hex(lock: Any) -> str:
    """The last segment of a holder's key: its lease id in hex."""
    assert lock.key is not None
    return str(lock.key.rsplit("/", 1)[1])


def add(token: int, record: list[int]) -> list[int]:
    return [*record, token]


def wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def grpc(v3: EtcdMiddleware, etcd_server: Any) -> Iterator[EtcdMiddleware]:
    """The v3 client; on exit, no key left below its prefix and no lease leaked."""
    before = leases(etcd_server)
    yield v3
    assert wait_until(lambda: leases(etcd_server) <= before, 5), "a lease was leaked"


# -- pure parts -------------------------------------------------------------------


def test_held_is_a_create_revision_compare() -> None:
    held = Held(b"/locks/a/1f", 42, "/locks/a")
    assert held.compare() == Compare(b"/locks/a/1f", CREATE, EQUAL, 42)
    error = held.lost()
    assert isinstance(error, EtcdLockLost)
    assert "42" in str(error)


@pytest.mark.parametrize(
    "kwargs", [{"ttl": 0}, {"ttl": -1}, {"ttl": True}, {"ttl": float("nan")}, {"timeout": -1}]
)
def test_bad_settings_raise_before_any_request(v3: EtcdMiddleware, kwargs: Any) -> None:
    with pytest.raises(EtcdInvalidTree):
        v3.lock("/locks/a", **kwargs)
    assert "/locks" not in v3


def test_bad_names_raise(v3: EtcdMiddleware) -> None:
    for name in ("", "a//b", "/a/../b"):
        with pytest.raises(EtcdInvalidTree):
            v3.lock(name)
    with pytest.raises(EtcdInvalidTree):
        EtcdMiddleware(endpoints=v3.settings.endpoints).lock("/")


def test_v2_has_no_locks(etcd_server: Any, etcd_prefix: str) -> None:
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2", prefix=etcd_prefix) as c:
        with pytest.raises(EtcdUnsupported):
            c.lock("/locks/a")
        with pytest.raises(EtcdUnsupported):
            c.election("/elections/a")
        held = Held(b"/x/1", 1, "/x")
        with pytest.raises(EtcdUnsupported):
            c.set("/a", 1, if_held=held)
        with pytest.raises(EtcdUnsupported):
            c.transform("/a", lambda v: v, default=0, if_held=held)
        assert "/a" not in c


# -- holding and writing ----------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
def test_guarded_writes_only_while_held(etcd_server: Any, etcd_prefix: str, transport: str) -> None:
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport
    ) as client:
        lock = client.lock("/locks/a", ttl=10)
        assert lock.token is None
        assert not lock.locked()
        with pytest.raises(EtcdLockLost):
            client.set("/data", 1, if_held=lock)  # never acquired
        with lock:
            assert lock.locked()
            assert lock.key == f"{client.key('/locks/a')}/{lease_hex(lock)}"
            assert lock.prefix == f"{etcd_prefix}/locks/a"
            client.set("/data", {"n": 1}, if_held=lock)
            assert client.transform("/data/n", lambda n: n + 1, if_held=lock) == 2
            stale = lock.guard
        assert lock.token is None
        assert lock.key is None
        with pytest.raises(EtcdLockLost):
            client.set("/data", {"n": 5}, if_held=stale)
        with pytest.raises(EtcdLockLost):
            client.transform("/data/n", lambda n: n + 1, if_held=stale)
        with pytest.raises(EtcdLockLost):
            client.set("/other", 1, if_held=stale)
        assert client["/data"] == {"n": 2}
        assert "/other" not in client
        assert client.children("/") == ["data"]  # the lock's key went with the release


def kvs_of(answer: object) -> list[KeyValue]:
    """The key-values of a range's answer."""
    assert isinstance(answer, RangeResult), answer
    return answer.kvs


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
def test_ranges_by_create_revision(etcd_server: Any, etcd_prefix: str, transport: str) -> None:
    """KeyValue carries create_revision and version on both transports, and a range
    sorted by create revision (limit 1, max_create_revision) finds the first key
    and a key's predecessor where key order and mod revision order say otherwise."""
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport
    ) as client:
        call = client._v3("/q", "locks").transport.call
        prefix = client.key("/q")
        created = {}
        for name in ("c", "a", "b"):  # created in this order: key order differs
            created[name] = call(Put(encode_key(f"{prefix}/{name}"), name.encode())).revision
        rewritten = call(Put(encode_key(f"{prefix}/c"), b"c2")).revision  # c: mod is last now
        start, end = below(prefix)
        everything = kvs_of(call(Range(start, end)))
        assert [(kv.key[-1], kv.create_revision, kv.version) for kv in everything] == [
            ("a", created["a"], 1),
            ("b", created["b"], 1),
            ("c", created["c"], 2),
        ]
        assert everything[2].mod_revision == rewritten
        first = kvs_of(call(first_created(prefix)))
        assert [(kv.key, kv.value, kv.create_revision) for kv in first] == [
            (f"{prefix}/c", b"c2", created["c"])
        ]
        for name, predecessor in (("a", "c"), ("b", "a"), ("c", None)):
            found = kvs_of(call(last_created_before(prefix, created[name])))
            assert [kv.key for kv in found] == ([f"{prefix}/{predecessor}"] if predecessor else [])
        by_create = Range(start, end, sort_target=CREATE)  # ascending, no limit, in a txn
        answer = call(Txn([], [by_create, Range(start, end, descending=True, sort_target=CREATE)]))
        assert isinstance(answer, TxnResult)
        ascending, descending = (kvs_of(r) for r in answer.responses)
        assert [kv.key[-1] for kv in ascending] == ["c", "a", "b"]
        assert [kv.key[-1] for kv in descending] == ["b", "a", "c"]
        del client["/q"]


def test_release_of_an_unheld_lock_raises(grpc: EtcdMiddleware) -> None:
    lock = grpc.lock("/locks/a", ttl=10)
    with pytest.raises(RuntimeError):
        lock.release()
    assert lock.acquire()
    with pytest.raises(RuntimeError):
        lock.acquire()  # not reentrant
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_mutual_exclusion_with_increasing_tokens(cluster: EtcdCluster, etcd_prefix: str) -> None:
    """8 threads x 25 critical sections, each thread with its own client talking to
    one of 3 members first: never two inside, and the tokens of the successive
    holders increase strictly, as the record in etcd shows."""
    threads, sections = 8, 25
    before = leases(cluster)
    members = list(cluster.endpoints)
    clients = [
        EtcdMiddleware(endpoints=members[n % 3 :] + members[: n % 3], prefix=etcd_prefix)
        for n in range(threads)
    ]
    inside: list[int] = []
    overlaps: list[tuple[int, int]] = []
    entered: list[int] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def work(number: int) -> None:
        client = clients[number]
        try:
            lock = client.lock("/locks/shared", ttl=10, timeout=60)
            for _ in range(sections):
                with lock:
                    token = lock.token
                    assert token is not None
                    with guard:
                        if inside:
                            overlaps.append((inside[0], number))
                        inside.append(number)
                        entered.append(token)
                    client.transform("/record", partial(add, token), default=[], if_held=lock)
                    time.sleep(0.001)
                    with guard:
                        inside.remove(number)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test's assert
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(75)
    assert not any(worker.is_alive() for worker in workers)
    assert not errors, errors
    assert not overlaps
    assert len(entered) == threads * sections
    assert all(a < b for a, b in pairwise(entered))
    assert clients[0]["/record"] == entered
    assert clients[1].children("/locks/shared") == []
    for client in clients:
        client.close()
    assert wait_until(lambda: leases(cluster) <= before, 5), "a lease was leaked"


# -- timeouts ---------------------------------------------------------------------


def test_timeout_raises_and_never_runs_the_block(grpc: EtcdMiddleware, etcd_server: Any) -> None:
    with grpc.lock("/locks/a", ttl=10) as holder:
        before = leases(etcd_server)
        waiter = grpc.lock("/locks/a", ttl=10, timeout=0.5)
        ran = False
        started = time.monotonic()
        with pytest.raises(EtcdLockTimeout), waiter:
            ran = True
        assert not ran
        assert time.monotonic() - started >= 0.5
        assert waiter.token is None
        assert waiter.key is None
        assert waiter.acquire(timeout=0) is False
        assert grpc.children("/locks/a") == [lease_hex(holder)]
        assert leases(etcd_server) == before  # the waiters' leases were revoked
    assert grpc.children("/locks/a") == []


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
def test_a_waiter_gets_the_lock_on_release(
    etcd_server: Any, etcd_prefix: str, transport: str
) -> None:
    client = EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport
    )
    first = client.lock("/locks/a", ttl=10)
    second = client.lock("/locks/a", ttl=10)
    third = client.lock("/locks/a", ttl=10)
    assert first.acquire()
    timer = threading.Timer(0.3, first.release)
    timer.start()
    assert second.acquire(timeout=10)
    timer.join()
    assert second.token is not None
    assert first.token is None
    assert third.acquire(timeout=0.2) is False
    timer = threading.Timer(0.3, second.release)
    timer.start()
    assert third.acquire(timeout=10)
    timer.join()
    third.release()
    assert client.children("/locks/a") == []
    client.close()


def test_each_waiter_watches_its_immediate_predecessor(grpc: EtcdMiddleware) -> None:
    """Waiters queue in the order they joined, each watching the key created just
    before its own; when a middle waiter gives up, the next one watches the key
    before it."""
    locks = [grpc.lock("/locks/a", ttl=10) for _ in range(4)]
    assert locks[0].acquire()
    threads, outcomes = [], []
    for waiter, timeout in ((locks[1], 20.0), (locks[2], 1.5), (locks[3], 20.0)):
        outcome: list[Any] = []
        thread = threading.Thread(
            target=lambda w=waiter, t=timeout, o=outcome: o.append(_attempt(w.acquire, t))
        )
        thread.start()
        threads.append(thread)
        outcomes.append(outcome)
        assert wait_until(lambda w=waiter: _watching(w) is not None, 5)
    assert [_watching(w) for w in locks[1:]] == [w.key for w in locks[:3]]
    threads[1].join(10)
    assert outcomes[1] == [False]
    assert wait_until(lambda: _watching(locks[3]) == locks[1].key, 5)
    token = locks[0].token
    assert token is not None
    locks[0].release()
    threads[0].join(10)
    assert outcomes[0] == [True]
    assert locks[1].token is not None
    assert locks[1].token > token
    locks[1].release()
    threads[2].join(10)
    assert outcomes[2] == [True]
    assert locks[3].token is not None
    locks[3].release()
    assert grpc.children("/locks/a") == []


def _watching(holder: Any) -> str | None:
    """The key a waiting lock or candidate watches now (its queue's predecessor)."""
    queue = holder._queue
    return None if queue is None else queue.predecessor


def test_a_waiter_whose_lease_ends_gets_lock_lost(grpc: EtcdMiddleware, etcd_server: Any) -> None:
    holder = grpc.lock("/locks/a", ttl=10)
    assert holder.acquire()
    waiter = grpc.lock("/locks/a", ttl=10)
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(_attempt(waiter.acquire, 20)))
    thread.start()
    assert wait_until(lambda: len(grpc.children("/locks/a")) == 2, 5)
    queued = next(key for key in grpc.children("/locks/a") if key != lease_hex(holder))
    etcd_server.etcdctl("lease", "revoke", queued)
    thread.join(10)
    assert len(outcome) == 1
    assert isinstance(outcome[0], EtcdLockLost)
    assert waiter.key is None
    assert waiter.token is None
    holder.release()
    assert grpc.children("/locks/a") == []


def _attempt(function: Any, *args: Any) -> Any:
    """``function(*args)``, or the exception it raised."""
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 - returned for the test to assert on
        return exc


# -- lost leases, crashed holders (3 members) -------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with EtcdCluster(3, enable_v2=False) as cluster:
        yield cluster


def test_paused_holder_loses_the_lock(cluster: EtcdCluster, etcd_prefix: str) -> None:
    """Jepsen's scenario: the holder pauses (SIGSTOP) longer than its lease; the
    lease expires and another holder gets the lock with a larger token; the first
    resumes, sees ``lost``, and its guarded write is refused and writes nothing."""
    before = leases(cluster)
    client = EtcdMiddleware(endpoints=list(cluster.endpoints), prefix=etcd_prefix)
    process, (_, token, _key) = start_holder(cluster.endpoints, etcd_prefix, "lock", "/l", 2)
    try:
        process.send_signal(signal.SIGSTOP)
        lock = client.lock("/l", ttl=10)
        assert lock.acquire(timeout=15)  # once the paused holder's lease expired
        assert lock.token is not None
        assert lock.token > int(token)
        process.send_signal(signal.SIGCONT)
        process.stdin.write("go\n")
        process.stdin.flush()
        assert read_line(process, 15).split() == ["refused", "True"]
        assert "/fenced" not in client
        client.set("/fenced", "parent", if_held=lock)
        lock.release()
        assert process.wait(10) == 0
    finally:
        process.kill()
        client.close()
    assert wait_until(lambda: leases(cluster) <= before, 5)


def test_revoked_lease_sets_lost(grpc: EtcdMiddleware, etcd_server: Any) -> None:
    lock = grpc.lock("/locks/a", ttl=30)
    assert lock.acquire()
    etcd_server.etcdctl("lease", "revoke", lease_hex(lock))
    assert lock.lost.wait(5)
    assert not lock.locked()
    with pytest.raises(EtcdLockLost):
        grpc.set("/data", 1, if_held=lock)
    assert "/data" not in grpc
    lock.release()  # a lost lock is released without error


def test_crashed_holder_leaks_nothing(cluster: EtcdCluster, etcd_prefix: str) -> None:
    before = leases(cluster)
    client = EtcdMiddleware(endpoints=list(cluster.endpoints), prefix=etcd_prefix)
    process, (_, token, key) = start_holder(cluster.endpoints, etcd_prefix, "lock", "/l", 2)
    try:
        assert int(key.rsplit("/", 1)[1], 16) in leases(cluster)
        process.kill()
        process.wait(10)
        with client.lock("/l", ttl=10, timeout=15) as lock:
            assert lock.token is not None
            assert lock.token > int(token)
        assert client.children("/l") == []
    finally:
        process.kill()
        client.close()
    assert wait_until(lambda: leases(cluster) <= before, 5)


# -- etcdctl lock --------------------------------------------------------------------


def etcdctl(server: Any, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    return subprocess.Popen(
        [server.etcdctl_binary(), f"--endpoints={server.endpoint}", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "ETCDCTL_API": "3"},
    )


def revoke_leftover(server: Any, key: str) -> None:
    """Revoke the session lease an ``etcdctl lock``/``elect`` process left behind:
    etcdctl 3.5 releases the key on SIGINT but lets its lease expire (elect: 60 s)."""
    server.etcdctl("lease", "revoke", key.rsplit("/", 1)[-1], check=False)


def test_etcdctl_lock_waits_for_ours(grpc: EtcdMiddleware, etcd_server: Any) -> None:
    lock = grpc.lock("/locks/a", ttl=10)
    assert lock.acquire()
    process = etcdctl(etcd_server, "lock", "--ttl=5", lock.prefix, "echo", "inside")
    try:
        time.sleep(1.0)
        assert process.poll() is None  # waiting behind ours
        queue = grpc.children("/locks/a")
        assert len(queue) == 2  # its key queues beside ours
        theirs = next(key for key in queue if lock.key and not lock.key.endswith(key))
        lock.release()
        out, _ = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "inside" in out
        revoke_leftover(etcd_server, theirs)
    finally:
        process.kill()
        process.wait()


def test_ours_waits_for_etcdctl_lock(grpc: EtcdMiddleware, etcd_server: Any) -> None:
    name = grpc.key("/locks/a")
    process = etcdctl(etcd_server, "lock", "--ttl=5", name)
    try:
        key = read_line(process, 10).strip()
        assert key.startswith(name + "/")  # <name>/<lease id hex>: the layout we use
        lock = grpc.lock("/locks/a", ttl=10)
        assert lock.acquire(timeout=0.5) is False
        process.send_signal(signal.SIGINT)  # etcdctl unlocks
        assert lock.acquire(timeout=10)
        assert process.wait(10) == 0
        lock.release()
        revoke_leftover(etcd_server, key)
    finally:
        process.kill()
        process.wait()


# -- docs -----------------------------------------------------------------------------
