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
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import count
from typing import Any, TypeAlias

# the read half, re-exported: see link/etcd/decoding.py
from .decoding import (
    _JSON_START,
    POSITION_WIDTH,
    UNSORTED,
    _parse_leaf_text,
    decode_leaf,
    decode_sorted,
    decode_text,
    unescape_name,
)
from .errors import EtcdInvalidTree
from .paths import MAX_DEPTH, SEP, check_text

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

#: An encoded tree: a leaf's bytes, a directory ``{escaped name: Node}`` (never
#: empty) or a list of items (never empty).
Node: TypeAlias = "bytes | dict[str, Node] | list[Node]"

EMPTY_DICT = b"{}"
EMPTY_LIST = b"[]"


def position(index: int) -> str:
    """The key segment of list item ``index`` (``0`` → ``'00000000000000000000'``)."""
    return f"{index:0{POSITION_WIDTH}d}"


def is_position(segment: str) -> bool:
    """True when ``segment`` names a list position (exactly 20 ASCII digits)."""
    return len(segment) == POSITION_WIDTH and segment.isascii() and segment.isdigit()


def escape_name(name: str) -> str:
    """Escape a dict key into one key segment (see the module docstring)."""
    if name == "":
        return "%"
    escaped = name.replace("%", "%25").replace(SEP, "%2F")
    if escaped in (".", ".."):
        return escaped.replace(".", "%2E")
    if is_position(escaped):
        return f"%3{escaped[0]}{escaped[1:]}"
    return escaped


def encode_leaf(value: Any, where: str = "", *, text_only: bool = False) -> bytes:
    """Encode a scalar (``str``, ``bytes``, ``int``, ``float``, ``bool``, ``None``) as
    stored bytes.

    :param where: the path, for error messages.
    :param text_only: the value must be UTF-8 text (v2): refuse other bytes.
    :raises EtcdInvalidTree: for other types, NaN/infinity, lone surrogates, bytes
        that are not UTF-8 with ``text_only``, or an ``int`` too long for JSON.
    """
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False) if _parse_leaf_text(value)[0] else value
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EtcdInvalidTree(
                f"string at {where!r} is not valid Unicode: lone surrogate "
                f"{text[exc.start]!r} at position {exc.start}",
                key=where,
            ) from None
    if value is None or isinstance(value, bool):
        return json.dumps(value).encode()
    if isinstance(value, int):
        try:
            return str(int(value)).encode()
        except ValueError:  # more digits than sys.get_int_max_str_digits()
            raise EtcdInvalidTree(f"int at {where!r} is too long", key=where) from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EtcdInvalidTree(f"{value!r} at {where!r} has no JSON form", key=where)
        return repr(float(value)).encode()
    if isinstance(value, bytes | bytearray):
        if text_only:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EtcdInvalidTree(
                    f"bytes at {where!r} are not UTF-8 (byte {exc.start}) and v2 stores text only",
                    key=where,
                ) from None
        return bytes(value)
    raise EtcdInvalidTree(
        f"cannot store a value of type {type(value).__name__!r} at {where!r}: use dict, "
        "list, tuple, str, bytes, int, float, bool or None",
        key=where,
    )


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
    depth = sum(1 for segment in where.split(SEP) if segment) if where.__class__ is str else 0
    try:
        with gc_paused():  # a large tree makes many objects, and no cycles
            return _encode(value, where, depth, text_only)
    except RecursionError:  # the caller's own stack was already deep
        raise EtcdInvalidTree(f"value at {where!r} is nested too deeply", key=where) from None


#: Where a value sits, for error messages, built as the walk goes and rendered only
#: when an error names it: the root path, or ``(parent, dict key or list index)``.
_Where: TypeAlias = "str | tuple[_Where, str | int]"


def _render(where: _Where) -> str:
    """The path text of ``where`` (``'/app/db'``, ``'/app/workers[2]'``)."""
    steps: list[str | int] = []
    while isinstance(where, tuple):
        where, step = where
        steps.append(step)
    text = where
    for step in reversed(steps):
        text = f"{text}[{step}]" if isinstance(step, int) else _child(text, step)
    return text


def _too_deep(where: _Where, depth: int) -> EtcdInvalidTree:
    path = _render(where)
    return EtcdInvalidTree(
        f"value at {path[:60]!r}... nests deeper than MAX_DEPTH={MAX_DEPTH} key segments "
        f"(path and nesting together; {depth} reached)",
        key=path[:60],
    )


def _encode(value: Any, where: _Where, depth: int, text_only: bool) -> Node:
    cls = value.__class__
    if cls is str and (not value or value[0] not in _JSON_START):
        try:  # plain text, the most common leaf: stored as it is
            return value.encode("utf-8")  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            pass  # encode_leaf below raises the error naming the path
    elif cls is dict or (cls not in _NOT_MAPPINGS and isinstance(value, Mapping)):
        if not value:
            return EMPTY_DICT
        if depth >= MAX_DEPTH:
            raise _too_deep(where, depth + 1)
        node: dict[str, Node] = {}
        for name, item in value.items():
            if name.__class__ is not str and not isinstance(name, str):
                raise EtcdInvalidTree(
                    f"dict keys must be str, got {type(name).__name__} {name!r} "
                    f"at {_render(where)!r}",
                    key=_render(where),
                )
            if not name.isascii():
                check_text(name, f"dict key {name!r} at {_render(where)!r}", text_only=text_only)
            plain = not ("%" in name or SEP in name or name in _ESCAPED or is_position(name))
            node[name if plain else escape_name(name)] = _encode(
                item, (where, name), depth + 1, text_only
            )
        return node
    elif cls is list or isinstance(value, (list, tuple)):
        if not value:
            return EMPTY_LIST
        if depth >= MAX_DEPTH:
            raise _too_deep(where, depth + 1)
        return [_encode(item, (where, i), depth + 1, text_only) for i, item in enumerate(value)]
    try:
        return encode_leaf(value, text_only=text_only)
    except EtcdInvalidTree:  # raises again, naming the path
        return encode_leaf(value, _render(where), text_only=text_only)


#: Types told apart from mappings without an ``isinstance`` on the ABC.
_NOT_MAPPINGS = frozenset({str, int, float, bool, type(None), list, tuple})
#: Dict keys that :func:`escape_name` changes although they hold no ``%`` or ``/``.
_ESCAPED = frozenset({"", ".", ".."})


def _child(where: str, name: str) -> str:
    return f"{where}{name}" if where.endswith(SEP) else f"{where}{SEP}{name}"


def flatten(node: Node, key: str) -> list[tuple[str, bytes]]:
    """The ``(key, value)`` pairs that store ``node`` at ``key``, in document order."""
    if node.__class__ is bytes:
        return [(key, node)]
    pairs: list[tuple[str, bytes]] = []
    _flatten_into(pairs, node, key)
    return pairs


def _flatten_into(pairs: list[tuple[str, bytes]], node: Node, at: str) -> None:
    append = pairs.append
    if node.__class__ is dict:
        items: Iterable[tuple[str, Node]] = node.items()
    else:  # a list: its positions, counted alongside
        items = zip(map(position, count()), node, strict=False)  # type: ignore[arg-type]
    for name, child in items:
        if child.__class__ is bytes:
            append((f"{at}{SEP}{name}", child))
        else:
            _flatten_into(pairs, child, f"{at}{SEP}{name}")


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
    value = decode_sorted(pairs, base)
    if value is UNSORTED:
        return build(nest(pairs, base))
    return value
