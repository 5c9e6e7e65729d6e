"""The gRPC transport: etcd's native v3 API over grpcio, one channel per endpoint.

Requests go to etcd's own method paths (``/etcdserverpb.KV/Txn`` …) as the
messages of :mod:`.messages`.  Channels are made once per endpoint and reused;
TLS uses ``ca_cert``, ``cert`` and ``cert_key``; with a ``username`` the token
from ``Auth/Authenticate`` travels as the ``token`` metadata and is obtained
again when etcd says it expired or the auth store changed.  The receive limit
is lifted (gRPC's default 4 MiB breaks a read of 100,000 short keys); reads
past :data:`~.engine.PAGE_SIZE` keys are paged anyway.  Calls wait for their
channel to be ready (as etcd's Go client does) within ``read_timeout``, and a
member that went away is reconnected to within a second of its return; so a
member that refuses connections costs one ``read_timeout``, like one that hangs,
and the failover then sticks to the member that answered.  A watch stream silent
for :data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS` seconds asks etcd for a
progress answer; a member that sends none within ``read_timeout`` hangs, and
the stream ends so that the watch moves on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import grpc

from ...errors import EtcdAuthError, EtcdError
from ...settings import EtcdSettings
from ..base import WATCH_IDLE_SECONDS
from . import messages as pb
from . import protocol as v3
from .transport import Failover, Unreachable, unreachable
from .watch import REQUIRE_LEADER

_TARGETS = {"VERSION": 0, "CREATE": 1, "MOD": 2, "VALUE": 3, "LEASE": 4}
_RESULTS = {"EQUAL": 0, "GREATER": 1, "LESS": 2, "NOT_EQUAL": 3}
_EVENT_TYPES = ("PUT", "DELETE")


# -- requests to messages -------------------------------------------------------


def _range(r: v3.Range) -> Any:
    request = pb.RangeRequest(
        key=r.key,
        range_end=r.range_end,
        limit=r.limit,
        revision=r.revision,
        keys_only=r.keys_only,
        count_only=r.count_only,
        sort_order=2 if r.descending else 0,  # DESCEND
    )
    if r.sort_target != "KEY":
        request.sort_target = v3.SORT_TARGETS[r.sort_target]
        if not r.descending:
            request.sort_order = 1  # ASCEND
    if r.max_create_revision:
        request.max_create_revision = r.max_create_revision
    return request


def _add_ops(field: Any, ops: Sequence[v3.Op]) -> None:
    """Append ``ops`` to a repeated ``RequestOp`` field (``add()`` and field
    assignments: three times faster than building nested messages by keyword)."""
    add = field.add
    for op in ops:
        kind = type(op)
        if kind is v3.Put:
            put = add().request_put
            put.key = op.key
            put.value = op.value  # type: ignore[union-attr]
            if op.lease:  # type: ignore[union-attr]
                put.lease = op.lease  # type: ignore[union-attr]
        elif kind is v3.DeleteRange:
            delete = add().request_delete_range
            delete.key = op.key
            if op.range_end:  # type: ignore[union-attr]
                delete.range_end = op.range_end  # type: ignore[union-attr]
        else:
            add().request_range.CopyFrom(_range(op))  # type: ignore[arg-type]


def _txn(t: v3.Txn) -> Any:
    message = pb.TxnRequest()
    for c in t.compare:
        compare = message.compare.add()
        compare.key = c.key
        if c.range_end:
            compare.range_end = c.range_end
        compare.target = _TARGETS[c.target]
        compare.result = _RESULTS[c.result]
        setattr(compare, v3.TARGET_FIELDS[c.target], c.value)
    _add_ops(message.success, t.success)
    if t.failure:
        _add_ops(message.failure, t.failure)
    return message


def serializable(message: Any) -> Any:
    """``message`` with its ranges marked ``serializable`` (answered by the member
    asked, without a quorum) when it only reads: a ``RangeRequest``, or a
    ``TxnRequest`` of ranges only (etcd serves a txn locally only then).  For the
    ``serializable_reads`` setting."""
    if isinstance(message, pb.RangeRequest):
        message.serializable = True
    elif isinstance(message, pb.TxnRequest):
        ops = [*message.success, *message.failure]
        if all(op.WhichOneof("request") == "request_range" for op in ops):
            for op in ops:
                op.request_range.serializable = True
    return message


def message_of(request: v3.Request, settings: EtcdSettings) -> Any:
    """The protobuf message that carries ``request``, its ranges ``serializable``
    when ``settings.serializable_reads`` (both gRPC transports, sync and async)."""
    message = UNARY[type(request)][1](request)
    return serializable(message) if settings.serializable_reads else message


# -- messages to results ----------------------------------------------------------


def _range_result(m: Any) -> v3.RangeResult:
    return v3.RangeResult(m.header.revision, None, m.more, m.count, m.kvs)


def _op_result(m: Any) -> v3.OpResult:
    which = m.WhichOneof("response")
    if which == "response_range":
        return _range_result(m.response_range)
    if which == "response_put":
        return v3.PutResult(m.response_put.header.revision)
    if which == "response_delete_range":
        r = m.response_delete_range
        return v3.DeleteRangeResult(r.header.revision, r.deleted)
    raise EtcdError(f"unexpected txn answer {which!r}")


def _txn_result(m: Any) -> v3.TxnResult:
    return v3.TxnResult(m.header.revision, m.succeeded, m.responses, _op_result)


def lease_result(m: Any) -> v3.LeaseResult:
    return v3.LeaseResult(
        m.header.revision,
        m.ID,
        m.TTL,
        getattr(m, "grantedTTL", 0),
        list(getattr(m, "keys", ())),
    )


def _status_result(m: Any) -> v3.StatusResult:
    return v3.StatusResult(m.header.revision, m.version, m.header.member_id, m.leader, m.dbSize)


def _member_list_result(m: Any) -> v3.MemberListResult:
    members = [v3.Member(x.ID, x.name, tuple(x.peerURLs), tuple(x.clientURLs)) for x in m.members]
    return v3.MemberListResult(m.header.revision, members)


#: Per request type: etcd's method path, request to message, answer class, message to
#: result (shared by the sync transport and :mod:`link.etcd.aio`'s).
UNARY: dict[type, tuple[str, Callable[[Any], Any], Any, Callable[[Any], Any]]] = {
    v3.Range: ("/etcdserverpb.KV/Range", _range, pb.RangeResponse, _range_result),
    v3.Put: (
        "/etcdserverpb.KV/Put",
        lambda r: pb.PutRequest(key=r.key, value=r.value, lease=r.lease),
        pb.PutResponse,
        lambda m: v3.PutResult(m.header.revision),
    ),
    v3.DeleteRange: (
        "/etcdserverpb.KV/DeleteRange",
        lambda r: pb.DeleteRangeRequest(key=r.key, range_end=r.range_end),
        pb.DeleteRangeResponse,
        lambda m: v3.DeleteRangeResult(m.header.revision, m.deleted),
    ),
    v3.Txn: ("/etcdserverpb.KV/Txn", _txn, pb.TxnResponse, _txn_result),
    v3.Compaction: (
        "/etcdserverpb.KV/Compact",
        lambda r: pb.CompactionRequest(revision=r.revision, physical=r.physical),
        pb.CompactionResponse,
        lambda m: v3.CompactionResult(m.header.revision),
    ),
    v3.LeaseGrant: (
        "/etcdserverpb.Lease/LeaseGrant",
        lambda r: pb.LeaseGrantRequest(TTL=r.ttl, ID=r.id),
        pb.LeaseGrantResponse,
        lease_result,
    ),
    v3.LeaseRevoke: (
        "/etcdserverpb.Lease/LeaseRevoke",
        lambda r: pb.LeaseRevokeRequest(ID=r.id),
        pb.LeaseRevokeResponse,
        lambda m: v3.LeaseRevokeResult(m.header.revision),
    ),
    v3.LeaseTimeToLive: (
        "/etcdserverpb.Lease/LeaseTimeToLive",
        lambda r: pb.LeaseTimeToLiveRequest(ID=r.id, keys=r.keys),
        pb.LeaseTimeToLiveResponse,
        lease_result,
    ),
    v3.Status: (
        "/etcdserverpb.Maintenance/Status",
        lambda r: pb.StatusRequest(),
        pb.StatusResponse,
        _status_result,
    ),
    v3.MemberList: (
        "/etcdserverpb.Cluster/MemberList",
        lambda r: pb.MemberListRequest(),
        pb.MemberListResponse,
        _member_list_result,
    ),
}
KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
WATCH = "/etcdserverpb.Watch/Watch"
AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"


def watch_result(m: Any) -> v3.WatchResult:
    events = [
        v3.WatchEvent(
            _EVENT_TYPES[e.type],
            v3.key_values([e.kv])[0],
            v3.key_values([e.prev_kv])[0] if e.HasField("prev_kv") else None,
        )
        for e in m.events
    ]
    return v3.WatchResult(
        m.header.revision, m.created, m.canceled, m.compact_revision, m.cancel_reason, events
    )


def watch_request(create: v3.WatchCreate) -> Any:
    """The ``WatchRequest`` that opens a watch stream."""
    return pb.WatchRequest(
        create_request=pb.WatchCreateRequest(
            key=create.key,
            range_end=create.range_end,
            start_revision=create.start_revision,
            prev_kv=create.prev_kv,
        )
    )


#: What a watch stream sends to ask a silent member for a progress answer.
PROGRESS_REQUEST: Any = pb.WatchRequest(progress_request=pb.WatchProgressRequest())


# -- channels ----------------------------------------------------------------------


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


def channel_args(url: str, settings: EtcdSettings) -> tuple[str, Any, list[tuple[str, Any]]]:
    """``(target, credentials, options)`` of ``url``'s channel (sync or ``grpc.aio``);
    ``credentials`` is None for plain ``http``."""
    parts = urlsplit(url)
    options = [
        ("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1),
        ("grpc.enable_retries", 0),
        # a member that comes back is reconnected to within a second
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    if parts.scheme != "https":
        return parts.netloc, None, options
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.ca_cert),
        private_key=_read(settings.cert_key or settings.cert),
        certificate_chain=_read(settings.cert),
    )
    return parts.netloc, credentials, options


def _channel(url: str, settings: EtcdSettings) -> grpc.Channel:
    target, credentials, options = channel_args(url, settings)
    if credentials is None:
        return grpc.insecure_channel(target, options)
    return grpc.secure_channel(target, credentials, options)


class Endpoint:
    """One member: its channel (a ``grpc`` or a ``grpc.aio`` one: both make method
    callables alike), its method callables and the auth token it issued."""

    def __init__(self, url: str, channel: Any) -> None:
        self.url = url
        self.channel = channel
        self.token: str | None = None
        #: Whether a call on this member ever succeeded.
        self.answered = False
        self.unary = {
            kind: self.channel.unary_unary(
                path, request_serializer=serialize, response_deserializer=answer.FromString
            )
            for kind, (path, _, answer, _) in UNARY.items()
        }
        self.keepalive = self.channel.stream_stream(
            KEEPALIVE,
            request_serializer=serialize,
            response_deserializer=pb.LeaseKeepAliveResponse.FromString,
        )
        self.watch = self.channel.stream_stream(
            WATCH, request_serializer=serialize, response_deserializer=pb.WatchResponse.FromString
        )
        self.authenticate = self.channel.unary_unary(
            AUTHENTICATE,
            request_serializer=serialize,
            response_deserializer=pb.AuthenticateResponse.FromString,
        )


def _ready(channel: grpc.Channel, timeout: float) -> bool:
    """True when ``channel`` is connected, or connects within ``timeout`` seconds.
    The future is cancelled either way: a pending one keeps a polling thread."""
    future = grpc.channel_ready_future(channel)
    try:
        future.result(timeout=timeout)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        future.cancel()


def _not_connected(member: Endpoint) -> str | None:
    """Why a member that never answered has no connection (refused, not HTTP/2, …):
    asked with one call that does not wait for the channel, so gRPC answers at
    once with its last connection error.  None for a member that has answered
    before (one that hangs now would make the probe wait too)."""
    if member.answered:
        return None
    try:
        member.unary[v3.Status](pb.StatusRequest(), timeout=0.2)
    except grpc.RpcError as exc:
        details = status(exc)[1]
        if "HTTP/2" in details or "http1" in details.lower():  # it speaks HTTP/1 only
            details = f"this does not look like an etcd client URL: {details[:200]}"
        return f"could not connect: {details}"
    return None


def verdict(
    exc: grpc.RpcError, url: str, key: str | None, *, retoken: bool
) -> Unreachable | EtcdError | None:
    """What a failed call to ``url`` means: :class:`Unreachable` (the next member; it
    timed out when the deadline passed), None (only with ``retoken``: get a new
    token and send the call once more), or the :class:`EtcdError` to raise."""
    code, details = status(exc)
    elsewhere = unreachable(code, details)
    if elsewhere is not None:
        return elsewhere
    if retoken and v3.needs_new_token(code, details):
        return None
    return v3.error_for(code, details, endpoints=(url,), key=key)


def serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]


def status(exc: grpc.RpcError) -> tuple[int, str]:
    """The gRPC status code (an int) and details of a failed call."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else None
    return (code.value[0] if code is not None else 2), str(details or exc)


class GrpcTransport:
    """v3 requests over gRPC to the endpoints of ``settings.urls``.  Thread-safe.

    :param settings: endpoints, ``read_timeout`` (seconds per endpoint and
        attempt), TLS files and credentials.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.endpoints: tuple[str, ...] = tuple(settings.urls)
        #: seconds a watch stream opened from now on may stay silent before its member
        #: is checked (:data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS` by default)
        self.watch_idle_seconds = WATCH_IDLE_SECONDS
        self.failover: Failover[Endpoint] = Failover.of(
            settings, lambda url: Endpoint(url, _channel(url, settings))
        )
        self._auth_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GrpcTransport(endpoints={self.endpoints!r})"

    # -- auth --------------------------------------------------------------------

    def _metadata(self, member: Endpoint) -> tuple[tuple[str, str], ...] | None:
        if not self.settings.username:
            return None
        if member.token is None:
            self._authenticate(member)
        return (("token", member.token or ""),)

    def _authenticate(self, member: Endpoint) -> None:
        request = pb.AuthenticateRequest(
            name=self.settings.username, password=self.settings.password or ""
        )
        with self._auth_lock:
            try:
                answer = member.authenticate(
                    request, timeout=self.settings.read_timeout, wait_for_ready=True
                )
            except grpc.RpcError as exc:
                code, details = status(exc)
                elsewhere = unreachable(code, details)
                if elsewhere is not None:
                    raise elsewhere from None
                raise EtcdAuthError(
                    f"authentication failed: {details}", endpoints=(member.url,)
                ) from None
            member.token = answer.token

    def forget_token(self, member: Endpoint) -> None:
        """Drop ``member``'s token: the next request authenticates again."""
        member.token = None

    # -- unary calls ---------------------------------------------------------------

    def call(self, request: v3.Request, key: str | None = None) -> v3.Result:
        """Send ``request`` to the first member that answers; see :class:`.transport.Transport`."""
        kind = type(request)
        if kind is v3.LeaseKeepAlive:
            return self.keepalive(request.id)  # type: ignore[union-attr]
        to_result = UNARY[kind][3]
        message = message_of(request, self.settings)
        return self.failover.attempt(  # type: ignore[no-any-return]
            lambda member: to_result(self._unary(member, kind, message, key)), key
        )

    def _unary(self, member: Endpoint, kind: type, message: Any, key: str | None) -> Any:
        settings = self.settings
        for attempt in (0, 1):
            try:
                answer = member.unary[kind](
                    message,
                    timeout=settings.read_timeout,
                    metadata=self._metadata(member) if settings.username else None,
                    wait_for_ready=True,
                )
                member.answered = True
                return answer
            except grpc.RpcError as exc:
                self._raise(member, exc, key, retry_token=attempt == 0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise(
        self, member: Endpoint, exc: grpc.RpcError, key: str | None, retry_token: bool
    ) -> None:
        """Translate a failed call; returns (instead of raising) when a new token was
        obtained and the call should be sent once more."""
        retoken = retry_token and bool(self.settings.username)
        failure = verdict(exc, member.url, key, retoken=retoken)
        if failure is None:
            self._authenticate(member)
            return
        if isinstance(failure, Unreachable):
            if failure.timed_out:
                failure = Unreachable(_not_connected(member) or str(failure), timed_out=True)
            raise failure from None
        raise failure from exc

    def call_many(
        self, requests: Iterable[v3.Request], limit: int, key: str | None = None
    ) -> list[v3.Result | EtcdError]:
        """Send ``requests`` as gRPC futures on the current member, at most ``limit``
        unanswered at once; one that fails for the member's sake goes through
        :meth:`call` (failover) on its own."""
        results: list[v3.Result | EtcdError] = []
        pending: deque[tuple[v3.Request, Any]] = deque()
        _, member = next(self.failover.order())
        try:
            metadata = self._metadata(member)
        except (Unreachable, EtcdError):
            metadata = None
        for request in requests:
            if len(pending) >= limit:
                results.append(self._finish(*pending.popleft(), key))
            _, to_message, _, _ = UNARY[type(request)]
            message = to_message(request)
            future = member.unary[type(request)].future(
                serializable(message) if self.settings.serializable_reads else message,
                timeout=self.settings.read_timeout,
                metadata=metadata,
                wait_for_ready=True,
            )
            pending.append((request, future))
        while pending:
            results.append(self._finish(*pending.popleft(), key))
        return results

    def _finish(self, request: v3.Request, future: Any, key: str | None) -> v3.Result | EtcdError:
        to_result = UNARY[type(request)][3]
        try:
            return to_result(future.result())  # type: ignore[no-any-return]
        except grpc.RpcError:
            pass  # the member failed or the token expired: the full path decides
        try:
            return self.call(request, key)
        except EtcdError as exc:
            return exc

    def keepalive(self, lease_id: int) -> v3.LeaseResult:
        """One ``Lease/LeaseKeepAlive`` exchange on a short-lived stream."""

        def send(member: Endpoint) -> v3.LeaseResult:
            for attempt in (0, 1):
                try:
                    answers = member.keepalive(
                        iter([pb.LeaseKeepAliveRequest(ID=lease_id)]),
                        timeout=self.settings.read_timeout,
                        wait_for_ready=True,
                        metadata=self._metadata(member),
                    )
                    for answer in answers:
                        return lease_result(answer)
                    raise Unreachable("the keepalive stream ended without an answer")
                except grpc.RpcError as exc:
                    self._raise(member, exc, None, retry_token=attempt == 0)
            raise AssertionError("unreachable")  # pragma: no cover

        return self.failover.attempt(send)

    # -- watch ---------------------------------------------------------------------

    def open_watch(self, create: v3.WatchCreate, key: str | None = None) -> GrpcWatchStream:
        """A watch stream on the member :attr:`failover` tries first.

        The iteration raises :class:`.transport.Unreachable` when the member sends no
        first answer within ``read_timeout``.
        """
        _, member = next(self.failover.order())
        # no channel_ready_future here: its polling thread fails when the client
        # closes the channel meanwhile; the stream's watchdog gives up on a member
        # that sends no first answer within read_timeout instead
        return GrpcWatchStream(self, member, watch_request(create), key)

    def close(self) -> None:
        """Close every channel."""
        for member in self.failover.members:
            member.channel.close()


class GrpcWatchStream:
    """One ``Watch/Watch`` stream: iterate for :class:`.protocol.WatchResult` s.

    Opened with etcd's require-leader option (metadata ``hasleader=true``): a
    member that has no leader refuses it, or ends it a few election timeouts
    after losing its leader.  A watchdog thread, after
    the transport's ``watch_idle_seconds`` (read when the stream opens; default
    :data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS`) without an answer, sends
    a ``progress_request`` and reads the watched key once (a linearizable read:
    it needs a quorum); when the read fails or no answer comes within
    ``read_timeout``, the member hangs or is cut off from the majority, and the
    iteration raises :class:`.transport.Unreachable` (the watch moves on).
    """

    def __init__(
        self, transport: GrpcTransport, member: Endpoint, create: Any, key: str | None
    ) -> None:
        self._transport = transport
        self._member = member
        self._key = key
        self._idle = transport.watch_idle_seconds
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._requests.put(create)
        self._last = self._opened = time.monotonic()
        self._done = threading.Event()
        self._hung = False
        self._check = pb.RangeRequest(key=create.create_request.key, limit=1, keys_only=True)
        self._call = member.watch(
            iter(self._requests.get, None),
            metadata=(*(transport._metadata(member) or ()), REQUIRE_LEADER),
            wait_for_ready=True,
        )
        self._watchdog = threading.Thread(
            target=self._watch_dog, name=f"link.etcd.watchdog {member.url}", daemon=True
        )
        self._watchdog.start()

    def _watch_dog(self) -> None:
        timeout = self._transport.settings.read_timeout
        if self._done.wait(timeout):
            return
        if self._last == self._opened:  # no first answer: refused, down or hung
            self._hung = True
            self._call.cancel()
            return
        while not self._done.wait(max(0.0, self._last + self._idle - time.monotonic())):
            if time.monotonic() - self._last < self._idle:
                continue  # an answer came meanwhile
            seen = self._last
            self._requests.put(PROGRESS_REQUEST)
            in_quorum = self._in_quorum()
            if self._done.wait(0 if not in_quorum else timeout):
                return
            if self._last == seen or not in_quorum:
                self._hung = True
                self._call.cancel()
                return

    def _in_quorum(self) -> bool:
        """One linearizable read of the watched key on this member (it needs the
        leader and a quorum): False when the member does not answer it within
        ``read_timeout`` (cut off, stopped, no leader)."""
        try:
            self._transport._unary(self._member, v3.Range, self._check, self._key)
        except Unreachable:
            return False
        except EtcdError:
            pass  # refused, e.g. for permissions: the member answered
        except ValueError:  # the client closed the channel: the stream ends anyway
            pass
        return True

    def __iter__(self) -> Iterator[v3.WatchResult]:
        try:
            for message in self._call:
                self._last = time.monotonic()
                yield watch_result(message)
        except grpc.RpcError as exc:
            code, details = status(exc)
            if self._hung:
                raise Unreachable(f"{self._member.url} sent nothing", timed_out=True) from None
            if code == 1:  # CANCELLED: by cancel()
                return
            elsewhere = unreachable(code, details)
            if elsewhere is not None:
                raise elsewhere from None
            if v3.needs_new_token(code, details):
                self._transport.forget_token(self._member)
            raise v3.error_for(code, details, endpoints=(self._member.url,), key=self._key) from exc
        finally:
            self._stop()
        if self._hung:
            raise Unreachable(f"{self._member.url} sent nothing", timed_out=True)

    def _stop(self) -> None:
        self._done.set()
        self._requests.put(None)

    def forget_token(self) -> None:
        """The stream was refused for its token: authenticate again next time."""
        self._transport.forget_token(self._member)

    def cancel(self) -> None:
        """End the stream (from any thread); a blocked iteration returns."""
        self._stop()
        self._call.cancel()
