"""Watches on both APIs: current value first, then one callback per change."""

import logging
import queue
import threading
import time
from typing import Any

import pytest

from link.etcd import EtcdCompacted, EtcdMiddleware
from link.etcd.watch import TreeWatch

WAIT = 10.0  # seconds; a change normally arrives within milliseconds


def wait_for(seen: "queue.Queue[tuple[Any, int]]", expected: Any) -> int:
    """Take callbacks until one carries ``expected`` (v2 writes show intermediate
    states, v3 writes do not); return its revision."""
    value, revision = seen.get(timeout=WAIT)
    while value != expected:
        value, revision = seen.get(timeout=WAIT)
    return revision


def test_tree_watch_delivers_current_value_then_changes(client: EtcdMiddleware) -> None:
    seen: queue.Queue[tuple[Any, int]] = queue.Queue()
    client["/cfg"] = {"a": 1}
    with client.watch_tree("/cfg", lambda value, rev: seen.put((value, rev))):
        value, first_revision = seen.get(timeout=WAIT)
        assert value == {"a": 1}
        client["/cfg/a"] = 2
        value, revision = seen.get(timeout=WAIT)
        assert value == {"a": 2}
        assert revision > first_revision
        client["/cfg"] = {f"k{i}": i for i in range(50)}  # many keys, one txn (v3)
        wait_for(seen, {f"k{i}": i for i in range(50)})
        del client["/cfg"]
        wait_for(seen, None)


def test_one_callback_per_v3_txn(v3: EtcdMiddleware) -> None:
    seen: queue.Queue[tuple[Any, int]] = queue.Queue()
    with v3.watch_tree("/cfg", lambda value, rev: seen.put((value, rev))):
        assert seen.get(timeout=WAIT)[0] is None
        v3["/cfg"] = {f"k{i}": i for i in range(100)}
        assert seen.get(timeout=WAIT)[0] == {f"k{i}": i for i in range(100)}
        v3["/cfg/k0"] = "changed"
        assert seen.get(timeout=WAIT)[0]["k0"] == "changed"
        assert seen.empty()


def test_tree_watch_ignores_siblings(client: EtcdMiddleware) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    watch = TreeWatch(client, "/app", lambda value, rev: seen.put(value))
    try:
        assert seen.get(timeout=WAIT) is None  # not there yet
        client["/app-other"] = 1
        client["/app"] = "x"
        assert seen.get(timeout=WAIT) == "x"
        assert seen.empty()
    finally:
        watch.stop()
    assert not watch.running


def test_returning_false_stops(client: EtcdMiddleware) -> None:
    calls: list[Any] = []
    done = threading.Event()

    def callback(value: Any, revision: int) -> bool:
        calls.append(value)
        if len(calls) == 2:
            done.set()
            return False
        return True

    watch = TreeWatch(client, "/s", callback)
    client["/s"] = 1
    assert done.wait(WAIT)
    client["/s"] = 2
    watch.stop()
    assert calls == [None, 1]


def _event(client: EtcdMiddleware, path: str, write: Any, wanted: Any) -> Any:
    """The first event on ``path`` for which ``wanted(event)`` holds, calling
    ``write()`` until one comes (the first writes may race the watch's creation)."""
    stream = client.watch(path)
    events: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        for event in stream:
            events.put(event)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    try:
        while True:
            write()
            try:
                while True:
                    event = events.get(timeout=0.5)
                    if wanted(event):
                        return event
            except queue.Empty:
                assert time.monotonic() < deadline, "no event"
    finally:
        stream.cancel()
        thread.join(WAIT)


def test_watch_events_are_decoded(client: EtcdMiddleware) -> None:
    client["/e"] = {"x": "1", "n": 1}
    counter = iter(range(2, 1000))
    event = _event(client, "/e", lambda: client.__setitem__("/e/n", next(counter)), lambda e: True)
    assert event.type == "PUT"
    assert event.path == "/e/n"  # relative to the prefix, like the mapping's keys
    assert event.key == client.key("/e/n")
    assert isinstance(event.value, int)
    assert event.value >= 2  # decoded, not b"2"
    assert event.revision > 0
    if client.settings.api == "v3":  # etcd gives the previous value on v3
        assert event.prev_value == event.value - 1


def test_watch_reports_deletes(client: EtcdMiddleware) -> None:
    def write() -> None:
        client["/d"] = {"gone": True}
        del client["/d"]

    event = _event(client, "/d", write, lambda e: e.type == "DELETE")
    # v3 deletes key by key; v2 reports the directory's recursive delete
    assert event.path == ("/d/gone" if client.settings.api == "v3" else "/d")
    assert event.value is None


# -- resuming: what a watch does when it cannot -------------------------------------


def test_retry_delay_grows_to_its_bound() -> None:
    from link.etcd.backends.v3.watch import MAX_RETRY_SECONDS, RETRY_SECONDS, retry_delay

    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays[0] == RETRY_SECONDS
    assert delays == sorted(delays)
    assert delays[-1] == MAX_RETRY_SECONDS
    # 2 s a try: 10,000 failed openings are over 5 hours of outage (2**9999 overflowed)
    assert retry_delay(10_000) == MAX_RETRY_SECONDS


def test_failures_are_logged_less_and_less(caplog: pytest.LogCaptureFixture) -> None:
    from link.etcd.backends.v3.watch import log_failure

    with caplog.at_level(logging.WARNING, logger="link.etcd.watch"):
        for failures in range(1, 101):
            log_failure("/k", failures, "member unreachable", 2.0)
    logged = [r.getMessage() for r in caplog.records]
    # 1, 2, 3, then 4, 8, 16, 32, 64
    assert len(logged) == 8
    assert "failure 64 in a row" in logged[-1]


def _compacted_revision(client: EtcdMiddleware) -> int:
    """Write twice, compact the server's history up to now; the old revision."""
    client["/c"] = "old"
    _, old = client.snapshot("/c")
    client["/c"] = "new"
    _, now = client.snapshot("/c")
    etcd = EtcdMiddleware(endpoints=list(client.settings.urls))
    with etcd:
        from link.etcd.backends.v3.protocol import Compaction

        etcd.backend.transport.call(Compaction(now))  # type: ignore[attr-defined]
    return old


def test_raw_watch_from_a_compacted_revision_raises(v3: EtcdMiddleware) -> None:
    old = _compacted_revision(v3)
    stream = v3.watch("/c", start_revision=old)
    with pytest.raises(EtcdCompacted) as caught:
        next(iter(stream))
    stream.cancel()
    assert caught.value.compact_revision is not None
    assert caught.value.compact_revision > old
    assert str(caught.value.compact_revision) in str(caught.value)


@pytest.mark.anyio
async def test_async_watch_from_a_compacted_revision_raises(
    v3: EtcdMiddleware, etcd_prefix: str
) -> None:
    from link.etcd.aio import AsyncEtcdMiddleware

    old = _compacted_revision(v3)
    async with AsyncEtcdMiddleware(endpoints=list(v3.settings.urls), prefix=etcd_prefix) as aio:

        async def first_event() -> None:
            async with aio.watch("/c", start_revision=old) as events:
                async for _ in events:
                    break

        with pytest.raises(EtcdCompacted):
            await first_event()
