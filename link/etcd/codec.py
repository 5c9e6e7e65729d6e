"""Tree encoding: Python values ↔ etcd keys and values (pure functions, no I/O).

The storage format (documented for people in ``docs/storage-format.md``):

* A ``dict`` is a directory: each item is stored below ``<key>/<name>``.  Names are
  escaped so that every ``str`` round-trips: ``%`` → ``%25``, ``/`` → ``%2F``, the
  names ``.``/``..`` → ``%2E``/``%2E%2E``, the empty name → ``%``, and a name of
  exactly 20 digits gets its first digit escaped (``%3N``) so it cannot be taken
  for a list position.
* A ``list`` (or ``tuple``) is a directory whose children are *list positions*:
  names of exactly 20 decimal digits (``00000000000000000000``, ``…001``, …), the
  format of etcd v2's in-order keys, so ``etcdctl get --prefix`` shows the items in
  order.  Positions are read in key order; gaps are closed.
* A scalar is a leaf.  ``str`` is stored as its plain UTF-8 text unless that text
  would read back as something else, in which case it is stored as a JSON string
  (``'42'`` → ``"42"``); ``int``, ``float``, ``bool`` and ``None`` are stored as
  JSON literals (``5432``, ``1.5``, ``true``, ``null``).
* An empty ``dict`` or ``list`` is a leaf holding ``{}`` or ``[]``.
* ``bytes`` (and ``bytearray``) are stored as they are.  They read back as
  ``bytes`` when they are not UTF-8; bytes that are UTF-8 read back as the text
  they spell (decoded like any other stored text).  So a tree read from etcd,
  whatever its leaves hold, writes back byte for byte.  v2 stores text only: there
  bytes must be UTF-8 (``text_only``).
* Reading: a leaf's text is parsed as JSON; a scalar or an empty container is the
  value, anything else (``localhost``, ``[1, 2]``, non-JSON) is the plain string.
  Bytes that are not UTF-8 read back as ``bytes``.  When a key is both a leaf and
  the parent of other keys (possible when other tools wrote it), the directory
  wins and the leaf's own value is ignored.

Validation happens in :func:`encode`, before any request: a bad value, a dict key
that is not a ``str`` or holds a lone surrogate, or a tree whose keys would have
more than :data:`~link.etcd.paths.MAX_DEPTH` segments raises
:class:`~link.etcd.errors.EtcdInvalidTree`, and nothing is written or deleted.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeAlias

# the read half, re-exported: see link/etcd/decoding.py
from .decoding import (
    _JSON_START,
    POSITION_WIDTH,
    UNSORTED,
    decode_leaf,
    decode_sorted,
    decode_text,
    unescape_name,
)

# the write half, re-exported: see link/etcd/encoding.py
from .encoding import (
    EMPTY_DICT,
    EMPTY_LIST,
    Node,
    _encode,
    encode_leaf,
    escape_name,
    flatten,
    is_position,
    position,
)
from .errors import EtcdInvalidTree
from .paths import SEP

__all__ = [
    "EMPTY_DICT",
    "EMPTY_LIST",
    "POSITION_WIDTH",
    "UNSORTED",
    "VALUE",
    "Nested",
    "Node",
    "assemble",
    "build",
    "decode",
    "decode_leaf",
    "decode_sorted",
    "decode_text",
    "encode",
    "encode_leaf",
    "escape_name",
    "flatten",
    "gc_paused",
    "is_position",
    "iter_flatten",
    "nest",
    "position",
    "unescape_name",
]


def encode(value: Any, where: str = "/", *, text_only: bool = False) -> Node:
    """Validate and encode a Python value into a :data:`Node`.

    :param value: dicts (``str`` keys), lists/tuples and scalars (see
        :func:`encode_leaf`), nested freely up to :data:`~link.etcd.paths.MAX_DEPTH`.
    :param where: path of ``value``, used in error messages; its segments count
        towards the depth.
    :param text_only: keys and values must be UTF-8 text (v2): refuse every
        surrogate in dict keys and bytes that are not UTF-8.
    :returns: ``bytes`` for a leaf or an empty container, else a ``dict`` of escaped
        names or a ``list`` of items.
    :raises EtcdInvalidTree: on the first bad key or value (non-``str`` dict key, a
        dict key with a lone surrogate, unsupported type, NaN/infinity, keys deeper
        than :data:`~link.etcd.paths.MAX_DEPTH` segments).
    """
    if value.__class__ in LEAVES:  # the common single value: no depth, no collection
        return _encode(value, where, 0, text_only)
    depth = sum(1 for segment in where.split(SEP) if segment) if where.__class__ is str else 0
    try:
        with gc_paused():  # a large tree makes many objects, and no cycles
            return _encode(value, where, depth, text_only)
    except RecursionError:  # the caller's own stack was already deep
        raise EtcdInvalidTree(f"value at {where!r} is nested too deeply", key=where) from None


#: Classes :func:`encode` stores as one leaf (subclasses take the general path).
LEAVES = frozenset({str, bytes, int, float, bool, type(None)})


def iter_flatten(node: Node, key: str) -> Iterator[tuple[str, bytes]]:
    """:func:`flatten`, as an iterator."""
    return iter(flatten(node, key))


#: Key under which a nested directory (see :func:`nest`) keeps its own stored
#: value, if it has one; ``None`` can never be a key segment.
VALUE = None

#: A nested node: a leaf's stored bytes, or a directory ``{segment: Nested}``.
Nested: TypeAlias = "bytes | dict[Any, Nested]"


def nest(pairs: Iterable[Sequence[Any]], base: str) -> Nested:
    """Group stored pairs by key segment into nested dicts.

    :param pairs: ``(key, value, ...)`` sequences (a ``KeyValue`` works as it is):
        ``base`` itself or keys below ``base + '/'``, in any order.
    :param base: the key the subtree was read at (``''`` for the whole keyspace).
    :returns: the stored bytes when only ``base`` itself is a leaf; else a
        directory ``{segment: bytes | {...}}``.  A key that is a leaf *and* has keys
        below it becomes a directory, its own value kept under :data:`VALUE`.
    """
    root: dict[Any, Any] = {}
    start = len(base) + 1
    directories: dict[str, dict[Any, Any]] = {"": root}  # relative key -> directory

    def directory(rel: str) -> dict[Any, Any]:  # once per directory, from its parent
        above, _, name = rel.rpartition(SEP)
        parent = directories.get(above)
        if parent is None:  # unseen ancestors too: made top down, without recursion
            missing = [above]
            while (above := above.rpartition(SEP)[0]) not in directories:
                missing.append(above)
            for each in reversed(missing):
                directory(each)  # its parent exists now: no deeper call
            parent = directories[missing[0]]
        node = parent.get(name)
        if node is None or node.__class__ is bytes:
            node = parent[name] = {} if node is None else {VALUE: node}
        directories[rel] = node
        return node

    for pair in pairs:
        key, raw = pair[0], pair[1]
        if key == base:
            root[VALUE] = raw
            continue
        above, _, name = key[start:].rpartition(SEP)
        node = directories.get(above)
        if node is None:
            node = directory(above)
        existing = node.get(name)
        if existing is None:
            node[name] = raw
        else:  # already a directory (keys arrived unsorted): its own value
            existing[VALUE] = raw
    if len(root) == 1 and VALUE in root:
        return bytes(root[VALUE])
    return root


def build(node: Nested) -> Any:
    """The Python value of a nested node (see :func:`nest` and the module docstring).

    A directory's own value is ignored (the directory wins).  Depth-safe: a tree
    nested deeper than the recursion limit allows (written by another tool) is
    built without recursion.
    """
    try:
        return _build(node)
    except RecursionError:
        return _build_deep(node)


def _build_deep(root: Nested) -> Any:
    """:func:`build` with an explicit stack instead of recursion (for deep trees)."""
    if root.__class__ is bytes:
        return decode_leaf(root)
    assert isinstance(root, dict)
    root.pop(VALUE, None)
    # each frame: (the directory's remaining items, its children's values, its name)
    stack: list[tuple[Iterator[tuple[Any, Any]], dict[str, Any], str]] = [
        (iter(list(root.items())), {}, "")
    ]
    while True:
        items, children, name = stack[-1]
        for child_name, child in items:
            if child.__class__ is bytes:
                children[child_name] = decode_leaf(child)
            else:
                child.pop(VALUE, None)
                stack.append((iter(list(child.items())), {}, child_name))
                break
        else:
            stack.pop()
            value = assemble(children)
            if not stack:
                return value
            stack[-1][1][name] = value


def _build(node: Nested) -> Any:
    if node.__class__ is bytes:
        return decode_leaf(node)
    assert isinstance(node, dict)
    node.pop(VALUE, None)
    children: dict[str, Any] = {}
    for name, child in node.items():
        if child.__class__ is not bytes:
            children[name] = _build(child)
            continue
        try:  # decode_leaf, with plain text (most strings) inline: the read's hot loop
            text = child.decode("utf-8")
        except UnicodeDecodeError:
            children[name] = child
            continue
        children[name] = text if not text or text[0] not in _JSON_START else decode_text(text)
    return assemble(children)


def assemble(children: dict[str, Any], *, sort: bool = False) -> list[Any] | dict[str, Any]:
    """The value of a directory from its children's values, by key segment: a list
    (in key order) when every segment is a list position, else a dict with the
    segments unescaped; ``{}`` when there are no children.

    :param children: a fresh dict, owned by the caller no more: it may be returned.
    :param sort: put a dict's entries in key order too (as a v3 range gives them);
        for children that came unordered, like v2's.
    """
    names = sorted(children) if sort else children
    if children and is_position(next(iter(names))) and all(map(is_position, names)):
        return [children[name] for name in (names if sort else sorted(children))]
    if "%" in "".join(names):  # an escaped segment (joining makes no new "%")
        return {unescape_name(name): children[name] for name in names}
    return {name: children[name] for name in names} if sort else children


class gc_paused:  # used like a function: ``with gc_paused():``
    """Pause Python's cyclic garbage collector while a large answer is parsed and
    decoded: those create many objects and no cycles, and collections triggered by
    the allocations made 100,000-leaf reads super-linear (1.5x slower).  Reference
    counting still frees memory; the collector is resumed (if it was on) at exit.
    A class, not a generator-based context manager: it wraps every read, where
    ``contextlib`` costs more than the pause itself."""

    __slots__ = ("_was_enabled",)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        if self._was_enabled:
            gc.enable()


def decode(pairs: Iterable[Sequence[Any]], base: str = "") -> Any:
    """Rebuild the Python value stored at ``base`` from its ``(key, value)`` pairs.

    Pairs sorted by key (what a v3 range gives) are decoded in one pass
    (:func:`decode_sorted`); others (v2, foreign keys) through :func:`nest` and
    :func:`build`, with the same result.

    :param pairs: ``(key, value, ...)`` sequences with absolute keys, ``base``
        itself or below ``base + '/'``, any order.
    :returns: the value; ``{}`` when ``pairs`` is empty.
    """
    if pairs.__class__ is not list and pairs.__class__ is not tuple:
        pairs = list(pairs)  # read twice when the one pass gives up
    if len(pairs) == 1 and pairs[0][0] == base:  # a leaf, the most common read
        return decode_leaf(bytes(pairs[0][1]))
    value = decode_sorted(pairs, base)
    if value is UNSORTED:
        return build(nest(pairs, base))
    return value
