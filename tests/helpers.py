"""Helpers shared by the test modules (no fixtures: those live in conftest.py)."""

from typing import Any

from link.etcd import codec
from link.etcd.errors import EtcdInvalidTree


def same(a: Any, b: Any) -> bool:
    """Equal with the same types throughout (``1 == 1.0 == True`` does not count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


def range_pairs(value: Any, key: str) -> list[tuple[str, bytes]] | None:
    """``value`` stored at ``key`` as a v3 range gives it back: ``(key, value)``
    pairs sorted by key; None when the codec refuses ``value``."""
    try:
        node = codec.encode(value, key)
    except EtcdInvalidTree:
        return None
    return sorted(codec.flatten(node, key))
