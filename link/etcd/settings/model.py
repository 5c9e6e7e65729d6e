"""EtcdSettings: the fields, each with its default and its coercer, and the checks across fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from link.etcd.errors import EtcdSettingsError

from . import coercion
from .coercion import MASK, BadValue

_COERCER = "link.etcd.coerce"

#: The settings whose value is a file that must be readable when settings load.
FILE_SETTINGS: tuple[str, ...] = ("ca_cert", "cert", "cert_key")


def setting(default: Any, coerce: Callable[[Any], Any]) -> Any:
    """A field of :class:`EtcdSettings`: its default and the coercer of its values."""
    return dataclasses.field(default=default, metadata={_COERCER: coerce})


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
    :param cert: client certificate file (PEM), or None; must be readable.
    :param ca_cert: CA bundle file (PEM) to verify the server, or None for
        the system store; must be readable.
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
    :param cert_key: client private key file (PEM), or None; needs ``cert``;
        must be readable.
    :param max_txn_ops: most operations per v3 transaction (etcd's
        ``--max-txn-ops``, default 128), > 0.
    :param max_request_bytes: largest request in bytes (etcd's
        ``--max-request-bytes``, default 1.5 MiB), > 0.
    :param transport: how v3 reaches etcd: ``"grpc"`` (default; native gRPC) or
        ``"gateway"`` (etcd's HTTP/JSON gateway under ``/v3/``, for networks
        where only HTTP/1.1 passes).  Ignored by v2.
    :param serializable_reads: reads answered by the member asked, without a
        quorum: faster, but a follower may return a value older than the last
        write, and a member cut off from the majority answers with old data
        (v3: ``serializable`` ranges; v2: no ``quorum=true``).  Off by default:
        reads are linearizable on both APIs; see [reliability](reliability.md).
    :raises EtcdSettingsError: a value has a bad type or value, a TLS file
        (``ca_cert``, ``cert``, ``cert_key``) cannot be read, or fields
        contradict each other (``cert_key`` without ``cert``, ``password``
        without ``username``, endpoints mixing ``http`` and ``https``).
    """

    # Each field: name: type = setting(default, coercer).  A new field needs
    # nothing else: files, variables, URIs and keywords all accept it.
    host: str = setting("127.0.0.1", coercion.host)
    port: int = setting(2379, coercion.port)
    protocol: str = setting("http", coercion.choice("http", "https"))
    srv_domain: str | None = setting(None, coercion.optional_str)
    version_prefix: str = setting("/v2", coercion.key_prefix)
    read_timeout: float = setting(5.0, coercion.positive_float)
    allow_redirect: bool = setting(True, coercion.to_bool)
    allow_reconnect: bool = setting(True, coercion.to_bool)
    cert: str | None = setting(None, coercion.optional_str)
    ca_cert: str | None = setting(None, coercion.optional_str)
    username: str | None = setting(None, coercion.optional_str)
    password: str | None = setting(None, coercion.optional_secret)
    use_proxies: bool = setting(False, coercion.to_bool)
    expected_cluster_id: str | None = setting(None, coercion.optional_str)
    per_host_pool_size: int = setting(10, coercion.positive_int)
    api: str = setting("v3", coercion.choice("v3", "v2"))
    endpoints: tuple[str, ...] = setting((), coercion.endpoints)
    prefix: str = setting("/", coercion.key_prefix)
    cert_key: str | None = setting(None, coercion.optional_str)
    max_txn_ops: int = setting(128, coercion.positive_int)
    max_request_bytes: int = setting(1572864, coercion.positive_int)
    transport: str = setting("grpc", coercion.choice("grpc", "gateway"))
    # reads answered by the member asked, without a quorum (may be stale; docs/reliability.md)
    serializable_reads: bool = setting(False, coercion.to_bool)

    def __post_init__(self) -> None:
        values = {
            field.name: coerce(field.name, getattr(self, field.name), f"setting {field.name!r}")
            for field in dataclasses.fields(self)
        }
        values.update(check_together(values, lambda name: f"setting {name!r}"))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def urls(self) -> tuple[str, ...]:
        """The endpoints as ``scheme://host:port`` strings (IPv6 hosts bracketed).

        :return: from ``endpoints`` when given (an endpoint without scheme gets
            ``protocol``, one without port gets ``port``; duplicates dropped,
            order kept), else the single ``protocol://host:port``.
        """
        return urls_of(self.endpoints, self.protocol, self.host, self.port)

    def replace(self, **changes: Any) -> EtcdSettings:
        """Return a copy with some fields changed, coerced and validated like the rest.

        :param changes: field name -> new value.
        :return: a new :class:`EtcdSettings`; ``self`` is unchanged.
        :raises EtcdSettingsError: unknown field name (the valid names are
            listed) or bad value.
        """
        refuse_unknown(changes)
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{field.name}={show(field.name, getattr(self, field.name))}"
            for field in dataclasses.fields(self)
        )
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__


#: Names of the fields of :class:`EtcdSettings`, in declaration order.
FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(EtcdSettings))
#: field name -> default value.
DEFAULTS: Mapping[str, Any] = {
    field.name: field.default for field in dataclasses.fields(EtcdSettings)
}
_COERCERS: Mapping[str, Callable[[Any], Any]] = {
    field.name: field.metadata[_COERCER] for field in dataclasses.fields(EtcdSettings)
}


def valid_names() -> str:
    """The field names, comma-separated, for messages."""
    return ", ".join(FIELD_NAMES)


def refuse_unknown(names: Mapping[str, Any]) -> None:
    """Raise EtcdSettingsError listing the names that are not fields."""
    unknown = sorted(set(names) - set(FIELD_NAMES))
    if unknown:
        raise EtcdSettingsError(
            f"unknown setting(s) {', '.join(unknown)}; valid names: {valid_names()}"
        )


def show(name: str, value: Any) -> str:
    """repr() of a value for messages; passwords are masked."""
    if name == "password" and value is not None:
        return repr(MASK)
    return repr(value)


def is_field(name: str) -> bool:
    """Whether ``name`` is a field of :class:`EtcdSettings`."""
    return name in _COERCERS


def coerce(name: str, value: Any, where: str, shown: str | None = None) -> Any:
    """Coerce one setting; ``where`` names its origin (file and key, variable...).

    :param shown: the value as messages show it; None means :func:`show`.
    :raises EtcdSettingsError: the value is bad: ``where``, the value (a
        password masked) and what was expected are named.
    """
    try:
        return _COERCERS[name](value)
    except BadValue as exc:
        text = show(name, value) if shown is None else shown
        raise EtcdSettingsError(f"{where}: invalid value {text} ({exc})") from None


def urls_of(endpoints: tuple[str, ...], protocol: str, host: str, port: int) -> tuple[str, ...]:
    """See :attr:`EtcdSettings.urls`."""
    if not endpoints:
        return (coercion.url(protocol, host, port),)
    urls: dict[str, None] = {}
    for text in endpoints:
        scheme, name, number = coercion.split_endpoint(text)
        urls[coercion.url(scheme or protocol, name, port if number is None else number)] = None
    return tuple(urls)


def _check_file(name: str, path: str, where: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise EtcdSettingsError(
            f"{where}: cannot read the {name} file {path!r} ({exc.strerror or exc})"
        ) from None


def check_together(values: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """The checks that look at several coerced fields, and at the TLS files.

    :param values: every field name -> its coerced value.
    :param where: field name -> the origin to name in a message.
    :return: the fields these checks change (``protocol`` follows the
        endpoints' scheme when every endpoint names one).
    :raises EtcdSettingsError: ``cert_key`` without ``cert``, ``password``
        without ``username``, endpoints mixing http and https, several
        endpoints with ``allow_reconnect`` off, a TLS file that cannot be read.
    """
    changes: dict[str, Any] = {}
    if values["cert_key"] is not None and values["cert"] is None:
        raise EtcdSettingsError(
            f"{where('cert_key')}: invalid value {values['cert_key']!r} "
            "(a client key needs 'cert', the client certificate file)"
        )
    if values["password"] is not None and values["username"] is None:
        raise EtcdSettingsError(
            f"{where('password')}: invalid value {MASK!r} (a password needs 'username')"
        )
    protocol = values["protocol"]
    if values["endpoints"]:
        schemes = [coercion.split_endpoint(text)[0] for text in values["endpoints"]]
        explicit = {scheme for scheme in schemes if scheme is not None}
        if None not in schemes and len(explicit) == 1:
            # every endpoint names its scheme: protocol follows it
            protocol = changes["protocol"] = explicit.pop()
        elif len(explicit | ({protocol} if None in schemes else set())) > 1:
            raise EtcdSettingsError(
                f"{where('endpoints')}: invalid value {values['endpoints']!r} (endpoints mix "
                f"http and https; protocol={protocol!r} applies to endpoints "
                "without a scheme)"
            )
    urls = urls_of(values["endpoints"], protocol, values["host"], values["port"])
    if not values["allow_reconnect"] and len(urls) > 1:
        raise EtcdSettingsError(
            f"{where('allow_reconnect')}: invalid value False (it keeps a client on one "
            f"endpoint, and {len(urls)} were given: {', '.join(urls)})"
        )
    for name in FILE_SETTINGS:
        if values[name] is not None:
            _check_file(name, values[name], where(name))
    return changes
