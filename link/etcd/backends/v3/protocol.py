"""The etcd v3 API as typed values, with no I/O: what the engine asks, what etcd answers.

Requests are the calls of etcd's ``KV``, ``Watch``, ``Lease``, ``Auth``,
``Cluster`` and ``Maintenance`` services that link.etcd uses; each transport
(:mod:`.grpc`, :mod:`.gateway`) turns them into its wire format and the answers
back into the ``*Result`` values here.  Keys and values are ``bytes`` on the way
in (see :func:`link.etcd.paths.encode_key`); read keys come back as ``str``
(:func:`link.etcd.paths.decode_key`) in :class:`~link.etcd.backends.base.KeyValue`.

Errors: etcd answers a failed call with a gRPC status code (on gRPC, and in the
``code`` field of the gateway's JSON), and :data:`ERRORS` maps that code to our
exception class; :func:`error_for` builds the exception.  etcd gives
``INVALID_ARGUMENT`` both to malformed requests and to a few authentication
failures, so those few are told apart by etcd's fixed error descriptions
(:data:`AUTH_FAILURES`, :data:`TOKEN_EXPIRED`), as etcd's own Go client does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from ...errors import (
    EtcdAuthError,
    EtcdCompacted,
    EtcdError,
    EtcdInvalidTree,
    EtcdLeaseNotFound,
    EtcdPermissionDenied,
)
from ...paths import KEY_ENCODING, decode_key
from ..base import KeyValue

# -- requests -----------------------------------------------------------------


@dataclass(slots=True)
class Range:
    """``KV/Range``: the key ``key``, or the keys in ``[key, range_end)``.

    :param limit: most keys returned (0: all); ``more`` says whether more exist.
    :param revision: read as of this store revision (0: the latest).
    :param descending: keys in descending order (etcd's ``sort_order=DESCEND``),
        of ``sort_target``.
    :param sort_target: what the keys are sorted by: ``KEY`` (etcd's default
        order), ``CREATE``, ``MOD``, ``VERSION`` or ``VALUE`` (etcd's
        ``sort_target``; any but ``KEY`` is sorted ascending unless ``descending``).  etcd sorts the
        whole range before applying ``limit``: ``limit=1`` gives the first key
        created (``CREATE``), or the last one with ``descending``.
    :param max_create_revision: only keys created at this revision or before
        (0: no bound; etcd filters before sorting and ``limit``).
    """

    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    keys_only: bool = False
    count_only: bool = False
    descending: bool = False  # sorted by key, last first (with limit: the last keys)
    sort_target: str = "KEY"
    max_create_revision: int = 0


@dataclass(slots=True)
class Put:
    """``KV/Put``: store ``value`` at ``key``, attached to lease ``lease`` (0: none)."""

    key: bytes
    value: bytes
    lease: int = 0


@dataclass(slots=True)
class DeleteRange:
    """``KV/DeleteRange``: delete ``key``, or every key in ``[key, range_end)``."""

    key: bytes
    range_end: bytes = b""


#: The operations a txn may carry.
Op: TypeAlias = "Range | Put | DeleteRange"

#: ``Compare.target`` values (etcd's ``CompareTarget``); all but ``LEASE`` (and
#: ``KEY``) are also ``Range.sort_target`` values (etcd's ``SortTarget``).
VERSION, CREATE, MOD, VALUE, LEASE = "VERSION", "CREATE", "MOD", "VALUE", "LEASE"
KEY: Final = "KEY"
#: etcd's ``RangeRequest.SortTarget`` numbers, per ``Range.sort_target``.
SORT_TARGETS: Final = {KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4}
#: ``Compare.result`` values (etcd's ``CompareResult``).
EQUAL, GREATER, LESS, NOT_EQUAL = "EQUAL", "GREATER", "LESS", "NOT_EQUAL"
#: The field of etcd's ``Compare.target_union`` that carries the value, per target.
TARGET_FIELDS: Final = {
    VERSION: "version",
    CREATE: "create_revision",
    MOD: "mod_revision",
    VALUE: "value",
    LEASE: "lease",
}


@dataclass(slots=True)
class Compare:
    """One txn guard: ``target`` of ``key`` (every key of ``[key, range_end)`` when
    ``range_end`` is given) compared with ``value`` by ``result``.

    :param target: ``MOD``, ``CREATE``, ``VERSION`` (int ``value``), ``VALUE``
        (bytes) or ``LEASE`` (int).
    :param result: ``EQUAL``, ``NOT_EQUAL``, ``LESS`` or ``GREATER``.
    """

    key: bytes
    target: str
    result: str
    value: int | bytes
    range_end: bytes = b""


def unchanged_since(revision: int, key: bytes, end: bytes = b"") -> Compare:
    """The compare "every key in ``[key, end)`` (or ``key`` alone) has a mod revision
    at most ``revision``": true for keys that do not exist."""
    return Compare(key, MOD, LESS, revision + 1, end)


@dataclass(slots=True)
class Txn:
    """``KV/Txn``: if every ``compare`` holds, apply ``success``, else ``failure``."""

    compare: Sequence[Compare]
    success: Sequence[Op]
    failure: Sequence[Op] = ()


@dataclass(slots=True)
class Compaction:
    """``KV/Compact``: discard the history before ``revision``."""

    revision: int
    physical: bool = False


@dataclass(slots=True)
class LeaseGrant:
    """``Lease/LeaseGrant``: a lease of ``ttl`` seconds (``id`` 0: etcd picks one)."""

    ttl: int
    id: int = 0


@dataclass(slots=True)
class LeaseRevoke:
    """``Lease/LeaseRevoke``: end lease ``id`` and delete its keys."""

    id: int


@dataclass(slots=True)
class LeaseKeepAlive:
    """``Lease/LeaseKeepAlive``: one refresh of lease ``id``."""

    id: int


@dataclass(slots=True)
class LeaseTimeToLive:
    """``Lease/LeaseTimeToLive``: the remaining TTL of ``id`` (and its keys with ``keys``)."""

    id: int
    keys: bool = False


@dataclass(slots=True)
class Status:
    """``Maintenance/Status`` of the member that answers."""


@dataclass(slots=True)
class MemberList:
    """``Cluster/MemberList``."""


@dataclass(slots=True)
class WatchCreate:
    """``Watch/Watch`` create request: events of ``[key, range_end)`` from
    ``start_revision`` (0: from now on)."""

    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    prev_kv: bool = False


#: Every unary request a transport must carry.
Request: TypeAlias = (
    "Range | Put | DeleteRange | Txn | Compaction | LeaseGrant | LeaseRevoke"
    " | LeaseKeepAlive | LeaseTimeToLive | Status | MemberList"
)

# -- answers ------------------------------------------------------------------


class RangeResult:
    """A ``RangeResponse``: ``kvs`` sorted by key; ``count`` all keys in the range.

    :param raw: the key-values as the transport parsed them (anything with ``key``,
        ``value`` and ``mod_revision``), converted when first asked for: as
        :class:`KeyValue` s by :attr:`kvs`, or as ``(key, value)`` pairs by
        :meth:`pairs`, which a tree read needs and which cost less.
    """

    __slots__ = ("_kvs", "_raw", "count", "more", "retried", "revision")

    def __init__(
        self,
        revision: int,
        kvs: list[KeyValue] | None = None,
        more: bool = False,
        count: int = 0,
        raw: Sequence[Any] = (),
    ) -> None:
        self.revision = revision
        self.more = more
        self.count = count
        self.retried = False
        self._kvs = kvs
        self._raw = raw

    @property
    def kvs(self) -> list[KeyValue]:
        """The key-values, sorted by key."""
        if self._kvs is None:
            self._kvs, self._raw = key_values(self._raw), ()
        return self._kvs

    @kvs.setter
    def kvs(self, kvs: list[KeyValue]) -> None:
        self._kvs, self._raw = kvs, ()

    def pairs(self) -> list[tuple[str, bytes]]:
        """``(key, value)`` of each key-value, sorted by key."""
        if self._kvs is not None:
            return [(kv.key, kv.value) for kv in self._kvs]
        decode, (encoding, errors) = bytes.decode, KEY_ENCODING
        # plain arguments, not ``*KEY_ENCODING`` unpacked per key: 15% of the loop
        return [(decode(kv.key, encoding, errors), kv.value) for kv in self._raw]

    def mod_revisions(self) -> list[tuple[str, int]]:
        """``(key, mod_revision)`` of each key-value, sorted by key (what a write's
        verification compares; cheaper than :attr:`kvs`)."""
        if self._kvs is not None:
            return [(kv.key, kv.mod_revision) for kv in self._kvs]
        decode, (encoding, errors) = bytes.decode, KEY_ENCODING
        return [(decode(kv.key, encoding, errors), kv.mod_revision) for kv in self._raw]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeResult):
            return NotImplemented
        return (self.revision, self.kvs, self.more, self.count) == (
            other.revision,
            other.kvs,
            other.more,
            other.count,
        )

    def __repr__(self) -> str:
        return f"RangeResult(revision={self.revision}, kvs={len(self.kvs)}, more={self.more})"


@dataclass(slots=True)
class PutResult:
    """A ``PutResponse``."""

    revision: int
    #: see :func:`mark_retried`
    retried: bool = field(default=False, compare=False, repr=False)


@dataclass(slots=True)
class DeleteRangeResult:
    """A ``DeleteRangeResponse``: how many keys were deleted."""

    revision: int
    deleted: int = 0
    #: see :func:`mark_retried`
    retried: bool = field(default=False, compare=False, repr=False)


def key_values(kvs: Iterable[Any]) -> list[KeyValue]:
    """:class:`KeyValue` s of parsed ``mvccpb.KeyValue`` s (anything with ``key``,
    ``value``, ``mod_revision`` and ``lease``: protobuf messages, the gateway's
    structs), with their ``create_revision`` and ``version`` (0 when absent)."""
    new = tuple.__new__  # KeyValue(...) without its Python-level __new__: the read hot path
    return [
        new(
            KeyValue,
            (
                decode_key(kv.key),
                kv.value,
                kv.mod_revision,
                kv.lease,
                getattr(kv, "create_revision", 0),
                getattr(kv, "version", 0),
            ),
        )
        for kv in kvs
    ]


#: The answer to one txn operation.
OpResult: TypeAlias = "RangeResult | PutResult | DeleteRangeResult"


class TxnResult:
    """A ``TxnResponse``: whether the compares held, and one answer per applied op.

    :param responses: the operations' answers, as parsed by the transport.
    :param convert: turns one parsed answer into its ``*Result``; it runs when
        :attr:`responses` is first read, so that a write, which only looks at
        ``succeeded`` and ``revision``, converts nothing.
    """

    __slots__ = ("_convert", "_responses", "retried", "revision", "succeeded")

    def __init__(
        self,
        revision: int,
        succeeded: bool,
        responses: Sequence[Any] = (),
        convert: Callable[[Any], OpResult] | None = None,
    ) -> None:
        self.revision = revision
        self.succeeded = succeeded
        self.retried = False
        self._responses = responses
        self._convert = convert

    @property
    def responses(self) -> list[OpResult]:
        """One answer per applied operation, in order."""
        if self._convert is not None:
            convert, self._convert = self._convert, None
            self._responses = [convert(r) for r in self._responses]
        return list(self._responses)

    def __repr__(self) -> str:
        return f"TxnResult(revision={self.revision}, succeeded={self.succeeded})"


@dataclass(slots=True)
class CompactionResult:
    revision: int


@dataclass(slots=True)
class LeaseResult:
    """``LeaseGrant``, ``LeaseKeepAlive`` and ``LeaseTimeToLive`` answers.

    :attr ttl: seconds left (-1: the lease does not exist or expired).
    :attr granted_ttl: seconds granted (``LeaseTimeToLive`` only).
    :attr keys: the keys attached (``LeaseTimeToLive`` with ``keys`` only).
    """

    revision: int
    id: int
    ttl: int
    granted_ttl: int = 0
    keys: list[bytes] = field(default_factory=list)
    #: see :func:`mark_retried`
    retried: bool = field(default=False, compare=False, repr=False)


@dataclass(slots=True)
class LeaseRevokeResult:
    revision: int
    #: see :func:`mark_retried`
    retried: bool = field(default=False, compare=False, repr=False)


@dataclass(slots=True)
class StatusResult:
    """A ``StatusResponse``: the member's etcd version, id, and the leader's id."""

    revision: int
    version: str
    member_id: int
    leader: int
    db_size: int


@dataclass(slots=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]


@dataclass(slots=True)
class MemberListResult:
    revision: int
    members: list[Member]


@dataclass(slots=True)
class WatchEvent:
    """One event of a watch answer: ``type`` is ``'PUT'`` or ``'DELETE'``; ``prev_kv``
    the key before the event, when the watch asked for it and etcd still had it."""

    type: str
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(slots=True)
class WatchResult:
    """One ``WatchResponse`` of a watch stream.

    :attr revision: the store revision the answer was sent at.
    :attr compact_revision: when ``canceled`` because the start revision was
        compacted, the oldest revision still kept.
    """

    revision: int
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: list[WatchEvent] = field(default_factory=list)


def mark_retried(answer: object) -> None:
    """Mark ``answer`` (a ``*Result``) as obtained after an attempt on another member
    that failed without a usable answer (timed out, reset, no leader): that attempt
    may still have been applied, so what this answer says may be what our own
    earlier attempt left (a delete that finds nothing, a compare that fails).  The
    plans of :mod:`.engine` and :mod:`.guarded` resolve such answers; see the
    engine's docstring.  Called by :class:`.transport.Tries`; answers without a
    ``retried`` attribute are left alone."""
    if hasattr(answer, "retried"):
        answer.retried = True


#: Every answer a unary request may get.
Result: TypeAlias = (
    "RangeResult | PutResult | DeleteRangeResult | TxnResult | CompactionResult | LeaseResult"
    " | LeaseRevokeResult | StatusResult | MemberListResult"
)

# -- errors -------------------------------------------------------------------

#: gRPC status codes (``grpc/codes``), as etcd uses them.
CANCELLED: Final = 1
UNKNOWN: Final = 2
INVALID_ARGUMENT: Final = 3
DEADLINE_EXCEEDED: Final = 4
NOT_FOUND: Final = 5
PERMISSION_DENIED: Final = 7
RESOURCE_EXHAUSTED: Final = 8
FAILED_PRECONDITION: Final = 9
OUT_OF_RANGE: Final = 11
UNAVAILABLE: Final = 14
UNAUTHENTICATED: Final = 16

#: Codes after which the next endpoint is tried: the member is down, has no
#: leader, or did not answer in time.
RETRY_ELSEWHERE: Final = frozenset({UNAVAILABLE, DEADLINE_EXCEEDED})
#: etcd's description, with ``UNKNOWN`` (code 2), of a request whose context ran out
#: on the server: a linearizable read on a member that cannot reach a leader (hung,
#: partitioned, being elected) waits for the read index until the call's deadline,
#: and etcd 3.4/3.5 answer this when its own copy of the deadline passes first.
SERVER_DEADLINE: Final = "context deadline exceeded"


def retry_elsewhere(code: int, message: str) -> bool | None:
    """Whether an error answer means "try the next member": None when it does not,
    else whether the member timed out (``DEADLINE_EXCEEDED``, or ``UNKNOWN`` with
    :data:`SERVER_DEADLINE`) rather than refused (``UNAVAILABLE``: down, stopping,
    no leader).  One rule for every transport, sync and async."""
    if code in RETRY_ELSEWHERE:
        return code == DEADLINE_EXCEEDED
    if code == UNKNOWN and SERVER_DEADLINE in message:
        return True
    return None


#: Exception class per status code; codes not listed raise :class:`EtcdError`.
ERRORS: Final[dict[int, type[EtcdError]]] = {
    INVALID_ARGUMENT: EtcdInvalidTree,  # too large, too many operations, duplicate key
    PERMISSION_DENIED: EtcdPermissionDenied,
    UNAUTHENTICATED: EtcdAuthError,
    OUT_OF_RANGE: EtcdCompacted,  # a revision compacted (or not yet written)
    NOT_FOUND: EtcdLeaseNotFound,  # the only thing etcd's KV and Lease APIs do not find
}

#: etcd's descriptions of ``INVALID_ARGUMENT`` errors that are about credentials
#: (etcd's ``rpctypes``: wrong password, no user given while auth is on).
AUTH_FAILURES: Final = ("authentication failed", "user name is empty", "user name not found")
#: Descriptions meaning "get a new token and try again" (``UNAUTHENTICATED`` always
#: means that too): the token expired, or the auth store changed since it was issued.
TOKEN_EXPIRED: Final = ("invalid auth token", "auth store is old", "revision of auth store")


def needs_new_token(code: int, message: str) -> bool:
    """True when etcd refused the call because of the token, not the user."""
    return code == UNAUTHENTICATED or (
        code == INVALID_ARGUMENT and any(text in message for text in TOKEN_EXPIRED)
    )


def error_for(
    code: int, message: str, *, endpoints: Sequence[str] = (), key: str | None = None
) -> EtcdError:
    """The exception for an etcd error answer (returned, for the caller to raise ``from``).

    :param code: the gRPC status code.
    :param message: etcd's description (``etcdserver: request is too large``).
    """
    message = message.strip()
    where: dict[str, Any] = {"endpoints": endpoints, "key": key}
    if code == INVALID_ARGUMENT and any(text in message for text in AUTH_FAILURES):
        return EtcdAuthError(f"authentication failed: {message}", **where)
    if code == OUT_OF_RANGE and "future revision" in message:
        return EtcdInvalidTree(f"no such revision yet: {message}", **where)
    cls = ERRORS.get(code, EtcdError)
    if cls is EtcdInvalidTree:
        return EtcdInvalidTree(f"etcd rejected the request: {message}", **where)
    if cls is EtcdError:
        return EtcdError(f"etcd error (gRPC code {code}): {message}", **where)
    return cls(message, **where)
