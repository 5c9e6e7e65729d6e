"""hypothesis over arbitrary Python values and paths, on every API: each write is
read back exactly, or refused with ``EtcdInvalidTree`` and nothing written.

The values include lone surrogates, the surrogates of non-UTF-8 key bytes, bytes,
NaN, types that cannot be stored, keys that are not ``str``, and trees nested
around and far beyond :data:`~link.etcd.paths.MAX_DEPTH`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from link.etcd import EtcdMiddleware
from link.etcd.codec import decode_leaf
from link.etcd.errors import EtcdInvalidTree
from link.etcd.paths import MAX_DEPTH, below

from ..helpers import same
from ..strategies import any_text, deep_tree, python_values
from .test_bad_input import _http, keyspace

#: Path segments: any text, and now and then one no key can hold or an empty one.
segments = any_text.filter(lambda text: "/" not in text)
paths = st.lists(segments, min_size=1, max_size=4).map(lambda parts: "/h/" + "/".join(parts))
#: Values that fit MAX_DEPTH or exceed it by a little, below a path of 1 segment.
near_the_limit = st.builds(
    deep_tree, st.integers(min_value=MAX_DEPTH - 3, max_value=MAX_DEPTH + 1), st.just("leaf")
)


def expected(value: Any) -> Any:
    """What reading gives back: tuples as lists, bytes that are UTF-8 as their text."""
    if isinstance(value, dict):
        return {name: expected(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [expected(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return decode_leaf(bytes(value))
    return value


def _write_and_check(client: EtcdMiddleware, endpoint: str, path: str, value: Any) -> bool:
    """Write ``value`` at ``path``; True when it was stored (and read back exactly)."""
    before = keyspace(endpoint)
    try:
        client[path] = value
    except EtcdInvalidTree:
        event("refused")
        assert keyspace(endpoint) == before
        return False
    event("stored")
    assert same(client[path], expected(value))
    return True


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(value=python_values())
def test_any_value_roundtrips_or_is_refused(
    client: EtcdMiddleware, etcd_server: Any, value: Any
) -> None:
    _write_and_check(client, etcd_server.endpoint, "/h", value)


@SETTINGS
@given(path=paths, value=python_values(max_leaves=5))
def test_any_path_roundtrips_or_is_refused(
    client: EtcdMiddleware, etcd_server: Any, path: str, value: Any
) -> None:
    _write_and_check(client, etcd_server.endpoint, path, value)


@SETTINGS
@given(value=near_the_limit)
def test_depth_limit_is_exact(client: EtcdMiddleware, etcd_server: Any, value: Any) -> None:
    segments = 1  # "/h", then one "a" per dict: the leaf's key
    probe = value
    while isinstance(probe, dict):
        segments, probe = segments + 1, probe["a"]
    stored = _write_and_check(client, etcd_server.endpoint, "/h", value)
    assert stored == (segments <= MAX_DEPTH)


@pytest.mark.parametrize(
    "value",
    [
        {"\udc80k": b"\xff\xfe", "text": b"caf\xc3\xa9", "n": b"42"},
        [b"\x00\x01", bytearray(b"\x80")],
    ],
)
def test_a_tree_read_back_writes_back_byte_for_byte(
    client: EtcdMiddleware, etcd_server: Any, api: str, value: Any
) -> None:
    if api == "v2":
        with pytest.raises(EtcdInvalidTree, match="v2"):
            client["/copy/src"] = value
        return
    client["/copy/src"] = value
    read = client["/copy/src"]
    client["/copy/dst"] = read
    assert same(client["/copy/dst"], read)
    source = _stored(etcd_server.endpoint, client.key("/copy/src"))
    assert source == _stored(etcd_server.endpoint, client.key("/copy/dst"))
    assert b"\xff\xfe" in source.values() or b"\x80" in source.values()


def _stored(endpoint: str, key: str) -> dict[bytes, bytes]:
    """The stored values below ``key`` by key bytes relative to it, straight from etcd."""
    start, end = below(key)
    _, body = _http(
        f"{endpoint}/v3/kv/range",
        json.dumps({"key": _b64(start), "range_end": _b64(end)}).encode(),
    )
    kvs = json.loads(body).get("kvs", [])
    return {
        base64.b64decode(kv["key"])[len(start) :]: base64.b64decode(kv.get("value", ""))
        for kv in kvs
    }


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
