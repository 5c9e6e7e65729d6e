"""The JSON-gateway transport: the v3 API as HTTP/JSON (``/v3/kv/txn`` …), for
places where only HTTP passes (proxies, firewalls that block HTTP/2).

One ``requests`` session per endpoint; keys and values travel base64-encoded and
int64 fields as strings, as etcd's gateway wants them.  Answers are parsed by
msgspec into typed structs (base64 and int64 strings decoded in C).  A token
from ``/v3/auth/authenticate`` goes in the ``Authorization`` header and is
obtained again on a 401 or when etcd says it expired.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import requests
from requests.adapters import HTTPAdapter

from ...errors import EtcdAuthError, EtcdError
from ...settings import EtcdSettings
from ..base import WATCH_IDLE_SECONDS
from . import protocol as v3
from .transport import Failover, Unreachable, unreachable


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- requests to JSON -----------------------------------------------------------


def _range(r: v3.Range) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(r.key)}
    if r.range_end:
        body["range_end"] = _b64(r.range_end)
    if r.limit:
        body["limit"] = r.limit
    if r.revision:
        body["revision"] = r.revision
    if r.keys_only:
        body["keys_only"] = True
    if r.count_only:
        body["count_only"] = True
    if r.descending:
        body["sort_order"] = "DESCEND"
        body["sort_target"] = r.sort_target
    elif r.sort_target != "KEY":
        body["sort_order"] = "ASCEND"
        body["sort_target"] = r.sort_target
    if r.max_create_revision:
        body["max_create_revision"] = r.max_create_revision
    return body


def _put(r: v3.Put) -> dict[str, Any]:
    body = {"key": _b64(r.key), "value": _b64(r.value)}
    if r.lease:
        body["lease"] = str(r.lease)
    return body


def _delete(r: v3.DeleteRange) -> dict[str, Any]:
    body = {"key": _b64(r.key)}
    if r.range_end:
        body["range_end"] = _b64(r.range_end)
    return body


def _op(op: v3.Op) -> dict[str, Any]:
    if type(op) is v3.Put:
        return {"request_put": _put(op)}
    if type(op) is v3.DeleteRange:
        return {"request_delete_range": _delete(op)}
    return {"request_range": _range(op)}  # type: ignore[arg-type]


def _compare(c: v3.Compare) -> dict[str, Any]:
    value = c.value
    body: dict[str, Any] = {
        "key": _b64(c.key),
        "target": c.target,
        "result": c.result,
        v3.TARGET_FIELDS[c.target]: _b64(value) if isinstance(value, bytes) else str(value),
    }
    if c.range_end:
        body["range_end"] = _b64(c.range_end)
    return body


def _txn(t: v3.Txn) -> dict[str, Any]:
    return {
        "compare": [_compare(c) for c in t.compare],
        "success": [_op(op) for op in t.success],
        "failure": [_op(op) for op in t.failure],
    }


def serializable(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (of ``/kv/range`` or ``/kv/txn``) with its ranges marked
    ``serializable`` when it only reads (a txn of ranges only); see
    :func:`.grpc.serializable`."""
    if "success" not in body:
        return {**body, "serializable": True} if "key" in body else body
    ops = [*body["success"], *body["failure"]]
    if all("request_range" in op for op in ops):
        for op in ops:
            op["request_range"]["serializable"] = True
    return body


def body_of(request: v3.Request, settings: EtcdSettings) -> str:
    """The JSON body that carries ``request`` to the gateway, its ranges
    ``serializable`` when ``settings.serializable_reads`` (both gateway
    transports, sync and async)."""
    fields = CALLS[type(request)][1](request)
    if settings.serializable_reads and type(request) in (v3.Range, v3.Txn):
        fields = serializable(fields)
    return json.dumps(fields)


# -- JSON answers -----------------------------------------------------------------


class _Header(msgspec.Struct, frozen=True, gc=False):
    revision: int = 0
    member_id: int = 0


class _KV(msgspec.Struct, gc=False):
    key: bytes  # base64 in JSON: msgspec decodes it in C
    value: bytes = b""  # left out when empty, or by keys_only
    mod_revision: int = 0  # an int64, sent as a JSON string
    lease: int = 0
    create_revision: int = 0
    version: int = 0


class _Range(msgspec.Struct, gc=False):
    header: _Header = _Header()
    kvs: list[_KV] = []
    more: bool = False
    count: int = 0


class _HeaderOnly(msgspec.Struct, gc=False):
    header: _Header = _Header()


class _Deleted(msgspec.Struct, gc=False):
    header: _Header = _Header()
    deleted: int = 0


class _ResponseOp(msgspec.Struct, gc=False):
    response_range: _Range | None = None
    response_put: _HeaderOnly | None = None
    response_delete_range: _Deleted | None = None


class _Txn(msgspec.Struct, gc=False):
    header: _Header = _Header()
    succeeded: bool = False
    responses: list[_ResponseOp] = []


class _Lease(msgspec.Struct, gc=False):
    header: _Header = _Header()
    ID: int = 0
    TTL: int = 0
    grantedTTL: int = 0
    keys: list[bytes] = []


class _KeepAlive(msgspec.Struct, gc=False):
    result: _Lease = msgspec.field(default_factory=_Lease)


class _Status(msgspec.Struct, gc=False):
    header: _Header = _Header()
    version: str = ""
    leader: int = 0
    dbSize: int = 0


class _Member(msgspec.Struct, gc=False):
    ID: int = 0
    name: str = ""
    peerURLs: list[str] = []
    clientURLs: list[str] = []


class _Members(msgspec.Struct, gc=False):
    header: _Header = _Header()
    members: list[_Member] = []


class _Event(msgspec.Struct, gc=False):
    kv: _KV
    type: str = "PUT"
    prev_kv: _KV | None = None


class _Watch(msgspec.Struct, gc=False):
    header: _Header = _Header()
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: list[_Event] = []


class _WatchLine(msgspec.Struct, gc=False):
    result: _Watch | None = None
    error: dict[str, Any] | None = None


def _decoder(kind: type) -> msgspec.json.Decoder[Any]:
    # strict=False accepts the gateway's int64-as-string numbers
    return msgspec.json.Decoder(kind, strict=False)


def _range_result(m: _Range) -> v3.RangeResult:
    return v3.RangeResult(m.header.revision, None, m.more, m.count, m.kvs)


def _op_result(m: _ResponseOp) -> v3.OpResult:
    if m.response_range is not None:
        return _range_result(m.response_range)
    if m.response_delete_range is not None:
        return v3.DeleteRangeResult(
            m.response_delete_range.header.revision, m.response_delete_range.deleted
        )
    if m.response_put is not None:
        return v3.PutResult(m.response_put.header.revision)
    return v3.RangeResult(0)  # an empty range answer is an empty object


def _lease_result(m: _Lease) -> v3.LeaseResult:
    return v3.LeaseResult(m.header.revision, m.ID, m.TTL, m.grantedTTL, m.keys)


#: Per request type: the gateway path, request to JSON, answer decoder, answer to result
#: (shared by the sync transport and :mod:`link.etcd.aio`'s).
CALLS: dict[type, tuple[str, Any, msgspec.json.Decoder[Any], Any]] = {
    v3.Range: ("/kv/range", _range, _decoder(_Range), _range_result),
    v3.Put: ("/kv/put", _put, _decoder(_HeaderOnly), lambda m: v3.PutResult(m.header.revision)),
    v3.DeleteRange: (
        "/kv/deleterange",
        _delete,
        _decoder(_Deleted),
        lambda m: v3.DeleteRangeResult(m.header.revision, m.deleted),
    ),
    v3.Txn: (
        "/kv/txn",
        _txn,
        _decoder(_Txn),
        lambda m: v3.TxnResult(m.header.revision, m.succeeded, m.responses, _op_result),
    ),
    v3.Compaction: (
        "/kv/compaction",
        lambda r: {"revision": r.revision, "physical": r.physical},
        _decoder(_HeaderOnly),
        lambda m: v3.CompactionResult(m.header.revision),
    ),
    v3.LeaseGrant: (
        "/lease/grant",
        lambda r: {"TTL": str(r.ttl), "ID": str(r.id)},
        _decoder(_Lease),
        _lease_result,
    ),
    v3.LeaseRevoke: (
        "/lease/revoke",
        lambda r: {"ID": str(r.id)},
        _decoder(_HeaderOnly),
        lambda m: v3.LeaseRevokeResult(m.header.revision),
    ),
    v3.LeaseKeepAlive: (
        "/lease/keepalive",
        lambda r: {"ID": str(r.id)},
        _decoder(_KeepAlive),
        lambda m: _lease_result(m.result),
    ),
    v3.LeaseTimeToLive: (
        "/lease/timetolive",
        lambda r: {"ID": str(r.id), "keys": r.keys},
        _decoder(_Lease),
        _lease_result,
    ),
    v3.Status: (
        "/maintenance/status",
        lambda r: {},
        _decoder(_Status),
        lambda m: v3.StatusResult(
            m.header.revision, m.version, m.header.member_id, m.leader, m.dbSize
        ),
    ),
    v3.MemberList: (
        "/cluster/member/list",
        lambda r: {},
        _decoder(_Members),
        lambda m: v3.MemberListResult(
            m.header.revision,
            [v3.Member(x.ID, x.name, tuple(x.peerURLs), tuple(x.clientURLs)) for x in m.members],
        ),
    ),
}
_WATCH_LINE = _decoder(_WatchLine)


def _watch_result(m: _Watch) -> v3.WatchResult:
    events = [
        v3.WatchEvent(
            e.type,
            v3.key_values([e.kv])[0],
            None if e.prev_kv is None else v3.key_values([e.prev_kv])[0],
        )
        for e in m.events
    ]
    return v3.WatchResult(
        m.header.revision, m.created, m.canceled, m.compact_revision, m.cancel_reason, events
    )


# -- sessions ----------------------------------------------------------------------


class _Endpoint:
    """One member: its HTTP session, base URL and auth token."""

    def __init__(self, url: str, settings: EtcdSettings) -> None:
        session = requests.Session()
        session.trust_env = settings.use_proxies
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=settings.per_host_pool_size, max_retries=0
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if settings.ca_cert:
            session.verify = settings.ca_cert
        if settings.cert:
            session.cert = (
                (settings.cert, settings.cert_key) if settings.cert_key else settings.cert
            )
        self.url = url
        self.base = url + "/v3"
        self.session = session
        self.token: str | None = None


class _Refused(Exception):
    """etcd answered with an error: ``code`` (gRPC status) and its description."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


#: Characters of a non-etcd answer quoted in an error message.
QUOTED_BODY = 80


def not_etcd(body: bytes) -> str:
    """The message for an answer that is not etcd's JSON, its body cut short."""
    text = body[:QUOTED_BODY].decode("utf-8", "replace").strip()
    quoted = repr(text + ("…" if len(body) > QUOTED_BODY else ""))
    return (
        "this does not look like an etcd client URL (not etcd v3 JSON: etcd's peer "
        f"port or another HTTP server?): {quoted}"
    )


def _refusal(response: Any) -> _Refused | Unreachable:
    """What an error answer means: the next member (502/503: no leader, stopping) or
    etcd's refusal with its gRPC code."""
    try:
        detail = response.json()
    except ValueError:
        detail = None
    if not isinstance(detail, dict) or not ({"code", "error", "message"} & detail.keys()):
        return Unreachable(f"HTTP {response.status_code}: {not_etcd(response.content)}")
    message = str(detail.get("message") or detail.get("error") or response.text).strip()
    code = detail.get("code")
    if response.status_code in (502, 503):
        return Unreachable(f"HTTP {response.status_code}: {message}")
    known = code if isinstance(code, int) else v3.UNKNOWN
    elsewhere = unreachable(known, f"HTTP {response.status_code}: {message}")
    if elsewhere is not None:
        return elsewhere
    if not isinstance(code, int):
        code = v3.UNAUTHENTICATED if response.status_code == 401 else v3.UNKNOWN
    return _Refused(code, message)


def answer(response: Any, url: str, key: str | None, *, retoken: bool) -> bytes | None:
    """The JSON bytes of ``url``'s answer ``response`` (a ``requests`` or an ``httpx``
    response, read); None, only with ``retoken``, when etcd refused the token
    (get a new one and send the request once more).

    :raises Unreachable: 502/503, a refusal that means "try the next member", or an
        answer that is not etcd's JSON (etcd's peer port, another HTTP server).
    :raises EtcdError: etcd refused the request.
    """
    if response.status_code == 200:
        content: bytes = response.content
        if not content.lstrip().startswith(b"{"):
            raise Unreachable(f"HTTP 200: {not_etcd(content)}")
        return content
    refusal = _refusal(response)
    if isinstance(refusal, Unreachable):
        raise refusal
    if retoken and v3.needs_new_token(refusal.code, refusal.message):
        return None
    raise v3.error_for(refusal.code, refusal.message, endpoints=(url,), key=key) from refusal


def auth_body(settings: EtcdSettings) -> str:
    """The JSON of ``/v3/auth/authenticate`` for ``settings``' credentials."""
    return json.dumps({"name": settings.username, "password": settings.password or ""})


def token(response: Any, url: str) -> str:
    """The token of an ``/v3/auth/authenticate`` answer (``requests`` or ``httpx``).

    :raises Unreachable: 502/503, or a refusal that means "try the next member".
    :raises EtcdAuthError: etcd refused the credentials.
    """
    if response.status_code != 200:
        refusal = _refusal(response)
        if isinstance(refusal, Unreachable):
            raise refusal
        raise EtcdAuthError(f"authentication failed: {refusal.message}", endpoints=(url,))
    return str(response.json()["token"])


def watch_body(create: v3.WatchCreate) -> str:
    """The JSON that opens a ``/v3/watch`` stream."""
    body: dict[str, Any] = {"key": _b64(create.key), "range_end": _b64(create.range_end)}
    if create.start_revision:
        body["start_revision"] = create.start_revision
    if create.prev_kv:
        body["prev_kv"] = True
    return json.dumps({"create_request": body})


#: Headers of a ``/v3/watch`` request: etcd's require-leader option, which the
#: gateway passes on as gRPC metadata (a member without a leader refuses the
#: stream, or ends it a few election timeouts after it lost its leader).
WATCH_HEADERS: dict[str, str] = {"Grpc-Metadata-hasleader": "true"}


def watch_line(line: bytes | str) -> v3.WatchResult | None:
    """One line of a ``/v3/watch`` stream as a result (None: nothing to report).

    :raises Unreachable: the gateway reported an error in the stream.
    :raises msgspec.DecodeError: the line is not a watch answer.
    """
    parsed = _WATCH_LINE.decode(line)
    if parsed.error is not None:
        raise Unreachable(str(parsed.error.get("message", parsed.error)))
    return None if parsed.result is None else _watch_result(parsed.result)


class GatewayTransport:
    """v3 requests through etcd's JSON gateway to the endpoints of ``settings.urls``.
    Thread-safe.

    :param settings: endpoints, ``read_timeout`` (seconds per endpoint and
        attempt), TLS files, credentials, ``per_host_pool_size``, ``use_proxies``.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.endpoints: tuple[str, ...] = tuple(settings.urls)
        #: seconds a watch stream opened from now on may stay silent before its member
        #: is checked (:data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS` by default)
        self.watch_idle_seconds = WATCH_IDLE_SECONDS
        self.failover: Failover[_Endpoint] = Failover.of(
            settings, lambda url: _Endpoint(url, settings)
        )
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"GatewayTransport(endpoints={self.endpoints!r})"

    # -- one request -----------------------------------------------------------

    def call(self, request: v3.Request, key: str | None = None) -> v3.Result:
        """Send ``request`` to the first member that answers; see :class:`.transport.Transport`."""
        path, _, decoder, to_result = CALLS[type(request)]
        body = body_of(request, self.settings)

        def send(member: _Endpoint) -> v3.Result:
            return to_result(decoder.decode(self._post(member, path, body, key)))  # type: ignore[no-any-return]

        try:
            return self.failover.attempt(send, key)
        except msgspec.DecodeError as exc:  # pragma: no cover - _post checks the JSON
            raise EtcdError(f"not an etcd v3 answer: {exc}", key=key) from exc

    def _post(self, member: _Endpoint, path: str, body: str, key: str | None) -> bytes:
        """POST ``body`` to ``member``; the answer's bytes, checked to be JSON.

        :raises Unreachable: refused, reset, timed out, or 502/503.
        :raises EtcdError: etcd refused the request.
        """
        timeout = self.settings.read_timeout
        for attempt in (0, 1):
            if self.settings.username and member.token is None:
                self._authenticate(member)
            try:
                response = member.session.post(member.base + path, data=body, timeout=timeout)
            except requests.Timeout as exc:
                raise Unreachable(str(exc), timed_out=True) from None
            except requests.RequestException as exc:  # refused, reset, TLS, broken stream
                raise Unreachable(str(exc)) from None
            retoken = attempt == 0 and bool(self.settings.username)
            content = answer(response, member.url, key, retoken=retoken)
            if content is not None:
                return content
            member.token = None  # the token expired: once more with a new one
        raise AssertionError("unreachable")  # pragma: no cover

    def _authenticate(self, member: _Endpoint) -> None:
        body = auth_body(self.settings)
        try:
            response = member.session.post(
                member.base + "/auth/authenticate", data=body, timeout=self.settings.read_timeout
            )
        except requests.Timeout as exc:
            raise Unreachable(str(exc), timed_out=True) from None
        except requests.RequestException as exc:
            raise Unreachable(str(exc)) from None
        member.token = token(response, member.url)
        member.session.headers["Authorization"] = member.token

    def forget_token(self, member: _Endpoint) -> None:
        """Drop ``member``'s token: the next request authenticates again."""
        member.token = None

    # -- several requests ---------------------------------------------------------

    def call_many(
        self, requests: Iterable[v3.Request], limit: int, key: str | None = None
    ) -> list[v3.Result | EtcdError]:
        """Send ``requests`` from a pool of ``limit`` threads, at most
        ``per_host_pool_size`` (HTTP/1.1 has one request per connection at a time,
        and the session keeps that many connections); each answer or error, in
        order."""

        def one(request: v3.Request) -> v3.Result | EtcdError:
            try:
                return self.call(request, key)
            except EtcdError as exc:
                return exc

        with self._lock:
            if self._pool is None:
                senders = max(1, min(limit, self.settings.per_host_pool_size))
                self._pool = ThreadPoolExecutor(senders, thread_name_prefix="link.etcd.v3")
            pool = self._pool
        return list(pool.map(one, requests))

    # -- watch ---------------------------------------------------------------------

    def open_watch(self, create: v3.WatchCreate, key: str | None = None) -> GatewayWatchStream:
        """A ``/v3/watch`` stream on the member :attr:`failover` tries first.

        :raises Unreachable: it did not answer the opening within ``read_timeout``.
        """
        _, member = next(self.failover.order())
        if self.settings.username and member.token is None:
            self._authenticate(member)
        try:
            response = member.session.post(
                member.base + "/watch",
                data=watch_body(create),
                headers=WATCH_HEADERS,
                stream=True,
                timeout=self.settings.read_timeout,  # to connect and to get the headers
            )
        except requests.RequestException as exc:  # refused, or hung: the next member
            raise Unreachable(str(exc), timed_out=isinstance(exc, requests.Timeout)) from None
        if response.status_code != 200:
            with response:
                refusal = _refusal(response)
            if isinstance(refusal, Unreachable):
                raise refusal
            if v3.needs_new_token(refusal.code, refusal.message):
                member.token = None
            raise v3.error_for(refusal.code, refusal.message, endpoints=(member.url,), key=key)
        return GatewayWatchStream(self, member, response)

    def close(self) -> None:
        """Close every session and the txn sender threads."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        for member in self.failover.members:
            member.session.close()


def _socket(response: requests.Response) -> socket.socket | None:
    """The socket a streamed ``response`` is read from, while it is open."""
    connection = getattr(response.raw, "connection", None) or getattr(
        response.raw, "_connection", None
    )
    return getattr(connection, "sock", None)


class GatewayWatchStream:
    """One ``/v3/watch`` stream: iterate for :class:`.protocol.WatchResult` s.

    Opened with etcd's require-leader option (:data:`WATCH_HEADERS`).  Its socket
    times out after the transport's ``watch_idle_seconds`` (default
    :data:`WATCH_IDLE_SECONDS`) without a byte (etcd's gateway
    cannot ask for progress), so a member that hangs, or is cut off and keeps
    the stream, ends it and the watch opens it again on the next member.
    """

    def __init__(
        self, transport: GatewayTransport, member: _Endpoint, response: requests.Response
    ) -> None:
        self._transport = transport
        self._member = member
        self._response = response
        sock = _socket(response)
        if sock is not None:
            sock.settimeout(transport.watch_idle_seconds)

    def __iter__(self) -> Iterator[v3.WatchResult]:
        try:
            with self._response as response:
                for line in response.iter_lines():
                    result = watch_line(line) if line else None
                    if result is not None:
                        yield result
        except (requests.RequestException, AttributeError, ValueError, msgspec.DecodeError) as exc:
            raise Unreachable(f"watch stream of {self._member.url} ended: {exc}") from None

    def forget_token(self) -> None:
        """The stream was refused for its token: authenticate again next time."""
        self._transport.forget_token(self._member)

    def cancel(self) -> None:
        """End the stream from any thread: shut its socket down (``close()`` would
        block on the reading thread's lock)."""
        sock = _socket(self._response)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
