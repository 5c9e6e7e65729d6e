"""Resource hygiene: 20 clients opened, used (200 operations in all), watched
(a raw watch and a TreeWatch each, neither stopped) and closed leave no thread,
descriptor or socket behind: ``close()`` stops the client's watches."""

import asyncio
import gc
import os
import threading
import time
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.aio import AsyncEtcdMiddleware

from ..apis import APIS, connection

CYCLES = 20
OPERATIONS = 10  # per cycle: 200 in all


def _descriptors() -> tuple[int, int]:
    """(open descriptors, of which sockets) of this process."""
    fds = sockets = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        fds += 1
        sockets += target.startswith("socket:")
    return fds, sockets


def _cycle(server: Any, prefix: str, api: str) -> None:
    client = EtcdMiddleware(endpoints=[server.endpoint], prefix=prefix, **connection(api))
    client["/w"] = {"n": 0}
    tree_watch = client.watch_tree("/w", lambda value, revision: None)
    raw = client.watch("/w")
    pump = threading.Thread(target=lambda: list(raw), daemon=True)
    pump.start()
    for n in range(OPERATIONS // 2):
        client["/w/n"] = n
        assert client["/w"] == {"n": n}
    client.close()  # neither watch was stopped
    pump.join(5)
    assert not pump.is_alive(), "the raw watch still runs after close()"
    assert not tree_watch.running, "the TreeWatch still runs after close()"


def _left(
    threads: set[threading.Thread], fds: int, sockets: int, wait: float = 5.0
) -> tuple[set[threading.Thread], int, int]:
    """The threads started since ``threads`` and the descriptor and socket counts,
    once nothing is left beyond the counts given, or after ``wait`` seconds (a
    thread may take a moment to end after close())."""
    deadline = time.monotonic() + wait
    while True:
        gc.collect()
        extra = set(threading.enumerate()) - threads
        now_fds, now_sockets = _descriptors()
        if (not extra and now_fds <= fds and now_sockets <= sockets) or time.monotonic() > deadline:
            return extra, now_fds, now_sockets
        time.sleep(0.1)


@pytest.mark.parametrize("api", APIS)
def test_clients_leave_nothing_behind(etcd_server: Any, etcd_prefix: str, api: str) -> None:
    _cycle(etcd_server, etcd_prefix, api)  # warm up: libraries' own lasting threads
    gc.collect()
    threads = set(threading.enumerate())
    fds, sockets = _descriptors()
    start = time.monotonic()
    for _ in range(CYCLES):
        _cycle(etcd_server, etcd_prefix, api)
    took = time.monotonic() - start
    extra, now_fds, now_sockets = _left(threads, fds, sockets)
    assert not extra, f"threads left: {sorted(t.name for t in extra)}"
    assert now_sockets <= sockets, f"sockets: {sockets} before, {now_sockets} after"
    assert now_fds <= fds, f"descriptors: {fds} before, {now_fds} after"
    print(
        f"\n[{api}] {CYCLES} clients, {CYCLES * OPERATIONS} operations, {2 * CYCLES} watches "
        f"in {took:.1f} s: threads {len(threads)}, descriptors {fds} -> {now_fds}, "
        f"sockets {sockets} -> {now_sockets}"
    )


async def _async_cycle(server: Any, prefix: str, transport: str) -> None:
    client = AsyncEtcdMiddleware(endpoints=[server.endpoint], prefix=prefix, transport=transport)
    await client.set("/w", {"n": 0})
    tree = client.watch_tree("/w")
    raw = client.watch("/w")

    async def drain(items: Any) -> None:
        async for _ in items:
            pass

    tasks = [asyncio.ensure_future(drain(tree)), asyncio.ensure_future(drain(raw))]
    await asyncio.sleep(0)
    for n in range(OPERATIONS // 2):
        await client.set("/w/n", n)
        assert await client.get("/w") == {"n": n}
    await client.aclose()  # neither watch was closed
    done, _ = await asyncio.wait(tasks, timeout=5)
    assert len(done) == 2, "a watch still runs after aclose()"


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
async def test_async_clients_leave_nothing_behind(
    etcd_server: Any, etcd_prefix: str, transport: str
) -> None:
    await _async_cycle(etcd_server, etcd_prefix, transport)  # warm up
    # grpc.aio runs one poller thread for the process while any of its channels is
    # open (and starts it again later): a client kept open across the check keeps
    # it in the baseline, so that only what the 20 clients leave is counted
    keeper = AsyncEtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix)
    await keeper.get("/", None)
    gc.collect()
    threads = set(threading.enumerate())
    fds, sockets = _descriptors()
    for _ in range(CYCLES):
        await _async_cycle(etcd_server, etcd_prefix, transport)
    extra, now_fds, now_sockets = _left(threads, fds, sockets)
    await keeper.aclose()
    assert not extra, f"threads left: {sorted(t.name for t in extra)}"
    assert now_sockets <= sockets, f"sockets: {sockets} before, {now_sockets} after"
    assert now_fds <= fds, f"descriptors: {fds} before, {now_fds} after"
    print(
        f"\n[aio {transport}] {CYCLES} clients, {CYCLES * OPERATIONS} operations, "
        f"{2 * CYCLES} watches: descriptors {fds} -> {now_fds}, sockets {sockets} -> {now_sockets}"
    )
