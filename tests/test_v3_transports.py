"""The v3 backend on both transports: request counts, foreign keys, large reads,
clean close, and etcd's messages loading beside other etcd libraries."""

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.backends.v3.protocol import Put, Range
from link.etcd.testing.metrics import request_count

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ["grpc", "gateway"]


@pytest.fixture(params=TRANSPORTS)
def v3t(
    etcd_server: Any, etcd_prefix: str, request: pytest.FixtureRequest
) -> Iterator[EtcdMiddleware]:
    """A v3 middleware on each transport."""
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=request.param
    ) as client:
        yield client


def _requests(client: EtcdMiddleware, action: Any) -> int:
    endpoint = client.settings.urls[0]
    before = request_count(endpoint, "v3")
    if before is None:
        pytest.skip("the server exposes no metrics")
    action()
    after = request_count(endpoint, "v3")
    assert after is not None
    return after - before


def test_leaf_write_and_read_are_one_request_each(v3t: EtcdMiddleware) -> None:
    v3t["/app"] = {"db": {"host": "h", "port": 1}}
    assert _requests(v3t, lambda: v3t.__setitem__("/app/db/port", 2)) == 1
    assert _requests(v3t, lambda: v3t["/app/db/port"]) == 1
    assert v3t["/app"] == {"db": {"host": "h", "port": 2}}
    # a leaf written over a directory, and below a leaf, in one txn each
    assert _requests(v3t, lambda: v3t.__setitem__("/app/db", "flat")) == 1
    assert v3t["/app"] == {"db": "flat"}
    assert _requests(v3t, lambda: v3t.__setitem__("/app/db/deeper/x", True)) == 1
    assert v3t["/app"] == {"db": {"deeper": {"x": True}}}


def test_tree_write_keeps_its_request_count(v3t: EtcdMiddleware) -> None:
    # a read, then one guarded txn: unchanged from the gateway-only backend
    assert _requests(v3t, lambda: v3t.__setitem__("/t", {"a": 1, "b": [1, 2]})) == 2
    assert _requests(v3t, lambda: v3t["/t"]) == 1
    assert _requests(v3t, lambda: v3t.__delitem__("/t")) == 1


def test_keys_that_are_not_utf8_can_be_read_replaced_and_deleted(v3t: EtcdMiddleware) -> None:
    raw = v3t.key("/app/bin").encode() + b"/\xff\xfe"
    v3t.backend.transport.call(Put(raw, b"1"))  # type: ignore[attr-defined]
    assert v3t.children("/app/bin") == ["\udcff\udcfe"]
    v3t["/app"] = {"clean": 1}  # replaces the subtree: deletes the foreign key too
    assert v3t["/app"] == {"clean": 1}
    answer = v3t.backend.transport.call(Range(raw))  # type: ignore[attr-defined]
    assert answer.kvs == []
    v3t.backend.transport.call(Put(raw, b"2"))  # type: ignore[attr-defined]
    del v3t["/app"]
    assert "/app" not in v3t


def test_read_of_100000_leaves_over_grpc(etcd_server: Any, etcd_prefix: str) -> None:
    # gRPC's default 4 MiB receive limit breaks other clients' reads of this size
    tree = {f"k{i:06d}": i for i in range(100_000)}
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as client:
        client["/big"] = tree
        assert client["/big"] == tree
        del client["/big"]


def _link_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("link.etcd")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_leaves_no_thread_or_channel(
    etcd_server: Any, etcd_prefix: str, transport: str
) -> None:
    before = _link_threads()
    client = EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=transport, max_txn_ops=8
    )
    client["/w"] = {f"k{i}": i for i in range(100)}  # several txns in flight
    stream = client.watch("/w")
    thread = threading.Thread(target=lambda: list(stream), name="reader", daemon=True)
    thread.start()
    backend: Any = client.backend
    stream.cancel()
    thread.join(5)
    assert not thread.is_alive()
    client.close()
    threading.Event().wait(0.5)  # let cancelled streams' helper threads end
    assert _link_threads() == before
    if transport == "grpc":
        with pytest.raises(ValueError, match="closed channel"):
            backend.transport.failover.members[0].channel.unary_unary("/x")(b"")


def test_descriptor_matches_the_proto() -> None:
    pytest.importorskip("grpc_tools")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("first", ["etcd3", "link.etcd"])
def test_loads_beside_python3_etcd3(etcd_server: Any, first: str) -> None:
    """python3-etcd3 registers etcd's .proto files in protobuf's default pool; ours
    live in a private pool, so both import, in either order, and both work."""
    pytest.importorskip("etcd3")
    other = "link.etcd" if first == "etcd3" else "etcd3"
    url = etcd_server.endpoint
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    script = f"""
import {first}, {other}
import etcd3
from link.etcd import EtcdMiddleware
c = EtcdMiddleware(endpoints=[{url!r}], prefix="/side-by-side")
c["/a"] = {{"x": [1, 2]}}
peer = etcd3.client(host={host!r}, port={port})
assert peer.get("/side-by-side/a/x/00000000000000000001")[0] == b"2"
peer.put("/side-by-side/a/y", "3")
assert c["/a"] == {{"x": [1, 2], "y": 3}}
del c["/a"]
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok", result.stderr
