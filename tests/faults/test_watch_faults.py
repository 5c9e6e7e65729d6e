"""Watches across faults: a member restart, a compaction, v2's history overrun,
a restarted member that forgot the auth token, a token that expired.  No change
is lost: the tree watch ends up with the latest value, and a raw watch that
cannot resume raises EtcdCompacted instead of skipping events."""

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from link.etcd import EtcdCompacted, EtcdMiddleware
from link.etcd.aio import AsyncEtcdMiddleware
from link.etcd.testing import EtcdCluster, EtcdServer, set_watch_idle

from ..apis import APIS, connection
from .helpers import Seen

pytestmark = pytest.mark.faults

V3_APIS = [api for api in APIS if api.startswith("v3")]
READ_TIMEOUT = 1.0
#: Seconds a change may take to reach a watch once its member is back: a start of
#: etcd (about a second here), the stream opened again (a pause of at most 2 s).
BACK_WITHIN = 15.0
PASSWORD = "fault-suite-root"


def _collect(stream: Any) -> "tuple[queue.Queue[Any], threading.Thread]":
    """Iterate ``stream`` in a thread; its events, then the exception that ended it."""
    out: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        try:
            for event in stream:
                out.put(event)
        except Exception as exc:  # noqa: BLE001 - handed to the test, which asserts on it
            out.put(exc)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return out, thread


def _until(out: "queue.Queue[Any]", wanted: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        item = out.get(timeout=max(0.01, deadline - time.monotonic()))
        if wanted(item):
            return item


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"/faults-{request.node.name.replace('[', '-').replace(']', '')}"


def _clients(cluster: EtcdCluster, api: str, prefix: str) -> tuple[EtcdMiddleware, EtcdMiddleware]:
    """A watcher on member 0 only, and a writer on members 1 and 2 (given time for
    an election: member 0 may be the leader killed)."""
    settings: dict[str, Any] = {**connection(api), "prefix": prefix}
    watcher = EtcdMiddleware(
        endpoints=[cluster.members[0].endpoint], read_timeout=READ_TIMEOUT, **settings
    )
    writer = EtcdMiddleware(endpoints=list(cluster.endpoints[1:]), read_timeout=5.0, **settings)
    return watcher, writer


def _kill_first(cluster: EtcdCluster) -> None:
    """Kill member 0 and wait until the others have a leader (bounded)."""
    cluster.members[0].kill()
    cluster.wait_for_leader(timeout=15)


@pytest.mark.parametrize("api", APIS)
def test_watches_across_member_restart(cluster: EtcdCluster, api: str, prefix: str) -> None:
    watcher, writer = _clients(cluster, api, prefix)
    seen = Seen()
    with watcher, writer, watcher.watch_tree("/cfg", seen):
        seen.wait_for(None, BACK_WITHIN)
        _, start = writer.snapshot("/", default=None)
        raw = watcher.watch("/cfg", start_revision=start + 1)
        events, thread = _collect(raw)
        _kill_first(cluster)
        try:
            writer["/cfg"] = "while-down"
        finally:
            cluster.members[0].start()
        took = seen.wait_for("while-down", BACK_WITHIN)
        writer["/cfg"] = "after"
        seen.wait_for("after", BACK_WITHIN)
        assert _until(events, lambda e: e.value == "while-down", BACK_WITHIN).type == "PUT"
        _until(events, lambda e: e.value == "after", BACK_WITHIN)
        raw.cancel()
        thread.join(5)
    print(f"\n[{api}] change made while the member was down delivered {took:.2f} s after its start")


@pytest.mark.parametrize("api", V3_APIS)
def test_watches_across_compaction(cluster: EtcdCluster, api: str, prefix: str) -> None:
    watcher, writer = _clients(cluster, api, prefix)
    seen = Seen()
    with watcher, writer, watcher.watch_tree("/cfg", seen):
        seen.wait_for(None, BACK_WITHIN)
        _, start = writer.snapshot("/", default=None)
        raw = watcher.watch("/cfg", start_revision=start + 1)
        events, thread = _collect(raw)
        _kill_first(cluster)
        try:
            writer["/cfg"] = "compacted-away"
            writer["/other"] = 1
            _, revision = writer.snapshot("/", default=None)
            cluster.members[1].etcdctl("compact", str(revision))
        finally:
            cluster.members[0].start()
        took = seen.wait_for("compacted-away", BACK_WITHIN)
        error = _until(events, lambda e: isinstance(e, Exception), BACK_WITHIN)
        thread.join(5)
        writer["/cfg"] = "after"
        seen.wait_for("after", BACK_WITHIN)
    assert isinstance(error, EtcdCompacted), repr(error)
    assert error.compact_revision == revision
    print(f"\n[{api}] tree read again after compaction, delivered {took:.2f} s after the start")


def test_v2_history_overrun(etcd_server: Any, etcd_prefix: str) -> None:
    """v2 keeps the last 1,000 events: a watch that falls further behind (here its
    callback is blocked while 1,100 other keys are written) reads the tree again."""
    blocked, release = threading.Event(), threading.Event()
    seen = Seen()

    def callback(value: Any, revision: int) -> None:
        if value == "v1":
            blocked.set()
            release.wait(30)
        seen(value, revision)

    with (
        EtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2", prefix=etcd_prefix) as client,
        client.watch_tree("/w", callback),
    ):
        seen.wait_for(None, 10)
        _, index = client.snapshot("/", default=None)
        client["/w"] = "v1"
        assert blocked.wait(10)
        client["/w"] = "v2"
        client["/other"] = {f"k{i}": i for i in range(1100)}
        release.set()
        took = seen.wait_for("v2", 10)
        raw = client.watch("/w", start_revision=index + 1)
        events, thread = _collect(raw)
        error = events.get(timeout=10)
        thread.join(5)
    assert isinstance(error, EtcdCompacted), repr(error)
    assert error.compact_revision is not None
    assert error.compact_revision > index + 1000
    print(f"\n[v2] change lost from the history delivered {took:.2f} s after the callback returned")


@pytest.fixture(scope="module")
def auth_server() -> Iterator[EtcdServer]:
    """A server with auth on and tokens that expire after 2 s of disuse."""
    with EtcdServer(extra_args=["--auth-token-ttl=2"]) as server:
        server.enable_auth(PASSWORD)
        yield server


def _auth_client(server: EtcdServer, api: str, prefix: str) -> EtcdMiddleware:
    return EtcdMiddleware(
        endpoints=[server.endpoint],
        **connection(api),
        prefix=prefix,
        username="root",
        password=PASSWORD,
        read_timeout=READ_TIMEOUT,
    )


@pytest.mark.parametrize("api", V3_APIS)
def test_watch_with_auth_across_restart(
    auth_server: EtcdServer, api: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted member has forgotten every token: the watch authenticates again."""
    seen = Seen()
    with _auth_client(auth_server, api, prefix) as watcher, watcher.watch_tree("/cfg", seen):
        seen.wait_for(None, 10)
        auth_server.restart()
        with _auth_client(auth_server, api, prefix) as writer:
            writer["/cfg"] = "after-restart"
        took = seen.wait_for("after-restart", BACK_WITHIN)
    assert any(r.name == "link.etcd.watch" for r in caplog.records)
    assert PASSWORD not in caplog.text
    print(f"\n[{api}] change after the restart delivered in {took:.2f} s")


@pytest.mark.parametrize("api", V3_APIS)
def test_watch_after_token_expiry(auth_server: EtcdServer, api: str, prefix: str) -> None:
    """Quiet streams are checked (gRPC: a quorum read; gateway: reopened) after
    1 s here, once the 2-second token expired: the watch goes on."""
    seen = Seen()
    with _auth_client(auth_server, api, prefix) as watcher:
        set_watch_idle(watcher, 1.0)
        with watcher.watch_tree("/cfg", seen):
            seen.wait_for(None, 10)
            time.sleep(4.5)  # the token expires (2 s), quiet streams are checked
            with _auth_client(auth_server, api, prefix) as writer:
                writer["/cfg"] = "after-expiry"
            took = seen.wait_for("after-expiry", BACK_WITHIN)
    print(f"\n[{api}] change after the token expired delivered in {took:.2f} s")


async def _next_value(items: Any, expected: Any, timeout: float) -> float:
    """Seconds until the async tree watch ``items`` gave ``expected``."""
    start = time.monotonic()

    async def until() -> None:
        async for value, _ in items:
            if value == expected:
                return

    await asyncio.wait_for(until(), timeout)
    return time.monotonic() - start


@pytest.mark.anyio
@pytest.mark.parametrize("api", V3_APIS)
async def test_async_tree_watch_across_compaction(
    cluster: EtcdCluster, api: str, prefix: str
) -> None:
    _, writer = _clients(cluster, api, prefix)
    aio = AsyncEtcdMiddleware(
        endpoints=[cluster.members[0].endpoint],
        transport=connection(api)["transport"],
        prefix=prefix,
        read_timeout=READ_TIMEOUT,
    )
    async with aio:
        with writer:
            async with aio.watch_tree("/cfg") as items:
                await _next_value(items, None, BACK_WITHIN)
                _kill_first(cluster)
                try:
                    writer["/cfg"] = "compacted-away"
                    writer["/other"] = 1
                    _, revision = writer.snapshot("/", default=None)
                    cluster.members[1].etcdctl("compact", str(revision))
                finally:
                    cluster.members[0].start()
                took = await _next_value(items, "compacted-away", BACK_WITHIN)
                writer["/cfg"] = "after"
                await _next_value(items, "after", BACK_WITHIN)
    print(f"\n[aio {api}] tree read again after compaction, delivered {took:.2f} s after the start")
