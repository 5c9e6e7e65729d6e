"""Documents in and out of the command line: JSON, YAML and TOML.

Reading (``load``, ``diff``): JSON with the standard library (duplicate keys and
``NaN``/``Infinity`` refused), YAML with PyYAML's safe loader (duplicate keys
refused; dates stay strings, since a tree holds no dates), TOML with
:mod:`tomllib`.  Writing (``get``, ``dump``): JSON exactly as the tree reads
(``json.dumps`` of floats is their ``repr``, so they round-trip), YAML with
PyYAML's safe dumper (it quotes every string that would read back as something
else), TOML with tomli-w when the tree is a table without nulls.

PyYAML and tomli-w are imported only when used; a missing one is a
:class:`~link.etcd.cli.errors.MissingDependency` with the install hint.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
from collections.abc import Iterator
from pathlib import PurePath
from types import ModuleType
from typing import Any

from .. import codec
from .errors import CliError, MissingDependency

#: Formats ``load`` and ``diff`` read.
INPUT_FORMATS = ("json", "yaml", "toml")
#: Formats ``get`` and ``dump`` write.
OUTPUT_FORMATS = ("json", "yaml", "toml")
#: File name extensions and their format.
EXTENSIONS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}
#: The PyPI name of each optional module.
_PACKAGES = {"yaml": "PyYAML", "tomli_w": "tomli-w"}


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional module of the ``cli`` extra.

    :param module: ``'yaml'`` or ``'tomli_w'``.
    :param purpose: what needs it, for the message (``'-o yaml'``).
    :returns: the module.
    :raises MissingDependency: it is not installed (the message has the install hint).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(_PACKAGES.get(module, module), purpose) from None


def format_of(filename: str | None, explicit: str | None) -> str | None:
    """The format of a file: ``explicit`` if given, else from the extension.

    :returns: ``'json'``, ``'yaml'``, ``'toml'``, or None (unknown: guess from the text).
    """
    if explicit:
        return explicit
    if filename and filename != "-":
        return EXTENSIONS.get(PurePath(filename).suffix.lower())
    return None


# -- reading ------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate key {name!r}")
        result[name] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a tree can hold")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:  # our hooks, or an int over Python's digit limit
        raise ValueError(f"not valid JSON: {exc}") from None


def _yaml_loader() -> type:
    """PyYAML's SafeLoader without timestamps, refusing duplicate keys."""
    yaml = require("yaml", "YAML")

    class TreeLoader(yaml.SafeLoader):  # type: ignore[misc,name-defined]
        pass

    TreeLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in result:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            result[key] = loader.construct_object(value_node, deep=deep)
        return result

    TreeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return TreeLoader


def _parse_yaml(text: str) -> Any:
    yaml = require("yaml", "YAML")
    if not text.strip():
        raise ValueError("empty YAML document")
    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, TypeError) as exc:  # e.g. an unhashable key
        raise ValueError(f"not valid YAML: {exc}") from None


def _parse_toml(text: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from None


def parse_document(text: str, fmt: str | None, source: str) -> Any:
    """Parse one document and check that a tree can hold it.

    :param text: the document.
    :param fmt: ``'json'``, ``'yaml'``, ``'toml'``, or None: JSON when the text
        parses as JSON or starts with ``{`` or ``[`` (then its JSON error is
        reported), else YAML.
    :param source: the file name (or ``'stdin'``) for messages.
    :returns: the tree (dicts, lists, scalars).
    :raises CliError: status 2, naming ``source``: not parseable, empty, a
        duplicate key, a value no tree holds (dates, sets, bytes, NaN, non-string
        keys: checked with :func:`link.etcd.codec.encode`).
    """
    try:
        if fmt == "json":
            document = _parse_json(text)
        elif fmt == "yaml":
            document = _parse_yaml(text)
        elif fmt == "toml":
            document = _parse_toml(text)
        else:
            try:
                document = _parse_json(text)
            except ValueError:
                if text.lstrip()[:1] in ("{", "["):
                    raise
                document = _parse_yaml(text)
        codec.encode(document, "/")
    except (ValueError, RecursionError) as exc:
        raise CliError(f"{source}: {exc}") from exc
    return document


# -- writing ------------------------------------------------------------------


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of every node, depth first (paths like ``/a/0/b``)."""
    stack = [(path, value)]
    while stack:
        at, item = stack.pop()
        yield at or "/", item
        if isinstance(item, dict):
            stack.extend((f"{at}/{name}", child) for name, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{at}/{i}", child) for i, child in reversed(list(enumerate(item))))


def _first(value: Any, where: str, test: Any) -> str | None:
    for at, item in _walk(value):
        if test(item):
            return where.rstrip("/") + at if at != "/" else where
    return None


def _unsupported(value: Any, fmt: str, where: str) -> None:
    """Refuse, naming the path, values that ``fmt`` cannot hold."""
    if fmt in ("json", "toml"):
        at = _first(value, where, lambda item: isinstance(item, bytes))
        if at is not None:
            raise CliError(
                f"the value at {at} is not UTF-8 text; {fmt.upper()} cannot hold it: use -o yaml"
            )
    if fmt == "toml":
        if not isinstance(value, dict):
            kind = "a list" if isinstance(value, list) else "a single value"
            raise CliError(f"TOML needs a table at the top, and {where} holds {kind}: use -o json")
        at = _first(value, where, lambda item: item is None)
        if at is not None:
            raise CliError(f"TOML has no null, and {at} is null: use -o json or -o yaml")


def render(value: Any, fmt: str, *, pretty: bool = True, where: str = "/") -> str:
    """The text of ``value`` in ``fmt``, ending with a newline.

    :param value: a tree as read from etcd.
    :param fmt: ``'json'``, ``'yaml'`` or ``'toml'``.
    :param pretty: JSON indented by 2 (else compact, on one line); YAML and
        TOML are always block style.
    :param where: the path ``value`` was read at, for messages.
    :raises CliError: status 2: ``fmt`` cannot hold the tree (bytes in JSON or
        TOML; for TOML a top level that is not a table, or a null).
    :raises MissingDependency: PyYAML or tomli-w is missing.
    """
    _unsupported(value, fmt, where)
    if fmt == "json":
        options: dict[str, Any] = {"indent": 2} if pretty else {"separators": (",", ":")}
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, **options)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # key names that were not UTF-8 in etcd: \udcXX escapes
            text = json.dumps(value, ensure_ascii=True, allow_nan=False, **options)
        return text + "\n"
    if fmt == "yaml":
        yaml = require("yaml", "-o yaml")
        text = yaml.dump(
            value,
            Dumper=yaml.SafeDumper,
            allow_unicode=True,
            sort_keys=False,
            default_flow_style=False,
            width=math.inf,
        )
        return str(text)
    tomli_w = require("tomli_w", "-o toml")
    return str(tomli_w.dumps(value))


def json_line(line: dict[str, Any], *, where: str, hint: str = "") -> str:
    """``line`` as one line of JSON (``watch``, ``history``), with a newline.

    ``line["value"]`` that is not UTF-8 (a leaf written by another tool) comes as
    ``"value": null`` and ``"value_base64"``.  A tree holding such a leaf below
    its top cannot be JSON: that is refused, as ``get`` refuses it.

    :param line: the fields, ``"value"`` among them (a tree as read).
    :param where: the path the value was read at, for messages.
    :param hint: how to see such a tree instead (ends the message).
    :raises CliError: status 2: a leaf below ``where`` is not UTF-8 text.
    """
    value = line["value"]
    if isinstance(value, bytes):
        line = {**line, "value": None, "value_base64": base64.b64encode(value).decode("ascii")}
    else:
        at = _first(value, where, lambda item: isinstance(item, bytes))
        if at is not None:
            raise CliError(f"the value at {at} is not UTF-8 text; JSON cannot hold it{hint}")
    text = json.dumps(line, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # key names that were not UTF-8 in etcd: \udcXX escapes
        text = json.dumps(line, ensure_ascii=True)
    return text + "\n"


def parse_scalar(text: str, *, string: bool = False) -> Any:
    """A value given on the command line, parsed like a stored leaf.

    ``42`` is an int, ``4.5`` a float, ``true``/``false``/``null``, ``{}`` and
    ``[]`` what they say, ``"42"`` (with the quotes) the string ``42``; any other
    text is the string itself.

    :param string: take ``text`` as it is (``--string``).
    """
    return text if string else codec.decode_text(text)


def leaf_text(raw: bytes | None) -> str:
    """How a stored leaf is shown in a change list: its value as JSON, or
    ``<N bytes>`` for bytes that are not UTF-8."""
    if raw is None:
        return ""
    value = codec.decode_leaf(raw)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return json.dumps(value, ensure_ascii=False)
