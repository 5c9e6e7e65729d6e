"""Settings of link.etcd: where the cluster is and how to talk to it.

:class:`EtcdSettings` is a frozen dataclass.  :func:`load_settings` builds one
from these layers, lowest to highest priority (a higher layer overrides a lower
one key by key)::

    dataclass defaults
    < middleware.conf files on conf_search_path() (a later file beats an earlier one)
    < LINK_ETCD_<FIELD> environment variables
    < one etcd:// URI (the ``uri=`` argument, else $LINK_ETCD_URI)
    < keyword arguments

Every bad setting raises :class:`~link.etcd.errors.EtcdSettingsError` naming
where it came from (file, environment variable, URI or argument), the key and
the value.  Passwords are never shown: not in ``repr``, not in error messages.

This module only uses the standard library.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from link.etcd.errors import EtcdSettingsError

#: Path of the configuration file relative to each configuration directory.
CONF_PATH = "link/etcd/middleware.conf"
#: Section of the configuration file holding the settings.
CONF_SECTION = "ETCD"
#: Environment variable naming the last (strongest) configuration directory.
B3J0F_CONF_DIR = "B3J0F_CONF_DIR"
#: Prefix of the environment variables: ``LINK_ETCD_<FIELD>`` upper-case.
ENV_PREFIX = "LINK_ETCD_"
#: Environment variable holding an ``etcd://`` URI.
ENV_URI = "LINK_ETCD_URI"

#: URI scheme -> protocol.
URI_SCHEMES: Mapping[str, str] = {
    "etcd": "http",
    "etcd+http": "http",
    "etcds": "https",
    "etcd+https": "https",
}

_MASK = "***"
# configparser treats its default section as inherited by every section; give it
# a name nobody writes so that [DEFAULT] is just another ignored section.
_NO_DEFAULT_SECTION = "\x00link.etcd: no default section"


class _BadValue(ValueError):
    """Internal: a value failed coercion; the text says what was expected."""


# --------------------------------------------------------------------------
# value coercion (one function per field, each accepts an already coerced value)
# --------------------------------------------------------------------------


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _BadValue("expected a string")
    return value.strip()


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    return _str(value) or None


def _optional_secret(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadValue("expected a string")
    return value or None  # not stripped: spaces may be part of a password


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise _BadValue("expected an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise _BadValue("expected an integer") from None
    raise _BadValue("expected an integer")


def _positive_int(value: Any) -> int:
    number = _int(value)
    if number <= 0:
        raise _BadValue("expected an integer > 0")
    return number


def _port(value: Any) -> int:
    number = _int(value)
    if not 1 <= number <= 65535:
        raise _BadValue("expected a port number in 1..65535")
    return number


def _positive_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _BadValue("expected a number of seconds, not a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _BadValue("expected a number of seconds") from None
    else:
        raise _BadValue("expected a number of seconds")
    if number != number or number in (float("inf"), float("-inf")):
        raise _BadValue("expected a finite number of seconds")
    if number <= 0:
        raise _BadValue("expected a number of seconds > 0")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in configparser.ConfigParser.BOOLEAN_STATES:
            return configparser.ConfigParser.BOOLEAN_STATES[word]
    raise _BadValue("expected a boolean: 1/yes/true/on or 0/no/false/off")


def _choice(*options: str) -> Callable[[Any], str]:
    def coerce(value: Any) -> str:
        text = _str(value).lower()
        if text not in options:
            raise _BadValue(f"expected one of {', '.join(options)}")
        return text

    return coerce


def _key_prefix(value: Any) -> str:
    text = _str(value)
    parts = [part for part in text.split("/") if part]
    return "/" + "/".join(parts)


_HOST_FORBIDDEN = frozenset(" \t\r\n/@,?#[]")


def _host(value: Any) -> str:
    text = _str(value)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if ":" not in text:
            raise _BadValue("brackets are only for IPv6 addresses")
    if not text:
        raise _BadValue("expected a host name or address")
    if any(char in _HOST_FORBIDDEN for char in text):
        raise _BadValue("expected a bare host name or address (no scheme, path or user)")
    if text.count(":") == 1:
        raise _BadValue("expected a host without port (use 'port' or 'endpoints')")
    return text


def _port_of(text: str) -> int:
    try:
        return _port(text)
    except _BadValue as exc:
        raise _BadValue(f"port {text!r}: {exc}") from None


def _split_hostport(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 -> (host, port)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _BadValue("unclosed '[' in IPv6 address")
        host, after = text[1:end], text[end + 1 :]
        if ":" not in host:
            raise _BadValue("brackets are only for IPv6 addresses")
        if not after:
            return _host(host), None
        if not after.startswith(":"):
            raise _BadValue("expected ':port' after ']'")
        return _host(host), _port_of(after[1:])
    if text.count(":") >= 2:  # a bare IPv6 address: no port possible
        return _host(text), None
    if ":" in text:
        host, _, port = text.partition(":")
        return _host(host), _port_of(port)
    return _host(text), None


def _split_endpoint(text: str) -> tuple[str | None, str, int | None]:
    """``[scheme://]host[:port][/]`` -> (scheme or None, host, port or None)."""
    scheme: str | None = None
    rest = text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise _BadValue(f"endpoint {text!r}: scheme must be http or https")
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(char in rest for char in "/?#@"):
        raise _BadValue(f"endpoint {text!r}: expected [scheme://]host[:port], nothing more")
    try:
        host, port = _split_hostport(rest)
    except _BadValue as exc:
        raise _BadValue(f"endpoint {text!r}: {exc}") from None
    return scheme, host, port


def _endpoints(value: Any) -> tuple[str, ...]:
    items: Iterable[Any]
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise _BadValue("expected endpoints separated by commas or spaces, or a sequence")
    result = []
    for item in items:
        text = _str(item)
        if not text:
            raise _BadValue("empty endpoint")
        _split_endpoint(text)
        result.append(text)
    return tuple(result)


_COERCE: dict[str, Callable[[Any], Any]] = {
    "host": _host,
    "port": _port,
    "protocol": _choice("http", "https"),
    "srv_domain": _optional_str,
    "version_prefix": _key_prefix,
    "read_timeout": _positive_float,
    "allow_redirect": _bool,
    "allow_reconnect": _bool,
    "cert": _optional_str,
    "ca_cert": _optional_str,
    "username": _optional_str,
    "password": _optional_secret,
    "use_proxies": _bool,
    "expected_cluster_id": _optional_str,
    "per_host_pool_size": _positive_int,
    "api": _choice("v3", "v2"),
    "transport": _choice("grpc", "gateway"),
    "endpoints": _endpoints,
    "prefix": _key_prefix,
    "cert_key": _optional_str,
    "max_txn_ops": _positive_int,
    "max_request_bytes": _positive_int,
}


def _show(name: str, value: Any) -> str:
    """repr() of a value for messages; passwords are masked."""
    if name == "password" and value is not None:
        return repr(_MASK)
    return repr(value)


def _coerce(name: str, value: Any, where: str) -> Any:
    """Coerce one setting; ``where`` names its origin (file and key, variable...)."""
    try:
        return _COERCE[name](value)
    except _BadValue as exc:
        raise EtcdSettingsError(f"{where}: invalid value {_show(name, value)} ({exc})") from None


def _url(scheme: str, host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _valid_names() -> str:
    return ", ".join(FIELD_NAMES)


# --------------------------------------------------------------------------
# the settings
# --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class EtcdSettings:
    """Where the etcd cluster is and how link.etcd talks to it.

    The first group of fields keeps the names of the python-etcd client
    arguments used by link.etcd since 2016; the second is new.  Values are
    coerced on construction (``port="2379"`` becomes ``2379``, ``"yes"``
    becomes ``True``, ``endpoints="a:1, b:2"`` becomes ``("a:1", "b:2")``,
    ``prefix="app/"`` becomes ``"/app"``) and validated.

    :param host: host name or IP address (IPv6 without brackets; brackets are
        removed) of the single endpoint, used when ``endpoints`` is empty.
    :param port: TCP port, 1..65535; also the port of endpoints that give none.
    :param protocol: ``"http"`` or ``"https"``; also the scheme of endpoints
        that give none.  Set to the endpoints' scheme when every endpoint names it.
    :param srv_domain: DNS domain for SRV discovery (v2 backend), or None.
    :param version_prefix: v2 API path prefix (``"/v2"``).
    :param read_timeout: seconds to wait for an answer from one endpoint, > 0; a
        request tries each endpoint once, so it gives up after at most
        ``len(endpoints) * read_timeout`` seconds.
    :param allow_redirect: v2: follow redirects to the leader.
    :param allow_reconnect: try the other endpoints when one fails; ``False``
        takes a single endpoint.
    :param cert: client certificate file (PEM), or None.
    :param ca_cert: CA bundle file (PEM) to verify the server, or None for
        the system store.
    :param username: etcd user for authentication, or None.
    :param password: password of ``username``, or None.  Never shown by repr.
    :param use_proxies: v2: treat endpoints as proxies.
    :param expected_cluster_id: v2: refuse a cluster with another id.
    :param per_host_pool_size: HTTP connections kept per host, > 0.
    :param api: ``"v3"`` (default) or ``"v2"`` (python-etcd).
    :param endpoints: several endpoints of one cluster, each ``host``,
        ``host:port`` or ``scheme://host[:port]`` (IPv6 hosts bracketed when a
        port follows); a string is split on commas and whitespace.
    :param prefix: root key prefix of the middleware; normalised to one
        leading ``/``, no trailing ``/`` (except ``"/"`` itself) and no ``//``.
    :param cert_key: client private key file (PEM), or None; needs ``cert``.
    :param max_txn_ops: most operations per v3 transaction (etcd's
        ``--max-txn-ops``, default 128), > 0.
    :param max_request_bytes: largest request in bytes (etcd's
        ``--max-request-bytes``, default 1.5 MiB), > 0.
    :param transport: how v3 reaches etcd: ``"grpc"`` (default; native gRPC) or
        ``"gateway"`` (etcd's HTTP/JSON gateway under ``/v3/``, for networks
        where only HTTP/1.1 passes).  Ignored by v2.
    :raises EtcdSettingsError: a value has a bad type or value, or fields
        contradict each other (``cert_key`` without ``cert``, ``password``
        without ``username``, endpoints mixing ``http`` and ``https``).
    """

    host: str = "127.0.0.1"
    port: int = 2379
    protocol: str = "http"
    srv_domain: str | None = None
    version_prefix: str = "/v2"
    read_timeout: float = 5.0
    allow_redirect: bool = True
    allow_reconnect: bool = True
    cert: str | None = None
    ca_cert: str | None = None
    username: str | None = None
    password: str | None = None
    use_proxies: bool = False
    expected_cluster_id: str | None = None
    per_host_pool_size: int = 10
    api: str = "v3"
    endpoints: tuple[str, ...] = ()
    prefix: str = "/"
    cert_key: str | None = None
    max_txn_ops: int = 128
    max_request_bytes: int = 1572864
    transport: str = "grpc"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = _coerce(field.name, getattr(self, field.name), f"setting {field.name!r}")
            object.__setattr__(self, field.name, value)
        if self.cert_key is not None and self.cert is None:
            raise EtcdSettingsError(
                f"setting 'cert_key': invalid value {self.cert_key!r} "
                "(a client key needs 'cert', the client certificate file)"
            )
        if self.password is not None and self.username is None:
            raise EtcdSettingsError(
                f"setting 'password': invalid value {_MASK!r} (a password needs 'username')"
            )
        if self.endpoints:
            schemes = [_split_endpoint(text)[0] for text in self.endpoints]
            explicit = {scheme for scheme in schemes if scheme is not None}
            if None not in schemes and len(explicit) == 1:
                # every endpoint names its scheme: protocol follows it
                object.__setattr__(self, "protocol", explicit.pop())
            elif len(explicit | ({self.protocol} if None in schemes else set())) > 1:
                raise EtcdSettingsError(
                    f"setting 'endpoints': invalid value {self.endpoints!r} (endpoints mix "
                    f"http and https; protocol={self.protocol!r} applies to endpoints "
                    "without a scheme)"
                )
        if not self.allow_reconnect and len(self.urls) > 1:
            raise EtcdSettingsError(
                f"setting 'allow_reconnect': invalid value False (it keeps a client on one "
                f"endpoint, and {len(self.urls)} were given: {', '.join(self.urls)})"
            )

    @property
    def urls(self) -> tuple[str, ...]:
        """The endpoints as ``scheme://host:port`` strings (IPv6 hosts bracketed).

        :return: from ``endpoints`` when given (an endpoint without scheme gets
            ``protocol``, one without port gets ``port``; duplicates dropped,
            order kept), else the single ``protocol://host:port``.
        """
        if not self.endpoints:
            return (_url(self.protocol, self.host, self.port),)
        urls: dict[str, None] = {}
        for text in self.endpoints:
            scheme, host, port = _split_endpoint(text)
            urls[_url(scheme or self.protocol, host, self.port if port is None else port)] = None
        return tuple(urls)

    def replace(self, **changes: Any) -> EtcdSettings:
        """Return a copy with some fields changed, coerced and validated like the rest.

        :param changes: field name -> new value.
        :return: a new :class:`EtcdSettings`; ``self`` is unchanged.
        :raises EtcdSettingsError: unknown field name (the valid names are
            listed) or bad value.
        """
        unknown = sorted(set(changes) - set(FIELD_NAMES))
        if unknown:
            raise EtcdSettingsError(
                f"unknown setting(s) {', '.join(unknown)}; valid names: {_valid_names()}"
            )
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{field.name}={_show(field.name, getattr(self, field.name))}"
            for field in dataclasses.fields(self)
        )
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__


#: Names of the fields of :class:`EtcdSettings`, in declaration order.
FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(EtcdSettings))


# --------------------------------------------------------------------------
# configuration files
# --------------------------------------------------------------------------


def _b3j0f_conf_data_dir() -> str | None:
    """The ``data`` directory of an installed b3j0f.conf, found on sys.path without importing it."""
    for entry in sys.path:
        package = Path(entry or os.curdir, "b3j0f", "conf")
        if (package / "driver" / "file" / "base.py").is_file():
            return str(package / "data")
    return None


def conf_search_path(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The ``link/etcd/middleware.conf`` files to read, weakest first.

    The directories are those of b3j0f.conf 0.3.x's file drivers
    (``CONF_DIRS`` in ``b3j0f/conf/driver/file/base.py``), in the same order:

    1. ``<b3j0f.conf package>/data`` (b3j0f.conf's own installation data
       directory; only when b3j0f.conf is installed on ``sys.path``)
    2. ``/etc``
    3. ``/usr/local/etc``
    4. ``<sys.prefix>/.config``
    5. ``<sys.prefix>/config``
    6. ``<sys.prefix>/etc``
    7. ``$XDG_CONFIG_HOME``
    8. ``$XDG_CONFIG_DIRS`` (as ONE directory, not split on ``:``, like b3j0f)
    9. ``%APPDATA%``
    10. ``%PROGRAMDATA%``
    11. ``%LOCALAPPDATA%``
    12. ``<home>/.config``
    13. ``<home>/config``
    14. ``<home>/etc``
       (home is ``$HOME``, else ``%USERPROFILE%``, else ``os.path.expanduser("~")``)
    15. ``.`` (the current working directory)
    16. ``$B3J0F_CONF_DIR`` (the last, strongest)

    Unlike b3j0f, the list is computed at each call (not once at import),
    unset or empty variables are skipped, and ``./link/etcd/middleware.conf``
    is not appended a second time after ``$B3J0F_CONF_DIR`` (b3j0f's
    ``FileConfDriver.rscpaths`` re-adds the conf path resolved against the
    current directory).  A file reached through several directories is
    listed once, at its last (strongest) place.

    :param environ: the environment to read (``HOME``, ``XDG_*``, Windows
        variables, ``B3J0F_CONF_DIR``); None means ``os.environ``.
    :return: absolute paths of the existing files, weakest first.
    """
    env = os.environ if environ is None else environ
    home = env.get("HOME", env.get("USERPROFILE", os.path.expanduser("~")))
    dirs: list[str | None] = [
        _b3j0f_conf_data_dir(),
        os.path.join(os.sep, "etc"),
        os.path.join(os.sep, "usr", "local", "etc"),
        os.path.join(sys.prefix, ".config"),
        os.path.join(sys.prefix, "config"),
        os.path.join(sys.prefix, "etc"),
        env.get("XDG_CONFIG_HOME"),
        env.get("XDG_CONFIG_DIRS"),
        env.get("APPDATA"),
        env.get("PROGRAMDATA"),
        env.get("LOCALAPPDATA"),
        os.path.join(home, ".config"),
        os.path.join(home, "config"),
        os.path.join(home, "etc"),
        os.curdir,
        env.get(B3J0F_CONF_DIR),
    ]
    found: dict[str, Path] = {}
    for directory in dirs:
        if not directory:
            continue
        path = Path(os.path.abspath(os.path.join(directory, CONF_PATH)))
        if path.is_file():
            real = os.path.realpath(path)
            found.pop(real, None)  # keep the last (strongest) place only
            found[real] = path
    return list(found.values())


def read_conf_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``[ETCD]`` section of one configuration file.

    The file is INI (configparser, no interpolation, comments on their own
    lines).  Other sections, including ``[DEFAULT]``, are ignored.  Booleans
    take configparser's words (1/yes/true/on, 0/no/false/off); an empty value
    means None for optional fields; ``endpoints`` is comma- or
    whitespace-separated.

    :param path: the file.
    :return: field name -> coerced value, only for the keys present; empty
        when the file has no ``[ETCD]`` section.
    :raises EtcdSettingsError: the file cannot be read or parsed, a key is
        unknown, or a value is bad (the file, key and value are named).
    """
    file = Path(path)
    parser = configparser.ConfigParser(interpolation=None, default_section=_NO_DEFAULT_SECTION)
    try:
        with file.open(encoding="utf-8") as handle:
            parser.read_file(handle, source=str(file))
    except OSError as exc:
        raise EtcdSettingsError(
            f"{file}: cannot read configuration file ({exc.strerror or exc})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise EtcdSettingsError(f"{file}: configuration file is not UTF-8 ({exc})") from exc
    except configparser.Error as exc:
        raise EtcdSettingsError(f"{file}: not a valid configuration file ({exc})") from exc
    if not parser.has_section(CONF_SECTION):
        return {}
    values: dict[str, Any] = {}
    for key, raw in parser.items(CONF_SECTION, raw=True):
        where = f"{file}: [{CONF_SECTION}] {key}"
        if key not in _COERCE:
            raise EtcdSettingsError(f"{where}: unknown key; valid keys: {_valid_names()}")
        values[key] = _coerce(key, raw, where)
    return values


# --------------------------------------------------------------------------
# environment and URI
# --------------------------------------------------------------------------


def read_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the ``LINK_ETCD_<FIELD>`` variables (``LINK_ETCD_URI`` excluded).

    Other ``LINK_ETCD_*`` variables are ignored.

    :param environ: the environment; None means ``os.environ``.
    :return: field name -> coerced value, only for the variables set.
    :raises EtcdSettingsError: a bad value (the variable and value are named).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in FIELD_NAMES:
        variable = ENV_PREFIX + name.upper()
        if variable in env:
            values[name] = _coerce(name, env[variable], f"environment variable {variable}")
    return values


def _mask_uri(uri: str) -> str:
    """The URI with its password (in the user info or the query) replaced by ***."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{_MASK}@{hosts}"
    head, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        pairs = [
            f"password={_MASK}" if pair.partition("=")[0] == "password" else pair
            for pair in query.split("&")
        ]
        tail = f"{head}?{'&'.join(pairs)}{hash_}{fragment}"
    return f"{scheme}://{netloc}{tail}"


def parse_uri(uri: str) -> dict[str, Any]:
    """Parse an ``etcd://`` URI into settings.

    Form::

        etcd://[user[:password]@]host[:port][,host2[:port2]...][/prefix][?field=value&...]

    - scheme ``etcd`` (or ``etcd+http``) sets ``protocol="http"``, ``etcds``
      (or ``etcd+https``) sets ``protocol="https"``;
    - user and password are percent-decoded;
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
        password masked).
    """
    if not isinstance(uri, str):
        raise EtcdSettingsError(f"URI: expected a string, got {type(uri).__name__}")
    shown = repr(_mask_uri(uri))
    scheme, sep, rest = uri.partition("://")
    protocol = URI_SCHEMES.get(scheme.lower()) if sep else None
    if protocol is None:
        raise EtcdSettingsError(
            f"URI {shown}: scheme must be one of {', '.join(URI_SCHEMES)} "
            "(etcd://[user[:password]@]host[:port][,host2...][/prefix][?field=value...])"
        )
    rest, _, fragment = rest.partition("#")
    if fragment:
        raise EtcdSettingsError(f"URI {shown}: unexpected fragment #{fragment}")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    values: dict[str, Any] = {"protocol": protocol}

    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        values["username"] = _coerce("username", unquote(user), f"URI {shown} user")
        if colon:
            values["password"] = _coerce("password", unquote(password), f"URI {shown} password")
    if hosts:
        parsed = []
        for text in hosts.split(","):
            try:
                parsed.append(_split_hostport(text))
            except _BadValue as exc:
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
        values["prefix"] = _coerce("prefix", unquote(slash + path), f"URI {shown} path")

    seen: set[str] = set()
    for name, raw in parse_qsl(query, keep_blank_values=True):
        where = f"URI {shown} query {name}"
        if name not in _COERCE:
            raise EtcdSettingsError(f"{where}: unknown field; valid names: {_valid_names()}")
        if name in seen:
            raise EtcdSettingsError(f"{where}: given more than once")
        if name in values:
            raise EtcdSettingsError(f"{where}: already set by the URI's scheme, host or path")
        seen.add(name)
        values[name] = _coerce(name, raw, where)
    return values


# --------------------------------------------------------------------------
# everything together
# --------------------------------------------------------------------------


def load_settings(
    *,
    uri: str | None = None,
    conf_files: Sequence[str | os.PathLike[str]] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> EtcdSettings:
    """Build settings from defaults, files, environment, a URI and arguments.

    Priority, lowest to highest, key by key: dataclass defaults < each file
    of ``conf_files`` in order < ``LINK_ETCD_<FIELD>`` variables < the URI
    (``uri`` if given, else ``$LINK_ETCD_URI``; an explicit ``uri`` replaces
    ``$LINK_ETCD_URI`` entirely, so credentials of one URI never travel to
    the hosts of another) < ``overrides``.

    :param uri: an ``etcd://`` URI, see :func:`parse_uri`.
    :param conf_files: files to read, weakest first; every one must exist.
        None means :func:`conf_search_path` (``environ``); ``[]`` reads none.
    :param environ: the environment; None means ``os.environ``.
    :param overrides: field name -> value, coerced like the rest (None is
        only valid for optional fields).
    :return: the merged, validated settings.
    :raises EtcdSettingsError: an unknown keyword (the valid names are
        listed), an unreadable or bad file, a bad variable, URI or value.
    """
    unknown = sorted(set(overrides) - set(FIELD_NAMES))
    if unknown:
        raise EtcdSettingsError(
            f"unknown setting(s) {', '.join(unknown)}; valid names: {_valid_names()}"
        )
    env = os.environ if environ is None else environ
    files = conf_search_path(env) if conf_files is None else [Path(f) for f in conf_files]
    values: dict[str, Any] = {}
    for file in files:
        values.update(read_conf_file(file))
    values.update(read_environ(env))
    if uri is not None:
        values.update(parse_uri(uri))
    elif env.get(ENV_URI):
        try:
            values.update(parse_uri(env[ENV_URI]))
        except EtcdSettingsError as exc:
            raise EtcdSettingsError(f"environment variable {ENV_URI}: {exc.message}") from exc
    for name, value in overrides.items():
        values[name] = _coerce(name, value, f"keyword argument {name!r}")
    return EtcdSettings(**values)


__all__ = [
    "B3J0F_CONF_DIR",
    "CONF_PATH",
    "CONF_SECTION",
    "ENV_PREFIX",
    "ENV_URI",
    "FIELD_NAMES",
    "URI_SCHEMES",
    "EtcdSettings",
    "conf_search_path",
    "load_settings",
    "parse_uri",
    "read_conf_file",
    "read_environ",
]
