"""Writing the tree encoding: Python values to stored keys and values (pure
functions, no I/O).

The write half of :mod:`link.etcd.codec` (whose docstring describes the storage
format; the names here are re-exported there), in a module of its own because it
holds the write path's hot loop: :func:`_encode`, which validates and encodes a
tree, and :func:`flatten`, which turns it into ``(key, value)`` pairs.  Like
:mod:`link.etcd.decoding` it is compiled with mypyc at install when a C compiler
is found (see ``setup.py``); without one this file runs as it is.  The
annotations are exact: the compiled module checks them at run time.

:data:`COMPILED` says which one is running.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

from .decoding import _JSON_START, POSITION_WIDTH, _parse_leaf_text
from .errors import EtcdInvalidTree
from .paths import MAX_DEPTH, SEP, check_text

#: An encoded tree: a leaf's bytes, a directory ``{escaped name: Node}`` (never
#: empty) or a list of items (never empty).  Spelled without recursion, the
#: items as ``Any``: mypyc (2.x) crashes on a recursive type alias.
Node: TypeAlias = "bytes | dict[str, Any] | list[Any]"

EMPTY_DICT: Final = b"{}"
EMPTY_LIST: Final = b"[]"

#: True when this module runs compiled (mypyc), False when it runs as Python source.
COMPILED: Final = not __file__.endswith(".py")

#: Types told apart from mappings without an ``isinstance`` on the ABC.
_NOT_MAPPINGS: Final = frozenset({str, int, float, bool, type(None), list, tuple})
#: Dict keys that :func:`escape_name` changes although they hold no ``%`` or ``/``.
_ESCAPED: Final = frozenset({"", ".", ".."})


def position(index: int) -> str:
    """The key segment of list item ``index`` (``0`` → ``'00000000000000000000'``)."""
    return f"{index:0{POSITION_WIDTH}d}"


def is_position(segment: str) -> bool:
    """True when ``segment`` names a list position (exactly 20 ASCII digits)."""
    return len(segment) == POSITION_WIDTH and segment.isascii() and segment.isdigit()


def escape_name(name: str) -> str:
    """Escape a dict key into one key segment (see :mod:`link.etcd.codec`)."""
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
    if isinstance(value, (bytes, bytearray)):
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


#: Where a value sits, for error messages, built as the walk goes and rendered only
#: when an error names it: the root path, or ``(parent, dict key or list index)``.
_Where: TypeAlias = "str | tuple[Any, str | int]"  # (no recursion: see Node)


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


def _child(where: str, name: str) -> str:
    return f"{where}{name}" if where.endswith(SEP) else f"{where}{SEP}{name}"


def _too_deep(where: _Where, depth: int) -> EtcdInvalidTree:
    path = _render(where)
    return EtcdInvalidTree(
        f"value at {path[:60]!r}... nests deeper than MAX_DEPTH={MAX_DEPTH} key segments "
        f"(path and nesting together; {depth} reached)",
        key=path[:60],
    )


def _encode(value: Any, where: _Where, depth: int, text_only: bool) -> Node:
    """:func:`link.etcd.codec.encode` without its set-up: the recursive walk."""
    cls = value.__class__
    if cls is str:
        text: str = value
        if not text or text[0] not in _JSON_START:
            try:  # plain text, the most common leaf: stored as it is
                return text.encode("utf-8")
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
            segment: str = name
            if not segment.isascii():
                check_text(
                    segment, f"dict key {segment!r} at {_render(where)!r}", text_only=text_only
                )
            if "%" in segment or SEP in segment or segment in _ESCAPED or is_position(segment):
                segment = escape_name(segment)
            node[segment] = _encode(item, (where, name), depth + 1, text_only)
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


def flatten(node: Node, key: str) -> list[tuple[str, bytes]]:
    """The ``(key, value)`` pairs that store ``node`` at ``key``, in document order."""
    if isinstance(node, bytes):
        return [(key, node)]
    pairs: list[tuple[str, bytes]] = []
    _flatten_into(pairs, node, key)
    return pairs


def _flatten_into(
    pairs: list[tuple[str, bytes]], node: dict[str, Node] | list[Node], at: str
) -> None:
    # two loops, not one over zip(names, children): flatten is 20% faster so
    prefix = at + SEP
    if isinstance(node, dict):
        for name, child in node.items():
            if isinstance(child, bytes):
                pairs.append((prefix + name, child))
            else:
                _flatten_into(pairs, child, prefix + name)
    else:  # a list: its positions, counted alongside
        for index, child in enumerate(node):
            if isinstance(child, bytes):
                pairs.append((prefix + position(index), child))
            else:
                _flatten_into(pairs, child, prefix + position(index))
