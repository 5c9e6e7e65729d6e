"""Layered configuration: several subtrees read together and merged, with provenance.

A *layer* is a path (``'/config/defaults'``); a list of layers is weakest first:
``['/config/defaults', '/config/prod', '/config/prod/web-1']`` means "defaults,
overridden by prod, overridden by web-1", key by key with a deep merge (dicts
merge; a leaf or a list replaces what the earlier layers had there).  A layer
below another one (``/config/prod/web-1`` inside ``/config/prod``) is not part
of the outer layer's tree: it is only a layer of its own.

**Reads.**  v3: one txn of two ranges per layer (the layer's own key, then
everything below it), so every layer is read at one store revision; a layer
past :data:`~link.etcd.backends.v3.engine.PAGE_SIZE` keys is paged at that same
revision.  v2 has no multi-key reads: one recursive ``GET`` per layer, one after
the other, so the layers may come from different indexes (the reading's
revision is the highest).

The result is a :class:`Reading`: the merged tree, each layer's own tree, and
for every leaf the layer it came from.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..backends.base import ABSENT
from ..backends.v3 import V3Backend
from ..backends.v3.engine import PAGE_SIZE, Plan, pairs_of, ranges_of, snapshot
from ..backends.v3.protocol import Op, Range, Txn, TxnResult
from ..errors import EtcdConnectionFailed, EtcdInvalidTree
from ..paths import SEP, below, encode_key, split_path
from .cache import CacheFile, CacheFileError

_log = logging.getLogger(__name__)

#: Leaf path in a tree: its names from the root of the layer (``('db', 'port')``).
TreePath = tuple[str, ...]


@dataclass(frozen=True)
class Layer:
    """One layer as read.

    :attr path: the middleware path (``'/config/prod'``).
    :attr key: its etcd key (with the middleware's prefix).
    :attr tree: its own tree (``{}`` when nothing is stored; nested layers removed).
    :attr pairs: the ``(key, value bytes)`` items it was decoded from (what a
        cache file stores).
    """

    path: str
    key: str
    tree: dict[str, Any]
    pairs: list[tuple[str, bytes]] = field(default_factory=list, repr=False)

    def where(self, names: Sequence[Any]) -> str:
        """The etcd key of the value at ``names`` in this layer, quoted, then list
        indexes (``'/c/workers' item [1]``), since list item keys differ between v3
        and v2."""
        key, rest = self.key, ""
        for name in names:
            if rest or isinstance(name, int):
                rest += f"[{name!r}]"
            else:
                key += SEP + codec.escape_name(str(name))
        return repr(key) + (f" item {rest}" if rest else "")


@dataclass(frozen=True)
class Reading:
    """Layers read together, merged.

    :attr revision: the store revision (v3) or highest index (v2) they were read at.
    :attr layers: each layer, weakest first.
    :attr tree: the merged tree.
    :attr origins: for each leaf path of ``tree``, the index of the layer that
        supplied it.
    :attr stale: True when the reading comes from a cache file, not from etcd.
    :attr saved_at: when the cache file was written (seconds since the epoch;
        ``None`` when read from etcd).
    """

    revision: int
    layers: tuple[Layer, ...]
    tree: dict[str, Any]
    origins: dict[TreePath, int]
    stale: bool = False
    saved_at: float | None = None

    def origin(self, names: Sequence[Any]) -> Layer | None:
        """The layer that supplied the value at ``names`` (its nearest recorded
        ancestor or itself); ``None`` when no layer holds it."""
        path = tuple(str(n) for n in names if not isinstance(n, int))
        for end in range(len(path), 0, -1):
            index = self.origins.get(path[:end])
            if index is not None:
                return self.layers[index]
        return None

    def where(self, names: Sequence[Any]) -> str | None:
        """The etcd key the value at ``names`` was read from, as :meth:`Layer.where`
        gives it (``None``: no layer holds it)."""
        layer = self.origin(names)
        return None if layer is None else layer.where(names)


def merge(trees: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[TreePath, int]]:
    """Deep-merge ``trees`` (weakest first): ``(merged, origins)``.

    Dicts merge name by name; any other value (a leaf, a list) replaces what the
    earlier trees had at its path.  ``origins`` maps each leaf path (and each
    empty dict's path) to the index of the tree that supplied it.  The inputs are
    not modified.
    """
    merged: dict[str, Any] = {}
    origins: dict[TreePath, int] = {}
    for index, tree in enumerate(trees):
        _merge_into(merged, tree, index, (), origins)
    return merged, origins


def _merge_into(
    target: dict[str, Any],
    tree: dict[str, Any],
    index: int,
    at: TreePath,
    origins: dict[TreePath, int],
) -> None:
    for name, value in tree.items():
        path = (*at, name)
        if isinstance(value, dict) and isinstance(target.get(name), dict):
            if not value:
                continue
            origins.pop(path, None)
            _merge_into(target[name], value, index, path, origins)
            continue
        for old in [p for p in origins if p[: len(path)] == path]:
            del origins[old]
        target[name] = copy.deepcopy(value)
        for leaf in _leaf_paths(value, path):
            origins[leaf] = index


def _leaf_paths(value: Any, at: TreePath) -> Iterator[TreePath]:
    if isinstance(value, dict) and value:
        for name, child in value.items():
            yield from _leaf_paths(child, (*at, name))
    else:
        yield at


def leaf_paths(tree: Any) -> list[TreePath]:
    """Every leaf path of ``tree`` (a list or an empty dict counts as a leaf)."""
    return list(_leaf_paths(tree, ()))


def normalize(paths: str | Sequence[str]) -> list[str]:
    """Layer paths as ``'/a/b'`` strings (``'/'`` for the root).

    :raises EtcdInvalidTree: no path, a bad path, or the same path twice.
    """
    items = [paths] if isinstance(paths, str) else list(paths)
    if not items:
        raise EtcdInvalidTree("give at least one path to read configuration from")
    out = ["/" + "/".join(split_path(p)) for p in items]
    if len(set(out)) != len(out):
        raise EtcdInvalidTree(f"a configuration layer is listed twice: {items!r}")
    return out


def common_path(paths: Sequence[str]) -> str:
    """The deepest path every one of ``paths`` is at or below (``'/'`` at worst)."""
    split = [split_path(p) for p in paths]
    common: list[str] = []
    for names in zip(*split, strict=False):
        if any(n != names[0] for n in names):
            break
        common.append(names[0])
    return "/" + "/".join(common)


def covers(layer: str, path: str) -> bool:
    """True when ``path`` is ``layer`` or below it."""
    return layer == "/" or path == layer or path.startswith(layer + "/")


def _without_nested(tree: Any, path: str, paths: Sequence[str]) -> dict[str, Any]:
    """``tree`` (the layer at ``path``) without the subtrees of deeper layers."""
    if not isinstance(tree, dict):
        if tree is not None:
            _log.warning(
                "configuration layer %r holds a %s, not a tree: ignored", path, type(tree).__name__
            )
        return {}
    base = split_path(path)
    for other in paths:
        names = split_path(other)
        if other == path or names[: len(base)] != base or len(names) == len(base):
            continue
        _remove(tree, [codec.unescape_name(n) for n in names[len(base) :]])
    return tree


def _remove(tree: dict[str, Any], names: list[str]) -> None:
    node: Any = tree
    for name in names[:-1]:
        node = node.get(name) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(names[-1], None)


def layers_plan(keys: Sequence[str]) -> Plan[tuple[int, list[list[tuple[str, bytes]]]]]:
    """Plan (v3): ``(revision, [pairs of each key])``: every key's own leaf and
    everything below it, all in one txn (at one revision); a key whose range was
    cut at :data:`PAGE_SIZE` is read again, paged, at that revision."""
    ops: list[Op] = []
    slots: list[tuple[int | None, int]] = []
    for key in keys:
        single = None
        if key:  # '' (the whole keyspace) is no key of its own
            single = len(ops)
            ops.append(Range(encode_key(key)))
        slots.append((single, len(ops)))
        ops.append(Range(*below(key), limit=PAGE_SIZE))
    answer: TxnResult = yield Txn((), ops)
    ranges = ranges_of(answer)
    out: list[list[tuple[str, bytes]]] = []
    for key, (single, inner) in zip(keys, slots, strict=True):
        if ranges[inner].more:
            read = yield from snapshot(key, pairs=True, revision=answer.revision)
            out.append(list(pairs_of(read)))
        else:
            own = ranges[single].pairs() if single is not None else []
            out.append(own + ranges[inner].pairs())
    return answer.revision, out


def reading_of(
    paths: Sequence[str],
    keys: Sequence[str],
    revision: int,
    pairs: Sequence[list[tuple[str, bytes]]],
    *,
    stale: bool = False,
    saved_at: float | None = None,
) -> Reading:
    """The :class:`Reading` of each layer's ``(key, value)`` items."""
    layers = []
    for path, key, items in zip(paths, keys, pairs, strict=True):
        tree = codec.decode(items, key) if items else {}
        layers.append(Layer(path, key, _without_nested(tree, path, paths), list(items)))
    merged, origins = merge([layer.tree for layer in layers])
    return Reading(revision, tuple(layers), merged, origins, stale, saved_at)


class LayeredTree:
    """The layers ``paths`` of ``client``: read them, boot from a cache file.

    :param client: an :class:`~link.etcd.middleware.EtcdMiddleware`.
    :param paths: one path or several, weakest first (see the module docstring).
    :param cache: where every successful read is saved and where :meth:`boot`
        falls back when etcd cannot be reached; ``None``: no cache.
    """

    def __init__(self, client: Any, paths: str | Sequence[str], cache: CacheFile | None = None):
        self.client = client
        self.paths = normalize(paths)
        self.keys = [client.key(p) for p in self.paths]
        self.cache = cache
        #: Where one watch sees every layer: their deepest common path.
        self.watch_path = common_path(self.paths)

    def __repr__(self) -> str:
        return f"LayeredTree({self.paths!r}, cache={self.cache!r})"

    def covers(self, path: str) -> bool:
        """True when a change at ``path`` (a middleware path) is inside a layer."""
        return any(covers(layer, path) for layer in self.paths)

    def read(self) -> Reading:
        """Read every layer (v3: one txn, one revision; v2: one ``GET`` per layer)
        and save it to the cache file (a file that cannot be written is logged as
        a warning: the reading is used all the same).

        :raises EtcdConnectionFailed: no endpoint answered (naming those tried).
        """
        backend = self.client.backend
        if isinstance(backend, V3Backend):
            revision, pairs = backend.run(layers_plan(self.keys), self.keys[-1])
        else:
            revision, pairs = self._read_v2()
        reading = reading_of(self.paths, self.keys, revision, pairs)
        if self.cache is not None:
            try:
                self.cache.save(self.keys, revision, pairs)
            except CacheFileError as exc:  # the reading is good: use it all the same
                _log.warning("%s", exc)
        return reading

    def _read_v2(self) -> tuple[int, list[list[tuple[str, bytes]]]]:
        revision, pairs = 0, []
        for key in self.keys:
            value, index = self.client.backend.read_tree(key)
            revision = max(revision, index)
            pairs.append([] if value is ABSENT else codec.flatten(codec.encode(value), key))
        return revision, pairs

    def boot(self, warn: Callable[[str], None] | None = None) -> Reading:
        """:meth:`read`, or, when etcd cannot be reached and a cache file is set, the
        layers saved there (``stale``), with a warning saying since when.

        :param warn: called with the warning's text (besides the log).
        :raises EtcdConnectionFailed: etcd cannot be reached and there is no cache.
        :raises CacheFileError: the cache file is missing, corrupt or written for
            other keys (naming the file; the connection error is chained).
        """
        try:
            return self.read()
        except EtcdConnectionFailed as exc:
            if self.cache is None:
                raise
            revision, saved_at, pairs = self.cache.load(self.keys, cause=exc)
            reading = reading_of(
                self.paths, self.keys, revision, pairs, stale=True, saved_at=saved_at
            )
            message = self.cache.describe_fallback(exc, reading.revision, saved_at)
            _log.warning("%s", message)
            if warn is not None:
                warn(message)
            return reading
