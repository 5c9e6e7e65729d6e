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
* Reading: a leaf's text is parsed as JSON; a scalar or an empty container is the
  value, anything else (``localhost``, ``[1, 2]``, non-JSON) is the plain string.
  Bytes that are not UTF-8 read back as ``bytes``.  When a key is both a leaf and
  the parent of other keys (possible when other tools wrote it), the directory
  wins and the leaf's own value is ignored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from .errors import EtcdInvalidTree
from .paths import SEP

#: An encoded tree: a leaf's bytes, a directory ``{escaped name: Node}`` (never
#: empty) or a list of items (never empty).
Node: TypeAlias = "bytes | dict[str, Node] | list[Node]"

#: Width of a list position segment (etcd v2 in-order key format).
POSITION_WIDTH = 20

EMPTY_DICT = b"{}"
EMPTY_LIST = b"[]"

_POSITION = re.compile(f"[0-9]{{{POSITION_WIDTH}}}")  # ASCII digits only, not str.isdigit
_UNESCAPE = re.compile(r"%(25|2[Ff]|2[Ee]|3[0-9])")
# First characters after which json.loads can possibly succeed.
_JSON_START = frozenset('"-0123456789tfn[{ \t\n\r')


def position(index: int) -> str:
    """The key segment of list item ``index`` (``0`` → ``'00000000000000000000'``)."""
    return f"{index:0{POSITION_WIDTH}d}"


def is_position(segment: str) -> bool:
    """True when ``segment`` names a list position (exactly 20 ASCII digits)."""
    return len(segment) == POSITION_WIDTH and _POSITION.fullmatch(segment) is not None


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


def unescape_name(segment: str) -> str:
    """Inverse of :func:`escape_name`; unknown ``%`` sequences are kept as they are."""
    if segment == "%":
        return ""
    if "%" not in segment:
        return segment
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), segment)


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _parse_leaf_text(text: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` reads as a JSON scalar or empty container."""
    if not text or text[0] not in _JSON_START:
        return False, None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return False, None
    if isinstance(value, (list, dict)) and value:
        return False, None
    return True, value


def decode_leaf(raw: bytes) -> Any:
    """Decode one stored value (bytes) into the Python value it stands for."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    parsed, value = _parse_leaf_text(text)
    return value if parsed else text


def encode_leaf(value: Any, where: str = "") -> bytes:
    """Encode a scalar (``str``, ``int``, ``float``, ``bool``, ``None``) as stored bytes.

    :param where: the path, for error messages.
    :raises EtcdInvalidTree: for other types, NaN/infinity, lone surrogates, or an
        ``int`` too long for JSON.
    """
    if isinstance(value, str):
        if _parse_leaf_text(value)[0]:
            value = json.dumps(value, ensure_ascii=False)
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EtcdInvalidTree(f"string at {where!r} is not valid Unicode", key=where) from exc
    if value is None or isinstance(value, bool):
        return json.dumps(value).encode()
    if isinstance(value, int):
        try:
            return str(int(value)).encode()
        except ValueError as exc:  # more digits than sys.get_int_max_str_digits()
            raise EtcdInvalidTree(f"int at {where!r} is too long", key=where) from exc
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EtcdInvalidTree(f"{value!r} at {where!r} has no JSON form", key=where)
        return repr(float(value)).encode()
    raise EtcdInvalidTree(
        f"cannot store a {type(value).__name__} at {where!r}: use dict, list, tuple, "
        "str, int, float, bool or None",
        key=where,
    )


def encode(value: Any, where: str = "/") -> Node:
    """Validate and encode a Python value into a :data:`Node`.

    :param value: dicts (``str`` keys), lists/tuples and scalars, nested freely.
    :param where: path of ``value``, used in error messages.
    :returns: ``bytes`` for a leaf or an empty container, else a ``dict`` of escaped
        names or a ``list`` of items.
    :raises EtcdInvalidTree: on the first bad key or value (non-``str`` dict key,
        unsupported type, NaN/infinity, nesting deeper than the interpreter allows).
    """
    try:
        return _encode(value, where)
    except RecursionError as exc:
        raise EtcdInvalidTree(f"value at {where!r} is nested too deeply", key=where) from exc


def _encode(value: Any, where: str) -> Node:
    if isinstance(value, Mapping):
        if not value:
            return EMPTY_DICT
        node: dict[str, Node] = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise EtcdInvalidTree(
                    f"dict keys must be str, got {type(name).__name__} {name!r} at {where!r}",
                    key=where,
                )
            node[escape_name(name)] = _encode(item, _child(where, name))
        return node
    if isinstance(value, (list, tuple)):
        if not value:
            return EMPTY_LIST
        return [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    return encode_leaf(value, where)


def _child(where: str, name: str) -> str:
    return f"{where}{name}" if where.endswith(SEP) else f"{where}{SEP}{name}"


def flatten(node: Node, key: str) -> list[tuple[str, bytes]]:
    """The ``(key, value)`` pairs that store ``node`` at ``key``, in document order."""
    out: list[tuple[str, bytes]] = []
    stack: list[tuple[str, Node]] = [(key, node)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, bytes):
            out.append((at, item))
        elif isinstance(item, dict):
            stack.extend((f"{at}{SEP}{name}", child) for name, child in reversed(item.items()))
        else:
            stack.extend(
                (f"{at}{SEP}{position(i)}", child) for i, child in reversed(list(enumerate(item)))
            )
    return out


class _Trie:
    __slots__ = ("value", "children")

    def __init__(self) -> None:
        self.value: bytes | None = None
        self.children: dict[str, _Trie] = {}


def decode(items: Iterable[tuple[str, bytes]]) -> Any:
    """Rebuild the Python value from stored pairs.

    :param items: ``(relative key, value)`` pairs: ``''`` is the node itself,
        ``'a/b'`` a key two levels below it.  Order does not matter.
    :returns: the value (see the module docstring for the rules); ``{}`` when
        ``items`` is empty.
    """
    root = _Trie()
    for rel, raw in items:
        node = root
        if rel:
            for segment in rel.split(SEP):
                child = node.children.get(segment)
                if child is None:
                    child = node.children[segment] = _Trie()
                node = child
        node.value = raw
    return _build(root)


def _build(node: _Trie) -> Any:
    children = node.children
    if not children:
        return decode_leaf(node.value) if node.value is not None else {}
    if all(is_position(name) for name in children):
        return [_build(children[name]) for name in sorted(children)]
    return {unescape_name(name): _build(child) for name, child in children.items()}
