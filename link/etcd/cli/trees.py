"""Trees as the command line compares, merges and lists them (pure functions, no I/O).

A tree is compared leaf by leaf, in its stored form: both trees are encoded and
flattened by :mod:`link.etcd.codec`, as the library stores them, each leaf under
its key path (dict names escaped, list items at their 20-digit positions), so a
change of type (``'42'`` to ``42``, ``1`` to ``1.0``, ``{}`` to ``[]``) is a
change, and the paths shown can be given to ``link-etcd get``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from .. import codec
from ..paths import SEP, encode_key, split_path


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: Nothing is stored (a side of a comparison, a path that does not exist).
MISSING: Final = _Missing()


def base_key(path: str) -> str:
    """The normalised form of a path, as change paths start: ``'app/db/'`` →
    ``'/app/db'``; the root is ``''``.

    :raises EtcdInvalidTree: a bad path (empty, ``//``, ``.`` or ``..`` segments).
    """
    return "".join(SEP + segment for segment in split_path(path))


def stored_leaves(value: Any, path: str) -> dict[str, bytes]:
    """Every leaf of ``value`` as the library stores it at ``path``:
    ``{leaf path: stored bytes}``, from :func:`link.etcd.codec.encode` and
    :func:`link.etcd.codec.flatten` (so keys and values are exactly etcd's, below
    the prefix).

    :param value: a tree (:data:`MISSING`: no leaves).  A ``bytes`` leaf (a value
        read from etcd that is not UTF-8) is kept as the bytes it is.
    :param path: where ``value`` is (or would be) stored.
    :raises EtcdInvalidTree: a value no tree can hold, or a bad path.
    """
    if value is MISSING:
        return {}
    base = base_key(path)
    return {key or SEP: stored for key, stored in codec.flatten(codec.encode(value, path), base)}


@dataclass(frozen=True, slots=True)
class Change:
    """One leaf that differs: ``old`` is None when added, ``new`` None when removed."""

    path: str
    old: bytes | None
    new: bytes | None

    @property
    def kind(self) -> str:
        """``'added'``, ``'removed'`` or ``'changed'``."""
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"


def compare(old: Any, new: Any, path: str) -> list[Change]:
    """The leaves that differ between two trees at ``path``, in etcd's key order.

    :param old: the tree before (:data:`MISSING` when nothing is stored).
    :param new: the tree after (:data:`MISSING` when nothing is stored).
    :param path: where both trees are (or would be) stored.
    :returns: one :class:`Change` per added, changed or removed leaf.
    """
    before = stored_leaves(old, path)
    after = stored_leaves(new, path)
    changes = [
        Change(key, before.get(key), after.get(key))
        for key in before.keys() | after.keys()
        if before.get(key) != after.get(key)
    ]
    changes.sort(key=lambda change: encode_key(change.path))
    return changes


def summary(changes: Iterable[Change]) -> str:
    """``'2 added, 1 changed, 0 removed'``."""
    counts = Counter(change.kind for change in changes)
    return ", ".join(f"{counts[kind]} {kind}" for kind in ("added", "changed", "removed"))


def merge(base: Any, patch: Any) -> Any:
    """``patch`` merged into ``base``: dicts are merged key by key, recursively;
    anything else (a list, a leaf, a dict meeting a non-dict) is replaced by
    ``patch``'s value.  ``None`` is a value like any other (it does not delete).

    :returns: a new tree; neither argument is changed.
    """
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for name, value in patch.items():
            merged[name] = merge(base[name], value) if name in base else value
        return merged
    return patch


def kind(value: Any) -> str:
    """``'dir'`` for a dict, ``'list'`` for a list, ``'leaf'`` for a scalar."""
    if isinstance(value, dict):
        return "dir"
    if isinstance(value, list):
        return "list"
    return "leaf"


def count_keys(value: Any) -> int:
    """How many etcd keys ``value`` is stored as (an empty container is one key)."""
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict) and item:
            stack.extend(item.values())
        elif isinstance(item, list) and item:
            stack.extend(item)
        else:
            count += 1
    return count


def children_of(value: Any, names: list[str]) -> list[tuple[str, Any]]:
    """Pair the key segments of a directory's children with their values.

    :param value: the directory's value as read (a dict or a list).
    :param names: the children's key segments, sorted (as
        :meth:`~link.etcd.middleware.EtcdMiddleware.children` gives them).
    :returns: ``(segment, value)`` pairs; ``[]`` for a leaf.
    """
    if isinstance(value, list):
        return list(zip(names, value, strict=False))
    if isinstance(value, dict):
        return [(name, value.get(codec.unescape_name(name), MISSING)) for name in names]
    return []


def key_tree(keys: Iterable[str], base: str) -> dict[str, Any]:
    """The key segments below ``base`` as nested dicts (``{segment: {...}}``).

    :param keys: etcd keys: ``base`` itself or keys below ``base + '/'``.
    :param base: the key the keys were read at.
    """
    root: dict[str, Any] = {}
    start = len(base) + 1
    for key in keys:
        if key == base:
            continue
        node = root
        for segment in key[start:].split(SEP):
            node = node.setdefault(segment, {})
    return root
