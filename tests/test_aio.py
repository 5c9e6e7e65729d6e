"""AsyncEtcdMiddleware on both v3 transports (grpc.aio, httpx to the gateway)
against a real etcd: the middleware's semantics, watches, cancellation, clean
close, concurrency, and an event loop that is never blocked."""

import asyncio
import gc
import itertools
import logging
import os
import random
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.aio import AsyncEtcdMiddleware
from link.etcd.errors import (
    EtcdAuthError,
    EtcdCompareFailed,
    EtcdConnectionFailed,
    EtcdInvalidTree,
    EtcdKeyNotFound,
    EtcdPermissionDenied,
    EtcdUnsupported,
)
from link.etcd.testing import EtcdServer
from link.etcd.watch import WatchEvent

from .helpers import same
from .test_cluster import TOKEN_TTL
from .test_cluster import auth_server as auth_server_fixture
from .test_cluster import tls as tls_fixture

pytestmark = pytest.mark.anyio
auth_server = auth_server_fixture  # test_cluster's etcd with users, roles and 2 s tokens
tls = tls_fixture  # test_cluster's etcd with TLS and client certificates, and their files

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ["grpc", "gateway"]
WAIT = 10.0  # seconds; a change normally arrives within milliseconds

DOCUMENT = {
    "db": {"host": "db1", "port": 5432, "ratio": 0.5, "tls": False, "password": None},
    "features": ["a", "42", 42, 4.2, True, None, [], {}, [1, [2]]],
    "names": {"": "empty", "a/b": "slash", "%": "percent", "00000000000000000001": "digits"},
    "empty": {},
    "text": "localhost",
    "json-looking": "[1, 2]",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(
    etcd_server: Any, etcd_prefix: str, transport: str
) -> AsyncIterator[AsyncEtcdMiddleware]:
    async with AsyncEtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport
    ) as aclient:
        yield aclient


# -- the middleware's semantics --------------------------------------------------


async def test_round_trip_of_a_mixed_document(client: AsyncEtcdMiddleware) -> None:
    await client.set("/app", DOCUMENT)
    assert same(await client.get("/app"), DOCUMENT)
    assert same(await client.get("/app/features"), DOCUMENT["features"])
    assert await client.get("/app/db/port") == 5432
    value, revision = await client.snapshot("/app")
    assert same(value, DOCUMENT)
    assert revision > 0


async def test_replace_and_delete(client: AsyncEtcdMiddleware) -> None:
    await client.set("/app", {"a": {"x": 1, "y": 2}, "b": [1, 2, 3]})
    await client.set("/app", {"a": {"x": 1}, "c": "new"})
    assert await client.get("/app") == {"a": {"x": 1}, "c": "new"}
    await client.set("/app/a/x/deeper", True)  # below a leaf: the leaf goes
    assert await client.get("/app/a") == {"x": {"deeper": True}}
    await client.delete("/app/a")
    assert await client.get("/app") == {"c": "new"}
    await client.delete("/app")
    assert not await client.contains("/app")


async def test_missing_paths(client: AsyncEtcdMiddleware) -> None:
    with pytest.raises(EtcdKeyNotFound) as caught:
        await client.get("/missing")
    assert isinstance(caught.value, KeyError)
    assert await client.get("/missing", "default") == "default"
    assert await client.get("/missing", None) is None
    assert (await client.snapshot("/missing", default=0))[0] == 0
    with pytest.raises(EtcdKeyNotFound):
        await client.delete("/missing")
    assert not await client.contains("/missing")
    assert await client.children("/missing") == []
    with pytest.raises(EtcdInvalidTree):
        await client.set("/bad", {"x": object()})  # nothing written
    with pytest.raises(EtcdInvalidTree):
        await client.set("/", 1)  # the root is not a value
    with pytest.raises(EtcdInvalidTree):
        await client.get("/a//b")
    assert not await client.contains("/bad")


async def test_children_and_contains(client: AsyncEtcdMiddleware) -> None:
    await client.set("/app", {"b": 1, "a": {"x": 1}, "l": [1, 2]})
    assert await client.children("/app") == ["a", "b", "l"]
    assert await client.children("/app/l") == ["00000000000000000000", "00000000000000000001"]
    assert await client.children("/app/b") == []
    assert await client.contains("/app")
    assert await client.contains("/app/a/x")
    assert not await client.contains("/app/z")
    assert await client.children("/") == ["app"]


async def test_conditional_writes(client: AsyncEtcdMiddleware) -> None:
    assert await client.create("/c", {"v": 1})
    assert not await client.create("/c", {"v": 2})
    assert not await client.compare_and_swap("/c", {"v": 2}, "x")
    assert await client.compare_and_swap("/c", {"v": 1}, [1, 2])
    assert await client.get("/c") == [1, 2]
    _, revision = await client.snapshot("/c")
    await client.set("/c", "next", if_revision=revision)
    with pytest.raises(EtcdCompareFailed):
        await client.set("/c", "stale", if_revision=revision)
    assert await client.get("/c") == "next"
    await client.update({"/u/a": 1, "/u/b": [True]}, other="x")
    assert await client.get("/u") == {"a": 1, "b": [True]}
    assert await client.get("/other") == "x"
    assert await client.append("/log", {"n": 1}) == "/log/00000000000000000000"
    assert await client.append("/log", "two") == "/log/00000000000000000001"
    assert await client.get("/log") == [{"n": 1}, "two"]


async def test_transform_with_an_async_function_loses_no_update(
    client: AsyncEtcdMiddleware,
) -> None:
    async def increment(value: int) -> int:
        await asyncio.sleep(random.uniform(0, 0.002))  # let other writers in
        return value + 1

    await asyncio.gather(*(client.transform("/n", increment, default=0) for _ in range(20)))
    assert await client.get("/n") == 20
    assert await client.transform("/n", lambda value: value * 2) == 40  # a sync function
    with pytest.raises(EtcdKeyNotFound):
        await client.transform("/none", increment)


async def test_leases(client: AsyncEtcdMiddleware) -> None:
    async with client.lease(2, keepalive=True) as lease:
        await client.set("/svc", {"port": 1}, lease=lease)
        assert await lease.keys() == ["/svc/port"]
        await asyncio.sleep(2.5)  # past the TTL: the keepalive task kept it
        assert await client.get("/svc") == {"port": 1}
    assert not await client.contains("/svc")  # revoked on exit
    await client.set("/short", 1, ttl=5)
    assert await client.get("/short") == 1
    with pytest.raises(EtcdInvalidTree):
        await client.set("/x", 1, ttl=5, lease=1)


async def test_v2_stays_sync_only(etcd_server: Any) -> None:
    with pytest.raises(EtcdUnsupported, match="v2 API is sync-only"):
        AsyncEtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2")


async def test_settings_and_errors_are_the_sync_ones(transport: str) -> None:
    uri = f"etcd://127.0.0.1:1/pre?transport={transport}&read_timeout=0.3"
    async with AsyncEtcdMiddleware.from_uri(uri) as aclient:
        assert aclient.settings == EtcdMiddleware.from_uri(uri).settings
        assert aclient.key("/a") == "/pre/a"
        assert "127.0.0.1:1" in repr(aclient)
        with pytest.raises(EtcdConnectionFailed) as caught:
            await aclient.get("/a")
        assert caught.value.endpoints == ("http://127.0.0.1:1",)


async def test_failover_to_the_member_that_answers(etcd_server: Any, transport: str) -> None:
    async with AsyncEtcdMiddleware(
        endpoints=["127.0.0.1:1", etcd_server.endpoint], read_timeout=0.5, transport=transport
    ) as aclient:
        assert await aclient.get("/nothing-here", 1) == 1
        assert aclient.transport.failover.current == 1  # later requests go there first


# -- watches ----------------------------------------------------------------------


async def test_watch_gives_the_sync_apis_events(client: AsyncEtcdMiddleware) -> None:
    await client.set("/cfg", {"a": 1})
    start = (await client.snapshot("/cfg"))[1] + 1
    seen: list[WatchEvent] = []
    async with client.watch("/cfg") as events:
        await client.set("/cfg/a", 2)
        await client.set("/cfg", {"b": [1]})
        await client.set("/cfg-sibling", 0)  # not below /cfg
        async with asyncio.timeout(WAIT):
            async for event in events:
                seen.append(event)
                if event.path == "/cfg/b/00000000000000000000":
                    break
    assert [(e.type, e.path, e.value, e.prev_value) for e in seen] == [
        ("PUT", "/cfg/a", 2, 1),
        ("DELETE", "/cfg/a", None, 2),
        ("PUT", "/cfg/b/00000000000000000000", 1, None),
    ]
    with EtcdMiddleware(client.settings) as sync:  # the same WatchEvent objects
        stream = sync.watch("/cfg", start_revision=start)
        assert list(itertools.islice(stream, len(seen))) == seen
        stream.cancel()


async def test_watch_tree_gives_the_current_tree_then_each_version(
    client: AsyncEtcdMiddleware,
) -> None:
    await client.set("/cfg", {"a": 1})
    async with client.watch_tree("/cfg") as versions:
        iterator = aiter(versions)
        value, revision = await anext(iterator)
        assert value == {"a": 1}
        await client.set("/cfg", {f"k{i}": i for i in range(50)})  # one txn: one version
        value, later = await asyncio.wait_for(anext(iterator), WAIT)
        assert value == {f"k{i}": i for i in range(50)}
        assert later > revision
        await client.delete("/cfg")
        assert (await asyncio.wait_for(anext(iterator), WAIT))[0] is None


def _watchers(server: Any) -> int:
    text = _metrics(server)
    match = re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", text, re.M)
    assert match, "etcd exposes no watcher gauge"
    return int(float(match.group(1)))


def _metrics(server: Any) -> str:
    import urllib.request

    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=5) as answer:
        return str(answer.read().decode())


async def _until(condition: Any) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.05)


async def _ended(task: asyncio.Task[Any]) -> None:
    """Wait for a cancelled ``task`` to end, within :data:`WAIT` (the calls it made
    carry ``read_timeout`` deadlines): a failure showing where it waits, not a hang."""
    done, _ = await asyncio.wait({task}, timeout=WAIT)
    if not done:
        task.print_stack()
        pytest.fail(f"a cancelled task did not end within {WAIT} s: {task!r}")
    if not task.cancelled():
        task.exception()  # retrieved: the call may have ended before the cancellation


async def _settled(tasks: set[Any]) -> None:
    """No task but ``tasks`` is left, after the loop ran what was scheduled (a
    cancelled gRPC call's status arrives a loop iteration later)."""
    for _ in range(20):
        if asyncio.all_tasks() <= tasks:
            return
        await asyncio.sleep(0.01)
    assert asyncio.all_tasks() <= tasks


async def test_cancelling_a_watch_iteration_closes_its_stream(
    client: AsyncEtcdMiddleware, etcd_server: Any
) -> None:
    tasks = asyncio.all_tasks()
    before = _watchers(etcd_server)
    entered, started = asyncio.Event(), asyncio.Event()

    async def follow() -> None:
        async with client.watch("/w") as events:
            entered.set()
            async for _ in events:
                started.set()

    task = asyncio.create_task(follow())
    await entered.wait()
    await client.set("/w", 1)
    await asyncio.wait_for(started.wait(), WAIT)
    assert _watchers(etcd_server) == before + 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: _watchers(etcd_server) == before)
    async with client.watch("/w") as events:  # leaving the loop, then the block
        await client.set("/w", 2)
        async for _ in events:
            assert _watchers(etcd_server) == before + 1
            break
    await _until(lambda: _watchers(etcd_server) == before)
    assert not client._watches
    await _settled(tasks)


# -- cancellation of writes --------------------------------------------------------


async def test_a_cancelled_one_txn_write_leaves_the_old_or_the_new_tree(
    client: AsyncEtcdMiddleware,
) -> None:
    tasks = asyncio.all_tasks()
    old = {"v": "old", "items": list(range(5))}
    new = {"v": "new", "other": {"x": 1}}
    for attempt in range(30):
        await client.set("/t", old)
        task = asyncio.create_task(client.set("/t", new))
        await asyncio.sleep(random.uniform(0, 0.003))
        task.cancel()
        await _ended(task)
        value = await client.get("/t")
        assert value in (old, new), attempt
    await _settled(tasks)


async def test_a_cancelled_multi_txn_write_stops_and_a_new_write_repairs_it(
    etcd_server: Any, etcd_prefix: str, transport: str
) -> None:
    async with AsyncEtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport, max_txn_ops=8
    ) as aclient:
        await aclient.set("/t", {f"k{i:03d}": "old" for i in range(400)})
        tasks = asyncio.all_tasks()
        task = asyncio.create_task(aclient.set("/t", {f"k{i:03d}": "new" for i in range(400)}))
        await asyncio.sleep(0.02)  # in the middle of its 50 txns
        task.cancel()
        await _ended(task)
        await _settled(tasks)  # no request left in flight
        mixed = await aclient.get("/t")
        assert set(mixed.values()) <= {"old", "new"}
        assert len(mixed) == 400
        await aclient.set("/t", {"done": True})
        assert await aclient.get("/t") == {"done": True}


async def test_cancelled_reads_end_in_the_background(
    etcd_server: Any, etcd_prefix: str, transport: str
) -> None:
    """etcd 3.5.1 crashes when a read-only txn is cancelled while it reads
    (etcd-io/etcd#14110): a cancelled read returns at once; a read-only txn (here
    ``children``, a txn of ranges) goes on in the background, a plain range
    (``get``) is cancelled with its task."""
    tree = {f"k{i:05d}": i for i in range(20_000)}
    aclient = AsyncEtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport
    )
    await aclient.set("/big", tree)
    for delay in (0, 0.002, 0.005, 0.01):
        reads = [asyncio.create_task(aclient.get("/big")) for _ in range(5)]
        reads += [asyncio.create_task(aclient.children("/big")) for _ in range(5)]
        await asyncio.sleep(delay)
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
    assert aclient.transport.pending  # still reading for the cancelled txns
    await aclient.aclose()  # waits for them
    async with AsyncEtcdMiddleware(aclient.settings) as again:  # etcd is still up
        assert await again.get("/big") == tree
        await again.delete("/big")


# -- authentication ----------------------------------------------------------------


async def test_authentication_and_an_expired_token(auth_server: EtcdServer, transport: str) -> None:
    endpoints = [auth_server.endpoint]
    async with AsyncEtcdMiddleware(
        endpoints=endpoints, username="app", password="wrong", transport=transport
    ) as aclient:
        with pytest.raises(EtcdAuthError):
            await aclient.get("/app", None)
    async with AsyncEtcdMiddleware(
        endpoints=endpoints, username="app", password="app-pw", transport=transport
    ) as aclient:
        await aclient.set("/app", {"v": 0})
        with pytest.raises(EtcdPermissionDenied):
            await aclient.get("/elsewhere")
        token = aclient.transport.failover.members[0].token
        assert token
        assert token not in repr(aclient)
        assert "app-pw" not in repr(aclient)
        async with aclient.watch("/app/v") as events:  # (one of /app covers /app-x too)
            await asyncio.sleep(TOKEN_TTL + 1.5)  # etcd has dropped the token
            await aclient.set("/app/v", 1)  # with a new one
            assert aclient.transport.failover.members[0].token != token
            event = await asyncio.wait_for(anext(events), WAIT)
            assert (event.path, event.value) == ("/app/v", 1)


async def test_tls_with_a_client_certificate(
    tls: tuple[EtcdServer, dict[str, str]], transport: str
) -> None:
    server, files = tls
    async with AsyncEtcdMiddleware(
        endpoints=[server.endpoint],
        transport=transport,
        ca_cert=files["ca"],
        cert=files["client"],
        cert_key=files["client_key"],
    ) as aclient:
        await aclient.set("/secure", DOCUMENT)
        assert same(await aclient.get("/secure"), DOCUMENT)
    async with AsyncEtcdMiddleware(
        endpoints=[server.endpoint], transport=transport, read_timeout=1
    ) as aclient:
        with pytest.raises(EtcdConnectionFailed):  # no CA given: the server is not trusted
            await aclient.get("/secure")


# -- resources, concurrency, the event loop ----------------------------------------


def _sockets_to(port: int) -> set[str]:
    """Established TCP connections from this process to ``port`` (socket inodes: other
    clients of the session may close theirs meanwhile, so compare sets, not counts)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in itertools.islice(lines, 1, None):
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in ours:
                    found.add(fields[9])
    return found


async def test_aclose_leaves_no_task_channel_or_socket(
    etcd_server: Any, etcd_prefix: str, transport: str
) -> None:
    tasks = asyncio.all_tasks()
    sockets = _sockets_to(etcd_server.port)
    threads = threading.active_count()
    aclient = AsyncEtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport, max_txn_ops=8
    )
    await aclient.set("/w", {f"k{i}": i for i in range(100)})  # txns in flight together
    await asyncio.gather(*(aclient.get("/w") for _ in range(50)))
    lease = await aclient.lease(5, keepalive=True).grant()
    entered, watching = asyncio.Event(), asyncio.Event()

    async def follow() -> list[Any]:
        seen = []
        async with aclient.watch("/w") as events:
            entered.set()
            async for event in events:
                seen.append(event)
                watching.set()
        return seen  # the iteration ends when the client is closed

    reader = asyncio.create_task(follow())
    await entered.wait()
    await aclient.set("/w/k0", "changed")
    await asyncio.wait_for(watching.wait(), WAIT)
    assert _sockets_to(etcd_server.port) - sockets  # the client's own connections
    await aclient.aclose()
    assert len(await asyncio.wait_for(reader, WAIT)) >= 1
    await _settled(tasks)
    assert threading.active_count() <= threads  # no thread per request
    await _until(lambda: not _sockets_to(etcd_server.port) - sockets)
    with EtcdMiddleware(aclient.settings) as sync:  # closed, not revoked: it expires
        assert sync.lease_from_id(lease.id).remaining() > 0
        sync.lease_from_id(lease.id).revoke()


async def test_1000_tasks_each_round_trip_their_own_tree(client: AsyncEtcdMiddleware) -> None:
    async def one(i: int) -> bool:
        tree = {"id": i, "name": str(i), "items": [i, float(i), {"deep": [None, True]}]}
        await client.set(f"/tasks/t{i}", tree)
        return same(await client.get(f"/tasks/t{i}"), tree)

    assert all(await asyncio.gather(*(one(i) for i in range(1000))))
    assert len(await client.children("/tasks")) == 1000


def test_nothing_blocks_the_event_loop(
    etcd_server: Any, etcd_prefix: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    tree = {
        f"d{d}": {f"k{k}": d * k if k % 2 else f"v{d}-{k}" for k in range(100)} for d in range(100)
    }

    changed = {name: {**items, "k0": "changed"} for name, items in tree.items()}

    async def body() -> None:
        asyncio.get_running_loop().slow_callback_duration = 0.05
        async with AsyncEtcdMiddleware(
            endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport
        ) as aclient:
            await aclient.set("/big", tree)  # 79 txns
            assert await aclient.get("/big") == tree
            await aclient.set("/big", changed)  # a read, a diff, 1 txn
            assert await aclient.get("/big") == changed
            await aclient.delete("/big")

    async def deliberately_slow() -> None:
        asyncio.get_running_loop().slow_callback_duration = 0.05
        time.sleep(0.06)

    def slow_steps(main: Any) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            asyncio.run(main(), debug=True)
        return [r.getMessage() for r in caplog.records if "Executing" in r.getMessage()]

    assert slow_steps(deliberately_slow), "the check must see a step of 60 ms"
    # the objects earlier tests left behind would make a collection of the old
    # generation (tens of ms with the whole suite loaded) land in one of our steps
    gc.collect()
    gc.freeze()
    try:
        assert slow_steps(body) == []
    finally:
        gc.unfreeze()
