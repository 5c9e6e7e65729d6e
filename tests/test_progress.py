"""Progress reports of long reads and writes (:mod:`link.etcd.backends.v3.progress`),
on both v3 transports and both drivers, against a real etcd."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.aio import AsyncEtcdMiddleware
from link.etcd.backends.v3.progress import reporting

from .helpers import same

#: 1,500 leaves: a write of 12 txns of at most 128 operations.
TREE = {f"group{g}": {f"key{k}": [g, k, "x" * k] for k in range(50)} for g in range(10)}
LEAVES = 10 * 50 * 3


def check(reports: list[tuple[str, int, int | None]]) -> None:
    """One write of LEAVES keys, then one read of as many, each reported whole."""
    writes = [r for r in reports if r[0] == "write"]
    reads = [r for r in reports if r[0] == "read"]
    assert writes[0] == ("write", 0, LEAVES)
    assert all(total is None and 0 < keys <= 128 for _, keys, total in writes[1:])
    assert sum(keys for _, keys, _ in writes) == LEAVES
    assert len(writes) == 1 + -(-LEAVES // 128)
    # the write's first read (nothing there yet), its verification read, then ours
    assert reads == [("read", 0, 0), ("read", LEAVES, LEAVES), ("read", LEAVES, LEAVES)]


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
def test_sync_reads_and_writes_report(etcd_server: Any, etcd_prefix: str, transport: str) -> None:
    reports: list[tuple[str, int, int | None]] = []
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport
    ) as client:
        client["/small"] = {"a": 1}  # one txn: nothing reported
        with reporting(lambda *report: reports.append(report)):
            client["/tree"] = TREE
            assert same(client["/tree"], TREE)
        client["/tree"] = {}  # outside the block: nothing reported
    check(reports)


def test_async_reads_and_writes_report(etcd_server: Any, etcd_prefix: str) -> None:
    reports: list[tuple[str, int, int | None]] = []

    async def main() -> Any:
        async with AsyncEtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as c:
            with reporting(lambda *report: reports.append(report)):
                await c.set("/tree", TREE)
                return await c.get("/tree")

    assert same(asyncio.run(main()), TREE)
    check(reports)


def test_reports_stay_in_their_thread(etcd_server: Any, etcd_prefix: str) -> None:
    """A report installed in one thread sees nothing of another's operations."""
    import threading

    reports: list[Any] = []
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as client:
        with reporting(lambda *report: reports.append(report)):
            other = threading.Thread(target=client.__setitem__, args=("/tree", TREE))
            other.start()
            other.join(60)
        assert not other.is_alive()
        assert same(client["/tree"], TREE)
    assert reports == []
