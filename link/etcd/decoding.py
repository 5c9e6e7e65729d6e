"""Reading the tree encoding: stored values back to Python values (pure functions,
no I/O).

The read half of :mod:`link.etcd.codec` (whose docstring describes the storage
format; the names here are re-exported there), in a module of its own because it
holds the read path's hot loop, :func:`decode_sorted`.  When link.etcd is
installed where a C compiler is found, ``setup.py`` compiles this module with
mypyc and Python imports the compiled module instead of this file: the same
code, about 1.5x faster on a large read (see ``docs/performance.md``); without
a compiler this file runs as it is.  So the annotations here are exact: the
compiled module checks them at run time (a ``TypeError`` for a key that is not
a ``str``, as the pure module gives when comparing it).

:data:`COMPILED` says which one is running.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from .paths import SEP

#: Width of a list position segment (etcd v2 in-order key format).
POSITION_WIDTH: Final = 20

_UNESCAPE: Final = re.compile(r"%(25|2[Ff]|2[Ee]|3[0-9])")
# First characters after which json.loads can possibly succeed.
_JSON_START: Final = frozenset('"-0123456789tfn[{ \t\n\r')
# JSON's whitespace, and the first characters of a JSON text other than a number
# or true/false/null: texts starting with those can only parse with whitespace
# after them ("1 ", "true\n"), which saves json.loads for "tcp", "10.0.0.1" ...
_JSON_SPACE: Final = frozenset(" \t\n\r")
_JSON_OTHER_START: Final = frozenset('"[{') | _JSON_SPACE
# A JSON number, exactly (json.loads accepts the same texts): int unless group 1 or 2.
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")
#: Digits :func:`decode_text` turns into an ``int`` without more checks (CPython's
#: default ``sys.get_int_max_str_digits()`` is 4300).
_INT_DIGITS: Final = 640
_CONSTANTS: Final[dict[str, Callable[[], Any]]] = {
    "true": lambda: True,
    "false": lambda: False,
    "null": lambda: None,
    "{}": dict,
    "[]": list,
}

#: True when this module runs compiled (by mypyc, at install), False when it
#: runs as Python source.
COMPILED: Final = not __file__.endswith(".py")


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
    """``(True, value)`` when ``text`` reads as a JSON scalar or empty container.

    Numbers, ``true``/``false``/``null`` and empty containers are recognised
    without ``json.loads`` (the common cases, on the read path of every leaf);
    the result is the same as ``json.loads`` gives.
    """
    if not text or text[0] not in _JSON_START:
        return False, None
    number = _NUMBER.match(text)
    if number is not None:
        try:
            return True, float(text) if number.group(1) or number.group(2) else int(text)
        except ValueError:  # more digits than sys.get_int_max_str_digits()
            return False, None
    if text in _CONSTANTS:
        return True, _CONSTANTS[text]()
    if text[0] not in _JSON_OTHER_START and text[-1] not in _JSON_SPACE:
        return False, None  # not a number nor a constant, and json.loads agrees
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
    return decode_text(text)


def decode_text(text: str) -> Any:
    """:func:`decode_leaf` for a value already decoded from UTF-8 (v2 answers in text)."""
    if not text or text[0] not in _JSON_START:  # plain text: most strings
        return text
    if (  # a JSON natural number, within int()'s limit
        text.isdigit()
        and text.isascii()
        and (text[0] != "0" or len(text) == 1)
        and len(text) <= _INT_DIGITS
    ):
        return int(text)
    parsed, value = _parse_leaf_text(text)
    return value if parsed else text


#: What :func:`decode_sorted` returns for pairs it cannot decode in one pass.
UNSORTED: Any = object()


def decode_sorted(pairs: Sequence[Sequence[Any]], base: str = "") -> Any:
    """:func:`decode` in one pass, for pairs sorted by key: the read path of v3.

    Sorted keys put every directory's keys together, after its own leaf, so a
    directory is complete when the next key is outside it: its children are
    decoded as they arrive and its value assembled when it is left (no nested
    dicts to walk again, no recursion: any depth is safe).

    :returns: the value, or :data:`UNSORTED` when the keys are not strictly
        increasing (as ``str``; etcd sorts bytes, which can differ for keys that
        are not UTF-8), when a key is outside ``base``, or when a segment below
        ``base`` is empty (:func:`nest` files ``base + '//x'`` under ``base``):
        :func:`decode` then takes the general path.
    """
    sep = SEP
    own: Any = None  # base's own stored value
    # the directory being filled: its children, its key, its key + '/'
    children: dict[str, Any] = {}
    directory = base
    inside = base + sep
    # the directories above it: (their children, our name there, their key, + '/')
    stack: list[tuple[dict[str, Any], str, str, str]] = []
    previous: str = ""
    for pair in pairs:
        key: str = pair[0]
        if key <= previous:
            return UNSORTED
        previous = key
        above, slash, name = key.rpartition(sep)
        if above != directory or not slash:  # leave and enter directories
            if key == base:
                own = pair[1]
                continue
            if not slash:
                return UNSORTED
            while not (above == directory or above.startswith(inside)):
                if not stack:  # above base: not ours
                    return UNSORTED
                value = _directory_value(children)
                children, segment, directory, inside = stack.pop()
                children[segment] = value
            if above != directory:
                for segment in above[len(inside) :].split(sep):
                    if not segment:
                        return UNSORTED
                    stack.append((children, segment, directory, inside))
                    children, directory = {}, inside + segment
                    inside = directory + sep
        raw = pair[1]
        try:  # decode_leaf, with plain text (most strings) inline: the hot loop
            text: str = raw.decode()
        except UnicodeDecodeError:
            children[name] = raw
            continue
        children[name] = text if not text or text[0] not in _JSON_START else decode_text(text)
    while stack:
        value = _directory_value(children)
        children, segment, _, _ = stack.pop()
        children[segment] = value
    if own is not None and not children:
        return decode_leaf(bytes(own))
    return _directory_value(children) if children else {}


def _directory_value(children: dict[str, Any]) -> Any:
    """:func:`assemble` for children in key order (see :func:`decode_sorted`): a
    list's items are already in position order, and every name is checked with a
    few calls in C rather than one :func:`is_position` call per name."""
    names = "".join(children)
    if "%" in names:  # an escaped segment (joining makes no new "%")
        return {unescape_name(name): value for name, value in children.items()}
    if (
        names.isdigit()
        and len(names) == POSITION_WIDTH * len(children)
        and names.isascii()
        and max(map(len, children)) == POSITION_WIDTH
    ):
        return list(children.values())
    return children
