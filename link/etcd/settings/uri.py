"""``etcd://`` URIs: parsing into settings, and masking their passwords for messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from link.etcd.errors import EtcdSettingsError

from .coercion import MASK, BadValue, split_hostport
from .model import coerce, is_field, valid_names

#: URI scheme -> protocol.
URI_SCHEMES: Mapping[str, str] = {
    "etcd": "http",
    "etcd+http": "http",
    "etcds": "https",
    "etcd+https": "https",
}

_FORM = "etcd://[user[:password]@]host[:port][,host2...][/prefix][?field=value...]"


def _authority_end(rest: str) -> int:
    """Where the authority (RFC 3986: up to the first ``/``, ``?`` or ``#``) ends."""
    return min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))


def _unencoded_userinfo(rest: str) -> bool:
    """An ``@`` after the authority (RFC 3986: up to the first ``/``, ``?`` or ``#``).

    That is how a password holding a raw ``/``, ``?`` or ``#`` looks
    (``u:pa/ss@h`` ends its authority at ``u:pa``), and an ``@`` in a prefix or
    a query value cannot be told apart from it (``u:12?x@h``), so every ``@``
    outside the user info must be percent-encoded (``%40``).
    """
    return "@" in rest[_authority_end(rest) :]


def mask_uri(uri: str) -> str:
    """The URI with its password replaced by ``***``, for messages and logs.

    The password of the user info (even one holding an unencoded ``/``, ``?``
    or ``#``: when an ``@`` follows the authority, everything from the first
    ``:`` to the last ``@`` is masked) and everything after a ``password=``
    query field are masked.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return MASK if "@" in uri or "password" in uri else uri
    if _unencoded_userinfo(rest):
        userinfo, _, tail = rest.rpartition("@")
        user = userinfo.partition(":")[0]
        return (
            f"{scheme}://{user}:{MASK}@{tail}" if ":" in userinfo else f"{scheme}://{MASK}@{tail}"
        )
    end = _authority_end(rest)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hosts}"
    head, qmark, query = tail.partition("?")
    if qmark:
        pairs = []
        for pair in query.split("&"):
            if pair.partition("=")[0] == "password":
                pairs.append(f"password={MASK}")  # a raw & or # in it: mask the rest too
                break
            pairs.append(pair)
        tail = f"{head}?{'&'.join(pairs)}"
    return f"{scheme}://{netloc}{tail}"


def parse_uri(uri: str) -> dict[str, Any]:
    """Parse an ``etcd://`` URI into settings.

    Form::

        etcd://[user[:password]@]host[:port][,host2[:port2]...][/prefix][?field=value&...]

    - scheme ``etcd`` (or ``etcd+http``) sets ``protocol="http"``, ``etcds``
      (or ``etcd+https``) sets ``protocol="https"``;
    - user and password are percent-decoded; a password holding ``/``, ``?``
      or ``#`` must be percent-encoded (``%2F``, ``%3F``, ``%23``), and so must
      an ``@`` anywhere after the host (``%40``): such a URI is refused
      without showing its password;
    - one host sets ``host`` (and ``port`` when given) and clears
      ``endpoints``; several hosts set ``endpoints`` (``host:port`` strings);
      IPv6 hosts are bracketed: ``[::1]:2379``; no host leaves them alone;
    - the percent-decoded path sets ``prefix`` (``/myapp``); an empty path or
      ``/`` leaves it alone (write ``?prefix=/`` to force the root);
    - the query may set any field (``?api=v2&read_timeout=3&ca_cert=/p``),
      but not one already set by the scheme, authority or path.

    :param uri: the URI.
    :return: field name -> coerced value, only for what the URI says.
    :raises EtcdSettingsError: another scheme, a malformed URI, an unknown or
        repeated query field, or a bad value (the URI is shown with its
        password masked, see :func:`mask_uri`).
    """
    if not isinstance(uri, str):
        raise EtcdSettingsError(f"URI: expected a string, got {type(uri).__name__}")
    shown = repr(mask_uri(uri))
    scheme, sep, rest = uri.partition("://")
    protocol = URI_SCHEMES.get(scheme.lower()) if sep else None
    if protocol is None:
        raise EtcdSettingsError(
            f"URI {shown}: scheme must be one of {', '.join(URI_SCHEMES)} ({_FORM})"
        )
    if _unencoded_userinfo(rest):
        raise EtcdSettingsError(
            f"URI {shown}: an '@' after the host: percent-encode '/', '?' and '#' in "
            "the password (%2F, %3F, %23), and '@' outside the user info (%40)"
        )
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    secret_query = any(pair.partition("=")[0] == "password" for pair in query.split("&"))
    if fragment:
        shown_fragment = "(not shown: the query holds a password)" if secret_query else fragment
        raise EtcdSettingsError(f"URI {shown}: unexpected fragment #{shown_fragment}")
    netloc, slash, path = rest.partition("/")
    values: dict[str, Any] = {"protocol": protocol}

    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        values["username"] = coerce("username", unquote(user), f"URI {shown} user")
        if colon:
            values["password"] = coerce("password", unquote(password), f"URI {shown} password")
    if hosts:
        parsed = []
        for text in hosts.split(","):
            try:
                parsed.append(split_hostport(text))
            except BadValue as exc:
                raise EtcdSettingsError(f"URI {shown}: invalid host {text!r} ({exc})") from None
        if len(parsed) == 1:
            values["host"], port = parsed[0]
            if port is not None:
                values["port"] = port
            values["endpoints"] = ()
        else:
            values["endpoints"] = tuple(
                (f"[{host}]" if ":" in host else host) + ("" if port is None else f":{port}")
                for host, port in parsed
            )
    elif at:
        raise EtcdSettingsError(f"URI {shown}: user given without a host")
    if path:
        values["prefix"] = coerce("prefix", unquote(slash + path), f"URI {shown} path")

    seen: set[str] = set()
    after_password = False
    for name, raw in parse_qsl(query, keep_blank_values=True):
        # a raw '&' in a password makes its tail look like another field: never quote it
        shown_name = "(a field after 'password', not shown)" if after_password else name
        where = f"URI {shown} query {shown_name}"
        if not is_field(name):
            raise EtcdSettingsError(f"{where}: unknown field; valid names: {valid_names()}")
        if name in seen:
            raise EtcdSettingsError(f"{where}: given more than once")
        if name in values:
            raise EtcdSettingsError(f"{where}: already set by the URI's scheme, host or path")
        seen.add(name)
        values[name] = coerce(name, raw, where)
        after_password = after_password or name == "password"
    return values
