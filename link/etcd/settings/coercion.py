"""Coercion of one setting value: text from a file, a variable or a URI, or a Python value.

Every coercer takes a raw value (``str`` from a file, variable or URI, or an
already typed Python value from a keyword argument) and returns the typed value
or raises :class:`BadValue`, whose text says what was expected.  Numbers are
parsed and bounded by msgspec (``msgspec.convert`` with ``strict=False``);
booleans take configparser's words; hosts and endpoints are checked here.
"""

from __future__ import annotations

import configparser
import math
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import msgspec

#: What a password is replaced with in messages and reprs.
MASK = "***"


class BadValue(ValueError):
    """A value failed coercion; the text says what was expected."""


def to_str(value: Any) -> str:
    """A string, stripped of surrounding whitespace."""
    if not isinstance(value, str):
        raise BadValue("expected a string")
    return value.strip()


def optional_str(value: Any) -> str | None:
    """None, or a stripped string (an empty one means None)."""
    if value is None:
        return None
    return to_str(value) or None


def optional_secret(value: Any) -> str | None:
    """None, or a string kept as given (spaces may be part of a password)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadValue("expected a string")
    return value or None


def _convert(value: Any, target: Any, expected: str) -> Any:
    """``msgspec.convert`` in lax mode (``"12"`` -> 12); a bool is never a number."""
    if isinstance(value, bool):
        raise BadValue(f"{expected}, not a boolean")
    if isinstance(value, str):
        value = value.strip()
    try:
        return msgspec.convert(value, target, strict=False)
    except msgspec.ValidationError:
        raise BadValue(expected) from None


_PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
_Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
_PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


def to_int(value: Any) -> int:
    """An integer (``"12"`` accepted)."""
    number: int = _convert(value, int, "expected an integer")
    return number


def positive_int(value: Any) -> int:
    """An integer > 0."""
    number: int = _convert(value, _PositiveInt, "expected an integer > 0")
    return number


def port(value: Any) -> int:
    """A TCP port, 1..65535."""
    number: int = _convert(value, _Port, "expected an integer port number in 1..65535")
    return number


def positive_float(value: Any) -> float:
    """A finite number of seconds > 0."""
    number: float = _convert(value, _PositiveFloat, "expected a finite number of seconds > 0")
    if not math.isfinite(number):
        raise BadValue("expected a finite number of seconds")
    return number


def to_bool(value: Any) -> bool:
    """A boolean, or one of configparser's words (1/yes/true/on, 0/no/false/off)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in configparser.ConfigParser.BOOLEAN_STATES:
            return configparser.ConfigParser.BOOLEAN_STATES[word]
    raise BadValue("expected a boolean: 1/yes/true/on or 0/no/false/off")


def choice(*options: str) -> Callable[[Any], str]:
    """A coercer accepting one of ``options`` (case-insensitive, lower-cased)."""

    def coerce(value: Any) -> str:
        text = to_str(value).lower()
        if text not in options:
            raise BadValue(f"expected one of {', '.join(options)}")
        return text

    return coerce


def key_prefix(value: Any) -> str:
    """A key prefix: one leading ``/``, no trailing ``/`` (except ``"/"``), no ``//``."""
    text = to_str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadValue(f"lone surrogate {text[exc.start]!r} at position {exc.start}") from None
    parts = [part for part in text.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise BadValue("'.' and '..' segments are not allowed")
    return "/" + "/".join(parts)


_HOST_FORBIDDEN = frozenset(" \t\r\n/@,?#[]")


def host(value: Any) -> str:
    """A bare host name or address (IPv6 brackets removed)."""
    text = to_str(value)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if ":" not in text:
            raise BadValue("brackets are only for IPv6 addresses")
    if not text:
        raise BadValue("expected a host name or address")
    if any(char in _HOST_FORBIDDEN for char in text):
        raise BadValue("expected a bare host name or address (no scheme, path or user)")
    if text.count(":") == 1:
        raise BadValue("expected a host without port (use 'port' or 'endpoints')")
    return text


def _port_of(text: str) -> int:
    try:
        return port(text)
    except BadValue as exc:
        raise BadValue(f"port {text!r}: {exc}") from None


def split_hostport(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 -> (host, port)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadValue("unclosed '[' in IPv6 address")
        name, after = text[1:end], text[end + 1 :]
        if ":" not in name:
            raise BadValue("brackets are only for IPv6 addresses")
        if not after:
            return host(name), None
        if not after.startswith(":"):
            raise BadValue("expected ':port' after ']'")
        return host(name), _port_of(after[1:])
    if text.count(":") >= 2:  # a bare IPv6 address: no port possible
        return host(text), None
    if ":" in text:
        name, _, number = text.partition(":")
        return host(name), _port_of(number)
    return host(text), None


def split_endpoint(text: str) -> tuple[str | None, str, int | None]:
    """``[scheme://]host[:port][/]`` -> (scheme or None, host, port or None)."""
    scheme: str | None = None
    rest = text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise BadValue(f"endpoint {text!r}: scheme must be http or https")
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(char in rest for char in "/?#@"):
        raise BadValue(f"endpoint {text!r}: expected [scheme://]host[:port], nothing more")
    try:
        name, number = split_hostport(rest)
    except BadValue as exc:
        raise BadValue(f"endpoint {text!r}: {exc}") from None
    return scheme, name, number


def endpoints(value: Any) -> tuple[str, ...]:
    """Endpoints separated by commas or whitespace, or a sequence of them."""
    items: Iterable[Any]
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise BadValue("expected endpoints separated by commas or spaces, or a sequence")
    result = []
    for item in items:
        text = to_str(item)
        if not text:
            raise BadValue("empty endpoint")
        split_endpoint(text)
        result.append(text)
    return tuple(result)


def url(scheme: str, name: str, number: int) -> str:
    """``scheme://host:port`` (an IPv6 host bracketed)."""
    if ":" in name:
        name = f"[{name}]"
    return f"{scheme}://{name}:{number}"
