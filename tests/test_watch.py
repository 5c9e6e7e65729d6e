"""Watches on both APIs: current value first, then one callback per change."""

import queue
import threading
import time
from typing import Any

from link.etcd import EtcdMiddleware
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


def test_backend_watch_events(v3: EtcdMiddleware) -> None:
    stream = v3.watch("/e")
    events: queue.Queue[Any] = queue.Queue()
    thread = threading.Thread(target=lambda: [events.put(e) for e in stream], daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT
        while True:  # the first writes may race the watch creation: write until seen
            v3["/e"] = {"x": "1"}
            try:
                event = events.get(timeout=0.5)
                if event.type == "PUT" and event.key == v3.key("/e/x"):
                    break
            except queue.Empty:
                assert time.monotonic() < deadline, "no event"
                v3["/e"] = "other"  # so that the next write changes /e/x again
        assert event.type == "PUT"
        assert event.key == v3.key("/e/x")
        assert event.value == b'"1"'
    finally:
        stream.cancel()
    thread.join(WAIT)
